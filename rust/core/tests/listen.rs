//! Where a server listens: the dual-stack wildcard, and a port in use (reported at once, and
//! free again once `close()` returns).

use futures_util::StreamExt;
use rust_websocket_core::config::PeerConfig;
use rust_websocket_core::server::{BindAddress, Server};
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::{connect_client, connected, rt, start_plain as start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_bind_is_dual_stack() {
    let (tx, rx) = crossbeam_channel::unbounded();
    let server =
        Server::start(&rt(), 0, BindAddress::Any, PeerConfig::default(), tx, None).expect("bind *");
    let port = server.local_port();
    for url in [
        format!("ws://127.0.0.1:{port}/"),
        format!("ws://[::1]:{port}/"),
    ] {
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(
            matches!(ws.next().await, Some(Ok(Message::Binary(b))) if b.len() == 4),
            "{url}: no id"
        );
    }
    let rx2 = rx.clone();
    let hosts = tokio::task::spawn_blocking(move || {
        let a = connected(&rx2).0.info().remote.ip().to_string();
        let b = connected(&rx2).0.info().remote.ip().to_string();
        (a, b)
    })
    .await
    .unwrap();
    // IPv4 clients of the dual-stack socket are reported as plain IPv4, not ::ffff:127.0.0.1.
    assert_eq!(hosts, ("127.0.0.1".to_string(), "::1".to_string()));
    // A client given an IPv6 literal URL connects through our own connector too.
    let (client, crx) = connect_client(&format!("ws://[::1]:{port}"));
    let id = tokio::task::spawn_blocking(move || connected(&crx).1)
        .await
        .unwrap();
    assert!(id >= 2);
    client.close();
    server.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_in_use_is_reported() {
    let (server, _rx, port) = start(PeerConfig::default());
    // A second server on the same port (its events are not needed).
    let on_the_same_port = || {
        let (tx, _) = crossbeam_channel::unbounded();
        let loopback = BindAddress::parse("127.0.0.1").unwrap();
        Server::start(&rt(), port, loopback, PeerConfig::default(), tx, None)
    };
    assert!(matches!(
        on_the_same_port(),
        Err(rust_websocket_core::server::StartError::AddressInUse)
    ));
    // After close() returns the port is free again.
    server.close();
    let reopened = on_the_same_port();
    assert!(reopened.is_ok());
    reopened.unwrap().close();
}

/// `open_connections()`, which a graceful shutdown waits on: a connection counts from before
/// the game hears of it until its task has ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_connections_counts_a_connection_until_its_task_ends() {
    let (server, rx, port) = start(PeerConfig::default());
    assert_eq!(server.open_connections(), 0);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/"))
        .await
        .unwrap();
    // The id comes from the connection's task, which runs only once the connection counts.
    assert!(matches!(ws.next().await, Some(Ok(Message::Binary(b))) if b.len() == 4));
    assert_eq!(
        server.open_connections(),
        1,
        "not counted before the game polled"
    );
    ws.close(None).await.unwrap();
    let rx2 = rx.clone();
    tokio::task::spawn_blocking(move || {
        let (_conn, id) = connected(&rx2);
        common::wait_for(&rx2, |e| match e {
            rust_websocket_core::events::Event::Disconnected { id: gone } if gone == id => Some(()),
            _ => None,
        })
    })
    .await
    .unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while server.open_connections() != 0 {
        assert!(
            std::time::Instant::now() < until,
            "still counted after its end"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    server.close();
}
