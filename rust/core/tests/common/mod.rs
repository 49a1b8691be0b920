//! Helpers shared by the integration tests: a server on 127.0.0.1 and event waiting.
#![allow(dead_code)] // Each test crate uses a different subset.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use rwsmp_core::config::PeerConfig;
use rwsmp_core::connection::Connection;
use rwsmp_core::events::Event;
use rwsmp_core::server::{BindAddress, Server};
use rwsmp_core::tls::ServerTls;

pub fn rt() -> tokio::runtime::Handle {
    rwsmp_core::runtime::handle().expect("runtime")
}

/// A server on 127.0.0.1 and a free port, with its event queue.
pub fn start(tls: Option<ServerTls>, config: PeerConfig) -> (Server, Receiver<Event>, u16) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let loopback = BindAddress::parse("127.0.0.1").unwrap();
    let server = Server::start(&rt(), 0, loopback, config, tx, tls).expect("bind");
    let port = server.local_port();
    (server, rx, port)
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
