//! The listening side: binding, the accept loop with its caps on handshakes in progress, each
//! connection's handshake (its steps in `server::handshake`) bounded by `handshake_timeout`,
//! peer ids, and the start of each connection's task.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::Sender;
use futures_util::FutureExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::config::PeerConfig;
use crate::connection::Connection;
use crate::driver;
use crate::events::Event;
use crate::metrics::{Metrics, TlsFailure};
use crate::protocol::decode::Decoder;
use crate::protocol::deflate;
use crate::runtime::spawn_guarded;
use crate::tls::ServerTls;

pub(crate) mod handshake;
mod health;
mod metrics_path;
mod proxy_header;
use handshake::{handshake, Handshaken};

/// Where to listen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindAddress {
    /// `"*"`: every interface, IPv6 and IPv4 (dual-stack), IPv4 only where IPv6 is absent.
    Any,
    Ip(IpAddr),
}

impl BindAddress {
    /// `"*"` or an IP literal (host names are not resolved, as in Godot).
    pub fn parse(s: &str) -> Option<BindAddress> {
        let s = s.trim();
        if s == "*" {
            return Some(BindAddress::Any);
        }
        s.trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()
            .map(BindAddress::Ip)
    }
}

/// Why a server could not start.
#[derive(Debug)]
pub enum StartError {
    AddressInUse,
    AddressUnavailable,
    Io(io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::AddressInUse => write!(f, "already in use"),
            StartError::AddressUnavailable => write!(f, "address not available on this machine"),
            StartError::Io(e) => write!(f, "{e}"),
        }
    }
}

pub(crate) struct Shared {
    config: PeerConfig,
    refusing: AtomicBool,
    /// A shutdown is announced: the health path answers 503 while everything else goes on,
    /// so a load balancer takes the server out of rotation before the listener closes.
    unready: AtomicBool,
    ids: Mutex<HashSet<i32>>,
    events: Sender<Event>,
    /// Set for `wss://`: TLS is accepted first, inside the handshake timeout.
    tls: Option<ServerTls>,
    /// Ask the main thread before admitting each connection ([`Event::Admission`]).
    ask: AtomicBool,
    /// Places for handshakes in progress: taken before `accept()`, so beyond the cap new
    /// clients wait in the kernel's listen backlog instead of being refused.
    handshake_places: Arc<tokio::sync::Semaphore>,
    /// Handshakes in progress per client IP.
    pending: Mutex<Pending>,
    /// The counters the metrics path reports.
    metrics: Arc<Metrics>,
    /// The open connections, whose own counters the metrics path sums.
    live: Mutex<HashMap<i32, Arc<Connection>>>,
}

impl Shared {
    pub(crate) fn new(config: PeerConfig, events: Sender<Event>, tls: Option<ServerTls>) -> Self {
        Shared {
            config,
            refusing: AtomicBool::new(false),
            unready: AtomicBool::new(false),
            ids: Mutex::new(HashSet::new()),
            events,
            tls,
            ask: AtomicBool::new(false),
            handshake_places: Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_HANDSHAKES)),
            pending: Mutex::new(Pending::default()),
            metrics: Arc::new(Metrics::default()),
            live: Mutex::new(HashMap::new()),
        }
    }
}

/// At most this many handshakes in progress at once: a flood of half-open sockets is bounded;
/// further clients wait in the listen backlog (1024) until places free up.
pub const MAX_PENDING_HANDSHAKES: usize = 1024;
/// At most this many from one IP address, so one host cannot take all the places (generous
/// enough for many players behind one NAT joining together). Loopback and trusted proxies are
/// exempt: every connection through a local reverse proxy comes from them.
pub const MAX_PENDING_PER_IP: usize = 64;

#[derive(Default)]
struct Pending {
    per_ip: std::collections::HashMap<IpAddr, usize>,
}

/// A place among the pending handshakes, given back when dropped.
struct PendingSlot {
    shared: Arc<Shared>,
    ip: IpAddr,
    _place: tokio::sync::OwnedSemaphorePermit,
}

impl PendingSlot {
    /// Counts a new connection from `ip`, unless that address has too many in progress.
    fn take(
        shared: &Arc<Shared>,
        ip: IpAddr,
        place: tokio::sync::OwnedSemaphorePermit,
    ) -> Option<PendingSlot> {
        let mut pending = shared.pending.lock().unwrap_or_else(|e| e.into_inner());
        let from_ip = pending.per_ip.get(&ip).copied().unwrap_or(0);
        let exempt = ip.is_loopback() || shared.config.is_trusted_proxy(ip);
        if from_ip >= MAX_PENDING_PER_IP && !exempt {
            return None;
        }
        pending.per_ip.insert(ip, from_ip + 1);
        Some(PendingSlot {
            shared: shared.clone(),
            ip,
            _place: place,
        })
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut pending = self
            .shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = pending.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                pending.per_ip.remove(&self.ip);
            }
        }
    }
}

