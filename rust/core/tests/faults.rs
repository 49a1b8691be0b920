//! A panic inside one connection task closes that connection, is reported, and leaves the
//! server and its other connections working. Needs `--features fault-injection`.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rust_websocket_core::config::PeerConfig;
use rust_websocket_core::connection::PANIC_TRIGGER;
use rust_websocket_core::events::Event;
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::{greeted_client as client, next_event, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_connection_task_closes_only_its_connection() {
    let (server, rx, port) = start(None, PeerConfig::default());
    let (mut a, a_id) = client(port).await;
    let (mut b, b_id) = client(port).await;
    let b_conn = next_event(&rx, move |e| match e {
        Event::Connected { conn, id } if id == b_id => Some(conn),
        _ => None,
    })
    .await;

    a.send(Message::text(PANIC_TRIGGER)).await.unwrap();
    // A's socket is closed (no close frame: the task died), and the main thread hears of it.
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match a.next().await {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert!(
        end.is_ok(),
        "A's connection stayed open after its task panicked"
    );
    let mut errors = Vec::new();
    let gone = next_event(&rx, move |e| match e {
        Event::Error { message } => {
            errors.push(message);
            None
        }
        Event::Disconnected { id } => Some((id, std::mem::take(&mut errors))),
        _ => None,
    })
    .await;
    assert_eq!(gone.0, a_id);
    // The report names the cause (it may arrive just after the disconnect).
    let report = if gone.1.is_empty() {
        common::next_error(&rx).await
    } else {
        gone.1.join("; ")
    };
    assert!(report.contains("panic"), "{report}");

    // B still works both ways, and new clients are still accepted.
    b.send(Message::binary(b"still here".to_vec()))
        .await
        .unwrap();
    let data = next_event(&rx, move |e| match e {
        Event::Packet(p) if p.from() == b_id => Some(p.data().to_vec()),
        _ => None,
    })
    .await;
    assert_eq!(data, b"still here");
    b_conn
        .send(rust_websocket_core::Bytes::from_static(b"pong"), false)
        .unwrap();
    assert_eq!(
        b.next().await.unwrap().unwrap(),
        Message::binary(b"pong".to_vec())
    );
    let (_c, c_id) = client(port).await;
    assert!(c_id >= 2 && c_id != b_id);
    server.close();
}
