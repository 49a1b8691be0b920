//! The direct send path (a sender's thread writes to the socket when nothing is queued; the
//! task finishes partial writes): what it could break, against a real tokio-tungstenite client
//! on 127.0.0.1 that reads late.

#[macro_use]
mod common;

use std::time::Duration;

use futures_util::StreamExt;
use rust_websocket_core::config::PeerConfig;
use rust_websocket_core::Bytes;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use common::{connected, Transport};

/// A payload of `len` bytes whose first 4 are `seq` (little-endian), the rest a pattern of it.
fn packet(seq: u32, len: usize) -> Bytes {
    let mut v: Vec<u8> = (0..len).map(|i| (i as u32 ^ seq) as u8).collect();
    v[..4].copy_from_slice(&seq.to_le_bytes());
    Bytes::from(v)
}

/// Sends with `send`, retrying while the queue is full, from a plain thread (as the game's
/// main thread does), and returns what was sent.
fn send_all(conn: &rust_websocket_core::connection::Connection, packets: &[Bytes]) {
    for p in packets {
        common::send_retrying(conn, p);
    }
}

on_both_transports!(
    burst_in_order:
    a_burst_that_overflows_the_socket_arrives_whole_and_in_order,
    wss_a_burst_that_overflows_the_socket_arrives_whole_and_in_order
);

async fn burst_in_order(transport: Transport) {
    // The sender stands in for a game's main thread: its poll() refills the direct budget.
    let poller = common::Poller::start();
    burst(transport, PeerConfig::default(), &poller, 60 * 1024).await
}

on_both_transports!(
    bulk_in_order:
    while_the_game_polls_fast_a_burst_of_large_messages_arrives_whole_and_in_order,
    wss_while_the_game_polls_fast_a_burst_of_large_messages_arrives_whole_and_in_order
);

/// The same with the server's sockets read by a spinning main thread: large messages then go
/// to the socket directly even in a burst, and partial writes hand over to the task again and
/// again.
async fn bulk_in_order(transport: Transport) {
    let poller = common::Poller::spinning();
    let config = poller.config(PeerConfig::default());
    burst(transport, config, &poller, 16 * 1024).await
}

/// 3000 packets, every fifth `big` bytes and the rest 16, sent by a thread of their own while
/// the client reads late: all arrive whole and in order.
async fn burst(transport: Transport, config: PeerConfig, poller: &common::Poller, big: usize) {
    let config = PeerConfig {
        outbound_buffer_size: 1 << 20,
        ..config
    };
    let polled = config.ready_sockets.is_some();
    let (server, rx, port, ca) = common::start_on(transport, config);
    let mut ws = common::client_on(port, ca.as_deref()).await;
    let (conn, _) = tokio::task::spawn_blocking(move || connected(&rx))
        .await
        .unwrap();
    if polled {
        poller.wait_main_only(true);
        if big >= 8 * 1024 {
            poller.wait_spinning();
        }
    }
    // Far more than the socket buffers hold while the client is not reading, so direct
    // writes go partial and the task takes over, again and again.
    let packets: Vec<Bytes> = (0..3000u32)
        .map(|i| packet(i, if i % 5 == 0 { big } else { 16 }))
        .collect();
    let sent = packets.clone();
    let sender = tokio::task::spawn_blocking(move || send_all(&conn, &sent));
    // The greeting first (the 4-byte id), then every packet, whole and in order.
    let _id = ws.next().await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await; // read late
    for (i, want) in packets.iter().enumerate() {
        let got = ws.next().await.unwrap().unwrap();
        let Message::Binary(got) = got else {
            panic!("#{i}: {got:?}")
        };
        assert!(
            got[..] == want[..],
            "#{i}: {} bytes, first {:?}",
            got.len(),
            &got[..4]
        );
    }
    sender.await.unwrap();
    server.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_during_a_partial_direct_write_comes_after_the_whole_message() {
    let config = PeerConfig {
        outbound_buffer_size: 32 << 20,
        inbound_buffer_size: 32 << 20,
        ..PeerConfig::default()
    };
    let (server, rx, port) = common::start(None, config);
    let ws_config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(
        format!("ws://127.0.0.1:{port}/"),
        Some(ws_config),
        false,
    )
    .await
    .unwrap();
    let (conn, _) = tokio::task::spawn_blocking(move || connected(&rx))
        .await
        .unwrap();
    let _id = ws.next().await.unwrap().unwrap();
    // 24 MiB cannot go into the socket at once while the client does not read (loopback
    // buffers grow to several MiB).
    let big = packet(7, 24 << 20);
    conn.send(big.clone(), false).unwrap();
    assert!(
        conn.outbound_buffered() > 0,
        "the whole 24 MiB went out at once"
    );
    conn.close(4000, "bye");
    let got = ws.next().await.unwrap().unwrap();
    assert!(got == Message::Binary(big), "the big message is not intact");
    match ws.next().await.unwrap().unwrap() {
        Message::Close(Some(frame)) => {
            assert_eq!(frame.code, CloseCode::from(4000));
            assert_eq!(frame.reason.as_str(), "bye");
        }
        other => panic!("expected the close frame, got {other:?}"),
    }
    server.close();
}
