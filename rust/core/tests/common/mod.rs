//! Helpers shared by the integration tests: a server on 127.0.0.1, clients (ours and
//! tokio-tungstenite's), and event waiting.
#![allow(dead_code)] // Each test crate uses a different subset.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use futures_util::StreamExt;
use rust_websocket_core::client::Client;
use rust_websocket_core::config::PeerConfig;
use rust_websocket_core::connection::{Connection, SendError};
use rust_websocket_core::events::Event;
use rust_websocket_core::ready::ReadySockets;
use rust_websocket_core::server::{BindAddress, Server};
use rust_websocket_core::tls::ServerTls;
use rust_websocket_core::url::WsUrl;
use tokio_tungstenite::tungstenite::Message;

/// A tokio-tungstenite client connection.
pub type Ws = AnyWs;

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
    client_on(port, None).await
}

/// [`raw_client`] after the server's id greeting, with that id.
pub async fn greeted_client(port: u16) -> (Ws, i32) {
    greeted_on(port, None).await
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

/// The message of the next error event (up to 5 s), from async code.
pub async fn next_error(rx: &Receiver<Event>) -> String {
    next_event(rx, |e| match e {
        Event::Error { message } => Some(message),
        _ => None,
    })
    .await
}

pub fn connected(rx: &Receiver<Event>) -> (Arc<Connection>, i32) {
    wait_for(rx, |e| match e {
        Event::Connected { conn, id } => Some((conn, id)),
        _ => None,
    })
}

/// The payload of the next packet event (up to 5 s), skipping other events.
pub fn next_packet(rx: &Receiver<Event>) -> Vec<u8> {
    wait_for(rx, |e| match e {
        Event::Packet(p) => Some(p.data().to_vec()),
        _ => None,
    })
}

/// Sends `p` as the game's main thread does, retrying (up to 20 s) while the queue is full.
pub fn send_retrying(conn: &Connection, p: &rust_websocket_core::Bytes) {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        match conn.send(p.clone(), false) {
            Ok(()) => return,
            Err(SendError::Full) if Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) => panic!("send failed: {e:?}"),
        }
    }
}

/// A game that does not read while a client sends 5000 numbered messages as fast as the
/// socket takes them, on a server with `base` and `max_queued_packets` 16: reading must pause
/// at the limit (at most one packet over it queued meanwhile), not drop; once the game reads,
/// every message arrives, in order.
pub async fn a_game_that_does_not_read_pauses_reading(base: PeerConfig) {
    use futures_util::SinkExt;
    const N: u32 = 5000;
    let config = PeerConfig {
        max_queued_packets: 16,
        ..base
    };
    let (server, rx, port) = start_plain(config);
    let mut ws = greeted_client(port).await.0;
    let sender = tokio::spawn(async move {
        for i in 0..N {
            ws.feed(Message::binary(i.to_le_bytes().to_vec()))
                .await
                .unwrap();
        }
        ws.flush().await.unwrap();
        ws
    });
    let held = tokio::task::spawn_blocking(move || {
        connected(&rx);
        std::thread::sleep(Duration::from_millis(300));
        let held = rx.len();
        for i in 0..N {
            assert_eq!(next_packet(&rx), i.to_le_bytes(), "packet {i}");
        }
        held
    })
    .await
    .unwrap();
    assert!(
        held <= 17,
        "reading went on while the game held {held} packets"
    );
    drop(sender.await.unwrap());
    server.close();
}

/// Waits (up to 3 s) for the server to drop `sock`, a connection that never finished its
/// handshake, and checks that it did so at a 500 ms handshake timeout counted from `t0`.
pub async fn expect_dropped_at_handshake_timeout(sock: &mut tokio::net::TcpStream, t0: Instant) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(3), sock.read(&mut buf))
        .await
        .expect("stalled socket not dropped");
    assert_eq!(n.unwrap_or(0), 0);
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_millis(1500),
        "{waited:?}"
    );
}

/// A thread that does what a game's `poll()` does for the runtime, in a loop until dropped:
/// reads the sockets with input waiting, refills the direct-write budget.
pub struct Poller {
    pub ready: Arc<ReadySockets>,
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    jobs: crossbeam_channel::Sender<Job>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Work for the polling thread, between two polls ([`Poller::on_main_thread`]).
type Job = Box<dyn FnOnce() + Send>;

impl Poller {
    /// A fast loop: a game with frames uncapped.
    pub fn start() -> Poller {
        Poller::every(Duration::from_micros(20))
    }

    /// A loop with no sleep at all, as a game with uncapped frames and little to do (it
    /// yields its CPU between polls, so tests running beside it still get one).
    pub fn spinning() -> Poller {
        Poller::every(Duration::ZERO)
    }

