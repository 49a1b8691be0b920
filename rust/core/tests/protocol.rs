//! What a server and its clients say to each other once connected: the id greeting, packets
//! both ways (binary, text, empty), close codes and reasons, the inbound size limit, and
//! closes started by either side (real tokio-tungstenite peers on 127.0.0.1, no Godot).

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rust_websocket_core::config::PeerConfig;
use rust_websocket_core::connection::ReadyState;
use rust_websocket_core::events::Event;
use rust_websocket_core::Bytes;
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::{
    connect_client, connected, greeted_client, next_event, raw_client, start_plain as start,
    wait_for,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greeting_packets_and_close_code() {
    let (server, rx, port) = start(PeerConfig::default());
    let mut ws = raw_client(port).await;
    // First message: our id, 4 bytes little-endian, >= 2.
    let first = ws.next().await.unwrap().unwrap();
    let Message::Binary(id_bytes) = first else {
        panic!("expected binary id, got {first:?}")
    };
    assert_eq!(id_bytes.len(), 4);
    let id = i32::from_le_bytes(id_bytes[..].try_into().unwrap());
    assert!(id >= 2);

    let rx2 = rx.clone();
    let (conn, ev_id) = tokio::task::spawn_blocking(move || connected(&rx2))
        .await
        .unwrap();
    assert_eq!(ev_id, id);
    assert_eq!(conn.id(), id);
    assert_eq!(conn.info().remote.ip().to_string(), "127.0.0.1");
    assert_eq!(conn.info().requested_url, format!("ws://127.0.0.1:{port}/"));

    // Client -> server: binary, text and an empty message, in order.
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    ws.send(Message::text("hi")).await.unwrap();
    ws.send(Message::binary(Vec::<u8>::new())).await.unwrap();
    let rx2 = rx.clone();
    let got = tokio::task::spawn_blocking(move || {
        (0..3)
            .map(|_| {
                wait_for(&rx2, |e| match e {
                    Event::Packet(p) => Some((p.from(), p.data().to_vec(), p.was_text())),
                    _ => None,
                })
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(
        got,
        vec![
            (id, vec![1, 2, 3], false),
            (id, b"hi".to_vec(), true),
            (id, vec![], false)
        ]
    );

    // Server -> client, then a close whose code and reason the client sees.
    conn.send(Bytes::from_static(b"pong"), false).unwrap();
    conn.close(4001, "bye");
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::binary(b"pong".to_vec())
    );
    match ws.next().await.unwrap().unwrap() {
        Message::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), 4001);
            assert_eq!(frame.reason.as_str(), "bye");
        }
        other => panic!("expected close, got {other:?}"),
    }
    drop(ws);
    let gone = next_event(&rx, |e| match e {
        Event::Disconnected { id } => Some(id),
        _ => None,
    })
    .await;
    assert_eq!(gone, id);
    assert_eq!(conn.ready_state(), ReadyState::Closed);
    assert_eq!(conn.close_code(), 4001);
    server.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_closes_with_1009() {
    let config = PeerConfig {
        inbound_buffer_size: 1000,
        ..PeerConfig::default()
    };
    let (server, _rx, port) = start(config);
    let mut ws = greeted_client(port).await.0; // id
    ws.send(Message::binary(vec![0u8; 1001])).await.unwrap();
    let close = loop {
        match ws.next().await {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(u16::from(close.expect("close frame").code), 1009);
    server.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_size_message_does_not_stall_the_reader() {
    let (server, rx, port) = start(PeerConfig::default()); // inbound_buffer_size 65535
    let mut ws = greeted_client(port).await.0;
    ws.send(Message::binary(vec![1u8; 65535])).await.unwrap();
    ws.send(Message::binary(b"after".to_vec())).await.unwrap();
    let got = tokio::task::spawn_blocking(move || {
        let mut kept = Vec::new(); // The game keeps each payload, as Godot does until the next get_packet.
        for _ in 0..2 {
            let p = wait_for(&rx, |e| match e {
                Event::Packet(p) => Some(p),
                _ => None,
            });
            kept.push(p.take_data());
        }
        kept.iter().map(|b| b.len()).collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(got, vec![65535, 5]);
    server.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_started_by_either_side_ends_promptly() {
    // The client closes: our server must answer and drop TCP at once (RFC 6455 7.1.1).
    let (server, rx, port) = start(PeerConfig::default());
    let mut ws = greeted_client(port).await.0;
    let t0 = Instant::now();
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "server kept TCP open {:?}",
        t0.elapsed()
    );
    next_event(&rx, |e| {
        matches!(e, Event::Disconnected { .. }).then_some(())
    })
    .await;
    assert!(t0.elapsed() < Duration::from_millis(500));

    // The server closes: our client must report it at once.
    let (client, crx) = connect_client(&format!("ws://127.0.0.1:{port}"));
    let (crx2, rx2) = (crx.clone(), rx.clone());
    let (sconn, _) = tokio::task::spawn_blocking(move || {
        connected(&crx2);
        connected(&rx2)
    })
    .await
    .unwrap();
    let t0 = Instant::now();
    sconn.close(1000, "");
    tokio::task::spawn_blocking(move || {
        wait_for(&crx, |e| {
            matches!(e, Event::Disconnected { id: 1 }).then_some(())
        })
    })
    .await
    .unwrap();
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "client noticed after {:?}",
        t0.elapsed()
    );
    client.close();
    server.close();
}
