//! heartbeat_interval: a silent peer is dropped within two intervals, a live one kept with an
//! RTT, and no peer is dropped while this side's game is not reading.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rust_websocket_core::config::PeerConfig;
use rust_websocket_core::connection::ReadyState;
use rust_websocket_core::events::Event;
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::{connected, greeted_client, next_event, start_plain as start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_drops_a_silent_peer_and_keeps_a_live_one() {
    let every = Duration::from_millis(200);
    let config = PeerConfig {
        heartbeat_interval: Some(every),
        ..PeerConfig::default()
    };
    let (server, rx, port) = start(config);
    // A live client: keeps reading, so tungstenite answers every ping.
    let mut live = greeted_client(port).await.0;
    let (live_conn, live_id) = next_event(&rx, |e| match e {
        Event::Connected { conn, id } => Some((conn, id)),
        _ => None,
    })
    .await;
    let reader = tokio::spawn(async move { while let Some(Ok(_)) = live.next().await {} });
    // A dead client: handshake done, then it never reads again (as if frozen or cut off).
    let dead = greeted_client(port).await.0;
    let t0 = Instant::now();
    let gone = next_event(&rx, |e| match e {
        Event::Disconnected { id } => Some(id),
        _ => None,
    })
    .await;
    let waited = t0.elapsed();
    assert_ne!(gone, live_id, "the live peer was dropped");
    assert!(
        waited >= every && waited <= every * 3,
        "dead peer found after {waited:?}"
    );
    std::thread::sleep(every * 3);
    assert_eq!(live_conn.ready_state(), ReadyState::Open);
    let rtt = live_conn.rtt().expect("an RTT from answered pings");
    assert!(rtt < Duration::from_millis(100), "{rtt:?}");
    reader.abort();
    drop(dead);
    server.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_does_not_drop_a_peer_while_this_side_is_not_reading() {
    // The game stops taking packets for a while (a long frame, a level load). The reader then
    // pauses (backpressure) and cannot see the peer's pongs: that is no sign of a dead peer.
    let every = Duration::from_millis(150);
    let config = PeerConfig {
        heartbeat_interval: Some(every),
        max_queued_packets: 8,
        ..PeerConfig::default()
    };
    let (server, rx, port) = start(config);
    let mut ws = greeted_client(port).await.0;
    const N: u32 = 100;
    for i in 0..N {
        ws.feed(Message::binary(i.to_le_bytes().to_vec()))
            .await
            .unwrap();
    }
    ws.flush().await.unwrap();
    // The peer stays alive: it keeps reading, so tungstenite answers every ping.
    let reader = tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} });
    let (conn, packets, dropped) = tokio::task::spawn_blocking(move || {
        let (conn, _) = connected(&rx);
        std::thread::sleep(every * 7);
        let (mut packets, mut dropped) = (0u32, false);
        let end = Instant::now() + every * 4;
        while let Ok(e) = rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
            match e {
                Event::Packet(p) => {
                    assert_eq!(p.data(), packets.to_le_bytes());
                    packets += 1;
                }
                Event::Disconnected { .. } => dropped = true,
                _ => {}
            }
        }
        (conn, packets, dropped)
    })
    .await
    .unwrap();
    assert!(
        !dropped,
        "dropped after {packets} packets while the game held them"
    );
    assert_eq!(packets, N);
    assert_eq!(conn.ready_state(), ReadyState::Open);
    assert!(
        conn.rtt().is_some(),
        "no pong was seen after the reader resumed"
    );
    reader.abort();
    server.close();
}