/// A running server. Dropping it does not stop it: call [`Server::close`].
pub struct Server {
    shared: Arc<Shared>,
    cancel: CancellationToken,
    /// Ends the accept loop only (`stop_listening`); `cancel` ends it and every connection.
    listening: CancellationToken,
    stopped: std::sync::mpsc::Receiver<()>,
    local_addr: SocketAddr,
}

impl Server {
    /// Binds now (so "port in use" is reported at once) and starts accepting on `rt`;
    /// with `tls`, it serves `wss://`.
    pub fn start(
        rt: &Handle,
        port: u16,
        bind: BindAddress,
        config: PeerConfig,
        events: Sender<Event>,
        tls: Option<ServerTls>,
    ) -> Result<Server, StartError> {
        let std_listener = bind_listener(port, bind).map_err(|e| match e.kind() {
            io::ErrorKind::AddrInUse => StartError::AddressInUse,
            io::ErrorKind::AddrNotAvailable => StartError::AddressUnavailable,
            _ => StartError::Io(e),
        })?;
        let local_addr = std_listener.local_addr().map_err(StartError::Io)?;
        let listener = {
            let _guard = rt.enter();
            TcpListener::from_std(std_listener).map_err(StartError::Io)?
        };
        let shared = Arc::new(Shared::new(config, events, tls));
        let cancel = CancellationToken::new();
        let listening = CancellationToken::new();
        let (stopped_tx, stopped) = std::sync::mpsc::channel();
        let task_shared = shared.clone();
        let task_cancel = cancel.clone();
        let task_listening = listening.clone();
        rt.spawn(async move {
            tokio::select! {
                _ = task_cancel.cancelled() => {}
                _ = task_listening.cancelled() => {}
                _ = accept_loop(listener, task_shared, task_cancel.clone()) => {}
            }
            // The listener is dropped (port released) before this is sent.
            let _ = stopped_tx.send(());
        });
        Ok(Server {
            shared,
            cancel,
            listening,
            stopped,
            local_addr,
        })
    }

    /// The port actually bound (useful with port 0).
    pub fn local_port(&self) -> u16 {
        self.local_addr.port()
    }

    pub fn set_refusing(&self, refusing: bool) {
        self.shared.refusing.store(refusing, Ordering::Release);
    }

    /// With `true`, the health path answers 503 while connections are still accepted and
    /// served as before: the announced start of a shutdown (`shutdown_delay`).
    pub fn set_unready(&self, unready: bool) {
        self.shared.unready.store(unready, Ordering::Release);
    }

    /// With `true`, each connection's HTTP request is sent to the main thread as an
    /// [`Event::Admission`] and upgraded only if accepted.
    pub fn set_admission(&self, ask: bool) {
        self.shared.ask.store(ask, Ordering::Release);
    }

    /// The connections open now, counted from before their [`Event::Connected`] is sent until
    /// their task has ended: a graceful shutdown is over only when this is 0.
    pub fn open_connections(&self) -> usize {
        lock_live(&self.shared.live).len()
    }

    /// Closes the listener (new clients are refused by the system at once) and refuses the
    /// handshakes in progress, keeping the open connections: the start of a graceful
    /// shutdown. Returns once the port is released (waits at most 1 s).
    pub fn stop_listening(&self) {
        self.set_refusing(true);
        self.listening.cancel();
        let _ = self.stopped.recv_timeout(Duration::from_secs(1));
    }

    /// Stops listening and drops every connection and pending handshake at once, without
    /// close frames or events. Returns once the port is released (waits at most 1 s).
    pub fn close(self) {
        self.cancel.cancel();
        let _ = self.stopped.recv_timeout(Duration::from_secs(1));
    }
}

fn bind_listener(port: u16, bind: BindAddress) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let (addr, dual) = match bind {
        BindAddress::Any => (
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
            true,
        ),
        BindAddress::Ip(ip) => (SocketAddr::new(ip, port), false),
    };
    let make = |addr: SocketAddr, dual: bool| -> io::Result<Socket> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        if dual {
            socket.set_only_v6(false)?;
        }
        // As Godot does on Unix: a restarted server can rebind while old sockets linger.
        #[cfg(unix)]
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        socket.set_nonblocking(true)?;
        Ok(socket)
    };
    let socket = match make(addr, dual) {
        // No IPv6 on this host: fall back to IPv4 for the wildcard.
        Err(e) if dual && e.kind() != io::ErrorKind::AddrInUse => make(
            SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), port),
            false,
        )?,
        other => other?,
    };
    Ok(socket.into())
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, cancel: CancellationToken) {
    loop {
        // A place first: at the cap, connections wait in the listen backlog.
        let Ok(place) = shared.handshake_places.clone().acquire_owned().await else {
            return; // A closed semaphore: cannot happen, the server owns it.
        };
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                let _ = shared.events.send(Event::Error {
                    message: format!("accept failed: {e}"),
                });
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Refused at once, unless a health path is served: then the handshake reads the
        // request, answers a health check with 503 and anything else with 503 too.
        if shared.refusing.load(Ordering::Acquire) && shared.config.health_path.is_none() {
            Metrics::count(&shared.metrics.refused);
            drop(stream);
            continue;
        }
        // Too many handshakes in progress from this address: refuse at once.
        let Some(slot) = PendingSlot::take(&shared, normalize(remote).ip(), place) else {
            Metrics::count(&shared.metrics.refused);
            drop(stream);
            continue;
        };
        let shared = shared.clone();
        let cancel = cancel.child_token();
        let events = shared.events.clone();
        spawn_guarded(events, None, async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = serve(stream, remote, shared, cancel.clone(), slot) => {}
            }
        });
    }
}

