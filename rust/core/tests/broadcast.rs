//! Broadcasts (`Connection::send_broadcast` with the task wakes held until every copy is
//! queued): against real tokio-tungstenite clients on 127.0.0.1.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use rust_websocket_core::config::PeerConfig;
use rust_websocket_core::connection::{Connection, HeldWakes};
use rust_websocket_core::Bytes;
use tokio_tungstenite::tungstenite::Message;

use common::{connected, AnyWs, Transport};
use crossbeam_channel::Receiver;
use rust_websocket_core::events::Event;

const CLIENTS: usize = 12;
const BROADCASTS: u32 = 300;

/// `n` clients of the server on `port`, each past its id greeting, with their connections as
/// the server's game sees them.
async fn greeted_clients(
    n: usize,
    rx: &Receiver<Event>,
    port: u16,
    ca: Option<&str>,
) -> (Vec<AnyWs>, Vec<Arc<Connection>>) {
    let mut clients = Vec::new();
    let mut conns = Vec::new();
    for _ in 0..n {
        let (ws, _id) = common::greeted_on(port, ca).await;
        let rx = rx.clone();
        let (conn, _) = tokio::task::spawn_blocking(move || connected(&rx))
            .await
            .unwrap();
        clients.push(ws);
        conns.push(conn);
    }
    (clients, conns)
}

/// The next message `ws` reads, within 10 s; `what` names it in the failure.
async fn next_message(ws: &mut AnyWs, what: &str) -> Message {
    tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .unwrap_or_else(|_| panic!("{what} never came"))
        .unwrap()
        .unwrap()
}

on_both_transports!(
    every_copy:
    every_client_gets_every_broadcast_in_order,
    wss_every_client_gets_every_broadcast_in_order
);

/// 300 broadcasts of 1 KiB to 12 clients from a plain thread that never polls (so, past the
/// first few, no copy goes directly: each waits in its queue for the held wake): every client
/// reads all of them, in order, within 10 s.
async fn every_copy(transport: Transport) {
    let (server, rx, port, ca) = common::start_on(transport, PeerConfig::default());
    let (mut clients, conns) = greeted_clients(CLIENTS, &rx, port, ca.as_deref()).await;
    let sender = tokio::task::spawn_blocking(move || {
        for seq in 0..BROADCASTS {
            let mut held = HeldWakes::default();
            let data = Bytes::from([seq.to_le_bytes().to_vec(), vec![seq as u8; 1020]].concat());
            for conn in &conns {
                conn.send_broadcast(data.clone(), false, Duration::from_secs(5), &mut held)
                    .expect("a client that reads is not too slow");
            }
            if seq % 50 == 0 {
                // Let some wakes run late, while the next broadcast is queued.
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    });
    for (i, ws) in clients.iter_mut().enumerate() {
        for seq in 0..BROADCASTS {
            let got = next_message(ws, &format!("client {i}: broadcast {seq}")).await;
            let Message::Binary(got) = got else {
                panic!("client {i}: {got:?}")
            };
            assert_eq!(got.len(), 1024, "client {i}, broadcast {seq}");
            assert_eq!(got[..4], seq.to_le_bytes(), "client {i}: out of order");
        }
    }
    sender.await.unwrap();
    server.close();
}

/// While the game's main thread spins, a large message to one peer goes to the socket directly
/// even in a burst; a broadcast's copies still go to the tasks (past the few the per-poll budget
/// lets through), so one broadcast never makes the game's thread write to every socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_game_hands_large_broadcast_copies_to_the_tasks() {
    const PEERS: usize = 10;
    let poller = common::Poller::spinning();
    let (server, rx, port) = common::start_plain(poller.config(PeerConfig::default()));
    let (mut clients, conns) = greeted_clients(PEERS, &rx, port, None).await;
    poller.wait_main_only(true);
    poller.wait_spinning();
    let big = Bytes::from(vec![7u8; 16 * 1024]);
    let sent = big.clone();
    let queued = poller.on_main_thread(move || {
        let mut held = HeldWakes::default();
        for conn in &conns {
            conn.send_broadcast(sent.clone(), false, Duration::from_secs(5), &mut held)
                .unwrap();
        }
        // Counted before the held wakes are released (when `held` drops, after this).
        conns.iter().filter(|c| c.outbound_queued() > 0).count()
    });
    assert!(
        queued >= PEERS - 4,
        "only {queued} of {PEERS} copies were queued: the game's thread wrote the rest itself"
    );
    for (i, ws) in clients.iter_mut().enumerate() {
        let got = next_message(ws, &format!("client {i}: the broadcast")).await;
        assert!(got == Message::Binary(big.clone()), "client {i}");
    }
    server.close();
}
