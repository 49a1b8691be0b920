//! Main-only reading (`ready::ReadySockets`): while the game polls fast, the main thread is
//! the only reader of its sockets and the tasks wait for no input; they read again when the
//! game stops polling, when too many sockets have input at once, and when the main thread
//! hands a connection's input over (the game's queue is full).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rust_websocket_core::config::PeerConfig;
use rust_websocket_core::events::Event;
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::{connected, greeted_on, next_packet, start_on, AnyWs, Poller, Transport};

/// Payload size of [`small`] messages, and what each is on the wire from a client.
const SMALL: usize = 100;
const SMALL_WIRE: u64 = 2 + 4 + SMALL as u64;

fn small(i: u32) -> Vec<u8> {
    let mut m = vec![i as u8; SMALL];
    m[..4].copy_from_slice(&i.to_le_bytes());
    m
}

/// The payloads of the next `n` packet events (each up to 5 s).
fn packets(rx: &crossbeam_channel::Receiver<Event>, n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|_| next_packet(rx)).collect()
}

/// A game's frames with 100 µs of sleep: fast enough for the main thread to read alone.
fn fast_poller() -> Poller {
    Poller::every(Duration::from_micros(100))
}

/// A server polled by `poller` and one greeted client.
async fn main_only_session(
    poller: &Poller,
    transport: Transport,
    config: PeerConfig,
) -> (
    rust_websocket_core::server::Server,
    crossbeam_channel::Receiver<Event>,
    AnyWs,
) {
    let (server, rx, port, ca) = start_on(transport, poller.config(config));
    let ws = greeted_on(port, ca.as_deref()).await.0;
    let rx2 = rx.clone();
    tokio::task::spawn_blocking(move || connected(&rx2))
        .await
        .unwrap();
    (server, rx, ws)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_game_polls_steadily_only_the_main_thread_reads() {
    only_the_main_thread_reads(Transport::Ws).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_while_the_game_polls_steadily_only_the_main_thread_reads() {
    only_the_main_thread_reads(Transport::Wss).await
}

/// Each message arrives during a frame 5 ms long (one slow poll does not end main-only
/// reading): a task still waiting for input would have read it before the next poll. A round
/// in which the poller thread stalled (the machine busy: the watchdog gave reading back to
/// the task) proves nothing and is run again.
async fn only_the_main_thread_reads(transport: Transport) {
    let poller = fast_poller();
    let (server, rx, mut ws) = main_only_session(&poller, transport, PeerConfig::default()).await;
    let p = std::sync::Arc::new(poller);
    const N: u32 = 20;
    for round in 0..5 {
        let p2 = p.clone();
        blocking(move || p2.wait_main_only(true)).await;
        // The task hears of the switch when it next runs: a message first, and time for it.
        ws.send(Message::binary(small(0))).await.unwrap();
        let rx2 = rx.clone();
        blocking(move || packets(&rx2, 1)).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (before, stalls) = (p.ready.bytes_read(), p.ready.stalls());
        for i in 1..=N {
            p.pause(true);
            ws.send(Message::binary(small(i))).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
            p.pause(false);
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        let rx2 = rx.clone();
        let got = blocking(move || packets(&rx2, N as usize)).await;
        for (i, data) in (1..=N).zip(got) {
            assert_eq!(data, small(i), "message {i}");
        }
        if p.ready.stalls() != stalls {
            eprintln!("round {round}: the poller stalled, again");
            continue;
        }
        let read = p.ready.bytes_read() - before;
        assert_eq!(
            read,
            u64::from(N) * SMALL_WIRE,
            "the main thread read {read} of the {} bytes",
            u64::from(N) * SMALL_WIRE
        );
        server.close();
        return;
    }
    panic!("the poller stalled in every round");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_game_stops_polling_the_task_reads_and_answers_again() {
    let poller = fast_poller();
    let (server, rx, mut ws) =
        main_only_session(&poller, Transport::Ws, PeerConfig::default()).await;
    let p = std::sync::Arc::new(poller);
    let p2 = p.clone();
    blocking(move || p2.wait_main_only(true)).await;
    let stalls = p.ready.stalls();
    p.pause(true);
    let p2 = p.clone();
    blocking(move || p2.wait_main_only(false)).await;
    assert_eq!(p.ready.stalls(), stalls + 1);
    let read_before = p.ready.bytes_read();
    ws.send(Message::Ping(b"still there?".to_vec().into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
    assert!(
        matches!(&pong, Ok(Some(Ok(Message::Pong(p)))) if &p[..] == b"still there?"),
        "{pong:?}"
    );
    for i in 0..3 {
        ws.send(Message::binary(small(i))).await.unwrap();
    }
    let rx2 = rx.clone();
    let got = blocking(move || packets(&rx2, 3)).await;
    assert_eq!(got, (0..3).map(small).collect::<Vec<_>>());
    assert_eq!(
        p.ready.bytes_read(),
        read_before,
        "the main thread read while it was not polling"
    );
    // Polling again: the main thread is the reader again.
    p.pause(false);
    let p2 = p.clone();
    blocking(move || p2.wait_main_only(true)).await;
    ws.send(Message::binary(small(7))).await.unwrap();
    let got = blocking(move || packets(&rx, 1)).await;
    assert_eq!(got, [small(7)]);
    server.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_hands_the_input_to_the_task_and_nothing_is_stranded() {
    let poller = fast_poller();
    let config = PeerConfig {
        max_queued_packets: 16,
        ..PeerConfig::default()
    };
    let (server, rx, mut ws) = main_only_session(&poller, Transport::Ws, config).await;
    let p = std::sync::Arc::new(poller);
    let p2 = p.clone();
    blocking(move || p2.wait_main_only(true)).await;
    const N: u32 = 3000;
    let sender = tokio::spawn(async move {
        for i in 0..N {
            ws.feed(Message::binary(small(i))).await.unwrap();
        }
        ws.flush().await.unwrap();
        ws
    });
    // The game takes nothing for a while: the queue fills and reading stops.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = blocking(move || packets(&rx, N as usize)).await;
    for (i, data) in (0..N).zip(got) {
        assert_eq!(data, small(i), "message {i}");
    }
    drop(sender.await.unwrap());
    server.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sockets_with_input_at_once_hand_reading_back_to_the_tasks() {
    let poller = fast_poller();
    let (server, rx, port, _) = start_on(Transport::Ws, poller.config(PeerConfig::default()));
    const CLIENTS: usize = 40;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(greeted_on(port, None).await.0);
    }
    let rx2 = rx.clone();
    blocking(move || {
        for _ in 0..CLIENTS {
            connected(&rx2);
        }
    })
    .await;
    let p = std::sync::Arc::new(poller);
    for round in 0..5u32 {
        let p2 = p.clone();
        blocking(move || p2.wait_main_only(true)).await;
        // Time for every task to hear of the switch and stop waiting for input.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (stalls, busy) = (p.ready.stalls(), p.ready.busy_polls());
        // Every socket gets input between two polls (a long frame, shorter than a stall).
        p.pause(true);
        for (i, ws) in clients.iter_mut().enumerate() {
            ws.send(Message::binary(small(round * 100 + i as u32)))
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        p.pause(false);
        let rx2 = rx.clone();
        let mut got = blocking(move || packets(&rx2, CLIENTS)).await;
        got.sort();
        let mut want: Vec<_> = (0..CLIENTS as u32)
            .map(|i| small(round * 100 + i))
            .collect();
        want.sort();
        assert_eq!(got, want);
        if p.ready.stalls() != stalls {
            eprintln!("round {round}: the poller stalled, again");
            continue;
        }
        assert!(
            p.ready.busy_polls() > busy,
            "{CLIENTS} sockets with input at once did not end main-only reading"
        );
        server.close();
        return;
    }
    panic!("the poller stalled in every round");
}
