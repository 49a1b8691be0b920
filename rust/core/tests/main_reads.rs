//! The main thread's reads of sockets with input waiting (`ready::ReadySockets`): with a
//! thread standing in for the game's `poll()` reading beside the connection tasks, messages
//! still arrive whole and in order, control frames still get their answers from the task,
//! and backpressure still stops reading.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;
use futures_util::{SinkExt, StreamExt};
use rust_websocket_core::config::PeerConfig;
use rust_websocket_core::events::Event;
use rust_websocket_core::server::Server;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

#[macro_use]
mod common;
use common::{connected, greeted_on, next_packet, start_on, wait_for, Poller, Transport};

/// One worker for the addon's runtime in this test binary, so that [`block_runtime`] stops
/// every connection task.
fn one_worker() {
    rust_websocket_core::runtime::set_worker_threads(1);
}

/// Occupies the runtime's worker until the returned guard is dropped (returns once it is
/// occupied): meanwhile only the main thread can read and write.
fn block_runtime() -> Blocked {
    let started = Arc::new(AtomicBool::new(false));
    let release = Arc::new(AtomicBool::new(false));
    let expired = Arc::new(AtomicBool::new(false));
    let (s, r, e) = (started.clone(), release.clone(), expired.clone());
    common::rt().spawn(async move {
        s.store(true, Ordering::SeqCst);
        let until = std::time::Instant::now() + Duration::from_secs(20);
        while !r.load(Ordering::SeqCst) {
            if std::time::Instant::now() > until {
                e.store(true, Ordering::SeqCst);
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    while !started.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(1));
    }
    Blocked { release, expired }
}

/// The runtime's worker is occupied until this is dropped (or 20 s have passed).
struct Blocked {
    release: Arc<AtomicBool>,
    expired: Arc<AtomicBool>,
}

impl Blocked {
    /// Whether the worker is still occupied (it gives up after 20 s).
    fn holds(&self) -> bool {
        !self.expired.load(Ordering::SeqCst)
    }
}

impl Drop for Blocked {
    fn drop(&mut self) {
        self.release.store(true, Ordering::SeqCst);
    }
}

/// Message `i`: its index, then a body whose size cycles through 8 B, 1 KiB and 70 KiB
/// (more than one read), filled with a pattern of `i`.
fn message(i: u32) -> Vec<u8> {
    let len = [8usize, 1024, 70 * 1024][i as usize % 3];
    let mut m = i.to_le_bytes().to_vec();
    m.extend((0..len).map(|k| (k as u32 ^ i) as u8));
    m
}

/// Messages up to 1 MiB.
fn big_messages() -> PeerConfig {
    PeerConfig {
        inbound_buffer_size: 1 << 20,
        ..PeerConfig::default()
    }
}

/// A server with `config` on one runtime worker whose sockets a [`Poller`] reads too, and a
/// greeted client of it.
async fn read_by_the_main_thread(
    transport: Transport,
    config: PeerConfig,
) -> (Poller, Server, Receiver<Event>, common::AnyWs) {
    one_worker();
    let poller = Poller::start();
    let (server, rx, port, ca) = start_on(transport, poller.config(config));
    let ws = greeted_on(port, ca.as_deref()).await.0;
    (poller, server, rx, ws)
}

on_both_transports!(
    arrive_whole_and_in_order:
    messages_read_by_the_main_thread_arrive_whole_and_in_order,
    wss_messages_read_by_the_main_thread_arrive_whole_and_in_order
);

async fn arrive_whole_and_in_order(transport: Transport) {
    let (_poller, server, rx, mut ws) = read_by_the_main_thread(transport, big_messages()).await;
    const N: u32 = 600;
    let sender = tokio::spawn(async move {
        for i in 0..N {
            ws.feed(Message::binary(message(i))).await.unwrap();
            // Bursts, and pauses in which the main thread is likely the first to read.
            if i % 5 == 0 {
                ws.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        ws.flush().await.unwrap();
        ws
    });
    tokio::task::spawn_blocking(move || {
        connected(&rx);
        for i in 0..N {
            let data = next_packet(&rx);
            assert_eq!(data, message(i), "message {i}");
        }
    })
    .await
    .unwrap();
    drop(sender.await.unwrap());
    server.close();
}

on_both_transports!(
    runtime_busy:
    while_the_runtime_is_busy_the_main_thread_still_delivers_and_answers,
    wss_while_the_runtime_is_busy_the_main_thread_still_delivers_and_answers
);

/// Messages arrive, and the game's answer leaves, while the runtime cannot run.
async fn runtime_busy(transport: Transport) {
    let (poller, server, rx, mut ws) = read_by_the_main_thread(transport, big_messages()).await;
    let rx2 = rx.clone();
    let (conn, _) = tokio::task::spawn_blocking(move || connected(&rx2))
        .await
        .unwrap();
    const N: u32 = 30;
    let blocked = tokio::task::spawn_blocking(block_runtime).await.unwrap();
    for i in 0..N {
        ws.send(Message::binary(message(i))).await.unwrap();
    }
    let blocked = tokio::task::spawn_blocking(move || {
        for i in 0..N {
            let data = next_packet(&rx);
            assert_eq!(data, message(i), "message {i}");
        }
        assert!(
            blocked.holds(),
            "the messages waited for the runtime's worker, not read by the main thread"
        );
        blocked
    })
    .await
    .unwrap();
    // From the polling thread, as a game answers from its main thread.
    poller.on_main_thread(move || {
        conn.send(rust_websocket_core::Bytes::from_static(b"answer"), false)
            .unwrap()
    });
    assert!(poller.ready.bytes_read() > 0);
    let answer = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
    assert!(
        matches!(&answer, Ok(Some(Ok(Message::Binary(b)))) if &b[..] == b"answer"),
        "{answer:?}"
    );
    assert!(
        blocked.holds(),
        "the answer waited for the runtime's worker, not sent by the main thread"
    );
    drop(blocked);
    server.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_and_the_close_handshake_still_get_their_answers() {
    let (poller, server, rx, mut ws) =
        read_by_the_main_thread(Transport::Ws, PeerConfig::default()).await;
    let (_conn, _id) = tokio::task::spawn_blocking({
        let rx = rx.clone();
        move || connected(&rx)
    })
    .await
    .unwrap();
    for round in 0..20u8 {
        ws.send(Message::Ping(vec![round; 3].into())).await.unwrap();
        let pong = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a pong in time");
        match pong {
            Some(Ok(Message::Pong(p))) => assert_eq!(&p[..], &[round; 3]),
            other => panic!("expected the pong of ping {round}, got {other:?}"),
        }
        // Give the main thread time to be the one that reads the next ping.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The close is read by the main thread; the task answers it once it runs again.
    let blocked = tokio::task::spawn_blocking(block_runtime).await.unwrap();
    ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    })))
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(blocked);
    let answer = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("the close answered in time");
    match answer {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::Normal),
        other => panic!("expected the server's close frame, got {other:?}"),
    }
    let gone = tokio::task::spawn_blocking(move || {
        wait_for(&rx, |e| match e {
            Event::Disconnected { id } => Some(id),
            _ => None,
        })
    })
    .await
    .unwrap();
    assert!(gone > 0);
    assert!(
        poller.ready.bytes_read() > 0,
        "the main thread read nothing"
    );
    server.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_game_that_does_not_read_still_pauses_the_main_thread_reads() {
    one_worker();
    let poller = Poller::start();
    common::a_game_that_does_not_read_pauses_reading(poller.config(PeerConfig::default())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pong_read_by_the_main_thread_goes_out_before_the_games_answer() {
    let (_poller, server, rx, mut ws) =
        read_by_the_main_thread(Transport::Ws, PeerConfig::default()).await;
    let rx2 = rx.clone();
    let (conn, _) = tokio::task::spawn_blocking(move || connected(&rx2))
        .await
        .unwrap();
    // The task cannot run: the main thread reads the ping and the message, and the game's
    // answer would go straight to the socket if nothing held it for the pong.
    let blocked = tokio::task::spawn_blocking(block_runtime).await.unwrap();
    ws.feed(Message::Ping(b"first".to_vec().into()))
        .await
        .unwrap();
    ws.feed(Message::binary(b"question".to_vec()))
        .await
        .unwrap();
    ws.flush().await.unwrap();
    tokio::task::spawn_blocking(move || {
        let q = next_packet(&rx);
        assert_eq!(q, b"question");
        conn.send(rust_websocket_core::Bytes::from_static(b"answer"), false)
            .unwrap();
    })
    .await
    .unwrap();
    drop(blocked);
    let mut got = Vec::new();
    while got.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Pong(p)))) => {
                got.push(format!("pong {}", String::from_utf8_lossy(&p)))
            }
            Ok(Some(Ok(Message::Binary(b)))) => {
                got.push(format!("binary {}", String::from_utf8_lossy(&b)))
            }
            other => panic!("expected a pong and the answer, got {other:?}"),
        }
    }
    assert_eq!(got, ["pong first", "binary answer"]);
    server.close();
}