fn normalize(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

/// One accepted connection, from TCP to a peer: the handshake, bounded by `handshake_timeout`
/// (pending handshakes that stall are dropped silently, as the built-in does), then its
/// connection task.
async fn serve(
    stream: TcpStream,
    remote: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    slot: PendingSlot,
) {
    let _ = stream.set_nodelay(true);
    let remote = normalize(remote);
    let deadline = tokio::time::Instant::now() + shared.config.handshake_timeout;
    let mut tls_done = false;
    let shaking = handshake(stream, remote, &shared, deadline, &mut tls_done);
    let done = tokio::time::timeout_at(deadline, shaking).await;
    drop(slot); // No longer pending, whatever the outcome.
    match done {
        Ok(Some(peer)) => start_connection(peer, shared, cancel),
        Ok(None) => {}
        // On a wss:// server, TLS (or its first byte) never came.
        Err(_) if shared.tls.is_some() && !tls_done => {
            shared.metrics.count_tls_failure(TlsFailure::Timeout)
        }
        Err(_) => Metrics::count(&shared.metrics.handshake_failures),
    }
}

/// Reports the new peer and starts its connection task, in a task of its own: the
/// handshake's state (buffers, parser) is freed now instead of living inside every
/// connection's future.
fn start_connection(peer: Handshaken, shared: Arc<Shared>, cancel: CancellationToken) {
    let Handshaken { stream, id, info } = peer;
    let (conn, outbound) = Connection::new(id, info, &shared.config, cancel);
    let _ = conn.metrics.set(shared.metrics.clone());
    let connected = Event::Connected {
        conn: conn.clone(),
        id,
    };
    // Open before it is reported: a drain that sees no peer yet still waits for this one
    // ([`Server::open_connections`]).
    lock_live(&shared.live).insert(id, conn.clone());
    if shared.events.send(connected).is_err() {
        lock_live(&shared.live).remove(&id);
        lock(&shared.ids).remove(&id);
        return;
    }
    Metrics::count(&shared.metrics.accepted);
    let mut decoder = Decoder::new(shared.config.max_message(), true);
    if let Some((agreed, ours)) = &conn.info().deflate {
        decoder.inflate_with(deflate::for_connection(agreed, ours, true).1);
    }
    let events = shared.events.clone();
    // Also when the task panics: a connection left in `live` would keep its socket open.
    let ended = Ended {
        shared,
        conn: conn.clone(),
        id,
    };
    let task = driver::run(conn, stream, decoder, outbound, events.clone());
    // A combinator, not an `async` block, which would hold the task's future twice.
    spawn_guarded(events, None, task.map(move |()| drop(ended)));
}

/// A connection's end, for the server's books: its traffic into the totals, its id free.
struct Ended {
    shared: Arc<Shared>,
    conn: Arc<Connection>,
    id: i32,
}

impl Drop for Ended {
    fn drop(&mut self) {
        let shared = &self.shared;
        // Under the live lock, as a scrape reads: its traffic is counted once, never twice.
        let mut live = lock_live(&shared.live);
        shared
            .metrics
            .connection_ended(&self.conn.stats(), self.conn.close_code());
        live.remove(&self.id);
        drop(live);
        lock(&shared.ids).remove(&self.id);
    }
}

fn lock(ids: &Mutex<HashSet<i32>>) -> std::sync::MutexGuard<'_, HashSet<i32>> {
    ids.lock().unwrap_or_else(|e| e.into_inner())
}

fn lock_live(
    live: &Mutex<HashMap<i32, Arc<Connection>>>,
) -> std::sync::MutexGuard<'_, HashMap<i32, Arc<Connection>>> {
    live.lock().unwrap_or_else(|e| e.into_inner())
}

/// A random id in 2..2^31, unique among this server's live connections.
fn new_id(ids: &Mutex<HashSet<i32>>) -> i32 {
    let mut ids = lock(ids);
    loop {
        let id = fastrand::i32(2..=i32::MAX);
        if ids.insert(id) {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_address() {
        assert_eq!(BindAddress::parse("*"), Some(BindAddress::Any));
        assert_eq!(
            BindAddress::parse("127.0.0.1"),
            Some(BindAddress::Ip([127, 0, 0, 1].into()))
        );
        assert!(matches!(
            BindAddress::parse("::1"),
            Some(BindAddress::Ip(IpAddr::V6(_)))
        ));
        assert_eq!(BindAddress::parse("localhost"), None);
    }
}
