//! Helpers shared by the integration tests: a server on 127.0.0.1, clients (ours and
//! tokio-tungstenite's), and event waiting.
#![allow(dead_code)] // Each test crate uses a different subset.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use futures_util::StreamExt;
use rust_websocket_core::client::Client;
use rust_websocket_core::config::PeerConfig;
use rust_websocket_core::connection::Connection;
use rust_websocket_core::events::Event;
use rust_websocket_core::server::{BindAddress, Server};
use rust_websocket_core::tls::ServerTls;
use rust_websocket_core::url::WsUrl;
use tokio_tungstenite::tungstenite::Message;

/// A tokio-tungstenite client connection.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub fn rt() -> tokio::runtime::Handle {
    rust_websocket_core::runtime::handle().expect("runtime")
}

/// A server on 127.0.0.1 and a free port, with its event queue.
pub fn start(tls: Option<ServerTls>, config: PeerConfig) -> (Server, Receiver<Event>, u16) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let loopback = BindAddress::parse("127.0.0.1").unwrap();
    let server = Server::start(&rt(), 0, loopback, config, tx, tls).expect("bind");
    let port = server.local_port();
    (server, rx, port)
}

/// A plain `ws://` server on 127.0.0.1 (see [`start`]).
pub fn start_plain(config: PeerConfig) -> (Server, Receiver<Event>, u16) {
    start(None, config)
}

/// A tokio-tungstenite client connected to `ws://127.0.0.1:port/`, before the id greeting.
pub async fn raw_client(port: u16) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/"))
        .await
        .expect("connect");
    ws
}

/// [`raw_client`] after the server's id greeting, with that id.
pub async fn greeted_client(port: u16) -> (Ws, i32) {
    let mut ws = raw_client(port).await;
    let id = match ws.next().await {
        Some(Ok(Message::Binary(b))) if b.len() == 4 => {
            i32::from_le_bytes([b[0], b[1], b[2], b[3]])
        }
        other => panic!("no id: {other:?}"),
    };
    (ws, id)
}

/// Our client connecting to `url` with the default configuration, and its event queue.
pub fn connect_client(url: &str) -> (Client, Receiver<Event>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let url = WsUrl::parse(url).expect("url");
    (
        Client::connect(&rt(), url, PeerConfig::default(), tx, None),
        rx,
    )
}

/// Waits (up to 5 s) for the next event that `pick` accepts, skipping others.
pub fn wait_for<T>(rx: &Receiver<Event>, mut pick: impl FnMut(Event) -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = rx
            .recv_timeout(left)
            .expect("timed out waiting for an event");
        if let Some(v) = pick(ev) {
            return v;
        }
    }
}

/// [`wait_for`] from async code, without blocking a runtime worker.
pub async fn next_event<T: Send + 'static>(
    rx: &Receiver<Event>,
    pick: impl FnMut(Event) -> Option<T> + Send + 'static,
) -> T {
    let rx = rx.clone();
    tokio::task::spawn_blocking(move || wait_for(&rx, pick))
        .await
        .expect("event waiter")
}

pub fn connected(rx: &Receiver<Event>) -> (Arc<Connection>, i32) {
    wait_for(rx, |e| match e {
        Event::Connected { conn, id } => Some((conn, id)),
        _ => None,
    })
}