    /// One poll per `frame`.
    pub fn every(frame: Duration) -> Poller {
        let ready = ReadySockets::new().expect("epoll");
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(false));
        let (r, s, p) = (ready.clone(), stop.clone(), paused.clone());
        let (jobs, queued) = crossbeam_channel::unbounded::<Job>();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if !p.load(Ordering::Relaxed) {
                    r.read_ready();
                    rust_websocket_core::connection::refill_direct_budget();
                }
                for job in queued.try_iter() {
                    job();
                }
                if frame.is_zero() {
                    std::thread::yield_now();
                } else {
                    std::thread::sleep(frame);
                }
            }
        });
        Poller {
            ready,
            stop,
            paused,
            jobs,
            thread: Some(thread),
        }
    }

    /// Runs `f` on the polling thread between two polls, as a game's own calls run between
    /// its `poll()`s (never at the same time as the main thread's reads), and returns its
    /// result.
    pub fn on_main_thread<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .expect("the polling thread runs");
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the polling thread ran the job")
    }

    /// Stops polling (a game busy elsewhere) or resumes.
    pub fn pause(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
    }

    /// Waits (up to 10 s) until the main thread is the only reader.
    pub fn wait_main_only(&self, want: bool) {
        self.wait_until(&format!("main-only reading never became {want}"), |r| {
            r.main_only() == want
        });
    }

    /// Waits (up to 10 s) until the main thread counts as spinning.
    pub fn wait_spinning(&self) {
        self.wait_until("the polling thread never counted as spinning", |r| {
            r.spinning()
        });
    }

    fn wait_until(&self, failure: &str, done: impl Fn(&ReadySockets) -> bool) {
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while !done(&self.ready) {
            assert!(std::time::Instant::now() < until, "{failure}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn config(&self, base: PeerConfig) -> PeerConfig {
        PeerConfig {
            ready_sockets: Some(self.ready.clone()),
            ..base
        }
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Which socket a test runs on: the paths differ (a TLS session between the socket and the
/// frames), the outcomes must not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Ws,
    Wss,
}

/// One scenario `async fn(Transport)` as two tests: `$ws` on `ws://`, `$wss` on `wss://`.
#[allow(unused_macros)] // Not every test crate has such scenarios.
macro_rules! on_both_transports {
    ($scenario:ident: $ws:ident, $wss:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $ws() {
            $scenario(common::Transport::Ws).await
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $wss() {
            $scenario(common::Transport::Wss).await
        }
    };
}

/// Anything a WebSocket client can run on.
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// A tokio-tungstenite client on either transport.
pub type AnyWs = tokio_tungstenite::WebSocketStream<Box<dyn Io>>;

/// A server on 127.0.0.1 over `transport`; for `wss://`, a certificate for "localhost" made
/// here, signed by a CA of its own, whose PEM is returned for clients to trust.
pub fn start_on(
    transport: Transport,
    config: PeerConfig,
) -> (Server, Receiver<Event>, u16, Option<String>) {
    match transport {
        Transport::Ws => {
            let (server, rx, port) = start(None, config);
            (server, rx, port, None)
        }
        Transport::Wss => {
            let (ca_pem, chain, key) = localhost_certificate();
            let tls = ServerTls::from_pem(&key, &chain).expect("server TLS config");
            let (server, rx, port) = start(Some(tls), config);
            (server, rx, port, Some(ca_pem))
        }
    }
}

/// (CA certificate, leaf certificate for "localhost", leaf key), as PEM.
fn localhost_certificate() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).expect("CA");
    let key = KeyPair::generate().expect("key");
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .signed_by(&key, &ca, &ca_key)
        .expect("leaf");
    (ca.pem(), leaf.pem(), key.serialize_pem())
}

/// A tokio-tungstenite client (messages up to 64 MiB) of the server on `port`, before the id
/// greeting; `ca` is the PEM to trust for `wss://` ([`start_on`]).
pub async fn client_on(port: u16, ca: Option<&str>) -> AnyWs {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (io, scheme, host): (Box<dyn Io>, _, _) = match ca {
        None => (Box::new(tcp), "ws", "127.0.0.1"),
        Some(ca) => {
            use tokio_rustls::rustls;
            use tokio_rustls::rustls::pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()) {
                roots.add(cert.expect("CA PEM")).expect("CA");
            }
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
            let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect("localhost".try_into().expect("name"), tcp)
                .await
                .expect("TLS handshake");
            (Box::new(tls), "wss", "localhost")
        }
    };
    let limits = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    let url = format!("{scheme}://{host}:{port}/");
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, io, Some(limits))
        .await
        .expect("WebSocket handshake");
    ws
}

/// [`client_on`] after the server's id greeting, with that id.
pub async fn greeted_on(port: u16, ca: Option<&str>) -> (AnyWs, i32) {
    let mut ws = client_on(port, ca).await;
    let id = match ws.next().await {
        Some(Ok(Message::Binary(b))) if b.len() == 4 => {
            i32::from_le_bytes([b[0], b[1], b[2], b[3]])
        }
        other => panic!("no id: {other:?}"),
    };
    (ws, id)
}
