//! One WebSocket connection as the game's main thread sees it: a thread-safe handle
//! ([`Connection`]) with the connection's limits, counters and state.
//!
//! Outbound, a message goes straight to the socket when nothing is queued (see `direct`), or
//! on a crossbeam queue to the connection task ([`crate::driver`]), woken once until it runs,
//! which writes everything queued in few system calls. Inbound, the task hands each message to
//! the game as an event and stops reading while the game holds too much of this peer's input
//! (backpressure, not loss).

mod direct;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{Compression, PeerConfig};
use crate::protocol::extension::Agreed;
use crate::Bytes;

pub use direct::refill_direct_budget;

/// WebSocket ready states, numbered as Godot's `WebSocketPeer.State`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ReadyState {
    Connecting = 0,
    Open = 1,
    Closing = 2,
    Closed = 3,
}

/// Why [`Connection::send`] refused a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// The peer's outbound queue is at `max_queued_packets` or `outbound_buffer_size`.
    Full,
    /// A broadcast found this peer too slow (see [`Connection::send_broadcast`]): it is being
    /// closed with [`SLOW_PEER_CODE`] and will be reported.
    TooSlow,
}

/// Close code for a peer that cannot keep up with broadcasts (RFC 6455: policy violation).
pub const SLOW_PEER_CODE: u16 = 1008;
/// A broadcast may queue up to this many times a peer's limits while it catches up.
const BROADCAST_OVERCOMMIT: usize = 2;

/// With the `fault-injection` feature (tests only), a text message with exactly this content
/// makes its connection task panic, to prove a panic closes only that connection.
#[cfg(feature = "fault-injection")]
pub const PANIC_TRIGGER: &str = "rwsmp-fault-injection: panic";

/// What the main thread hands the connection task.
pub(crate) enum Outgoing {
    /// A message; `true` for a text frame.
    Data(Bytes, bool),
    /// The game's close, after everything it queued before.
    Close(u16, String),
}

/// Traffic counters of one connection (payload bytes, not counting WebSocket framing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    /// Message bytes as the game sees them (decompressed).
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Message bytes as they crossed the wire: compressed where permessage-deflate compressed
    /// them, else the same as `bytes_in` / `bytes_out`.
    pub wire_bytes_in: u64,
    pub wire_bytes_out: u64,
    pub packets_in: u64,
    pub packets_out: u64,
    pub opened_unix_ms: u64,
}

impl ConnectionStats {
    /// Adds `other`'s traffic (for totals over several connections).
    pub fn add(&mut self, other: &ConnectionStats) {
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.wire_bytes_in += other.wire_bytes_in;
        self.wire_bytes_out += other.wire_bytes_out;
        self.packets_in += other.packets_in;
        self.packets_out += other.packets_out;
    }
}

/// Facts fixed when the handshake completes.
#[derive(Clone, Debug)]
pub struct ConnectionInfo {
    pub remote: SocketAddr,
    pub protocol: String,
    pub requested_url: String,
    /// The agreed `Sec-WebSocket-Extensions` (`""`: none, plain frames).
    pub extensions: String,
    /// permessage-deflate's agreed parameters and this side's settings, when agreed.
    pub(crate) deflate: Option<(Agreed, Compression)>,
}

/// Messages and payload bytes each way, counted as they pass.
#[derive(Default)]
struct Traffic {
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    wire_in: AtomicU64,
    wire_out: AtomicU64,
    packets_in: AtomicU64,
    packets_out: AtomicU64,
}

/// Received messages the game holds (bytes, count) and the reader's wait for room.
#[derive(Default)]
pub(crate) struct Inbound {
    bytes: AtomicUsize,
    count: AtomicUsize,
    /// The reader waits for room: releasing credit must wake it.
    pub(crate) paused: AtomicBool,
    pub(crate) wake: Notify,
}

/// Whether a message goes to one peer or is one peer's copy of a broadcast.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Single,
    /// Never a large direct write in a burst: the copies go to the tasks, woken together.
    Broadcast,
}

/// The task wakes of one broadcast, held back until it has queued every copy and then handed
/// to a runtime thread in one go: the game's main thread makes one cross-thread wake per
/// broadcast instead of one per peer, and the runtime's writes to hundreds of sockets do not
/// compete with it for a CPU while it is still queueing. Dropping it releases the wakes.
#[derive(Default)]
pub struct HeldWakes(Vec<Arc<Connection>>);

impl HeldWakes {
    fn hold(&mut self, conn: &Arc<Connection>) {
        if conn.wants_wake() {
            self.0.push(conn.clone());
        }
    }

    /// Wakes every held task, from the runtime (here, if it is gone).
    pub fn release(&mut self) {
        let conns = std::mem::take(&mut self.0);
        match conns.as_slice() {
            [] => {}
            [conn] => conn.out_wake.notify_one(),
            _ => match crate::runtime::running() {
                Some(runtime) => {
                    runtime.spawn(async move {
                        for conn in conns {
                            conn.out_wake.notify_one();
                        }
                    });
                }
                None => conns.iter().for_each(|conn| conn.out_wake.notify_one()),
            },
        }
    }
}

impl Drop for HeldWakes {
    fn drop(&mut self) {
        self.release();
    }
}

/// The main thread's handle on one connection. Cheap to share; every method is non-blocking.
pub struct Connection {
    id: i32,
    info: ConnectionInfo,
    state: AtomicU8,
    /// (code, reason) of the close, once known. Code -1 when it was not a clean close.
    close_status: Mutex<Option<(i32, String)>>,
    pub(crate) outbound: Sender<Outgoing>,
    /// Payload bytes and messages accepted and not yet written to the socket.
    out_bytes: AtomicUsize,
    out_count: AtomicUsize,
    /// Wakes the task for queued messages (once until it runs: `wake_pending`).
    pub(crate) out_wake: Notify,
    pub(crate) wake_pending: AtomicBool,
    /// Received messages the game holds, and the reader's wait for room.
    pub(crate) inbound: Inbound,
    /// The game asked to close (as opposed to a close the other side began).
    pub(crate) close_queued: AtomicBool,
    /// Wakes the task when the game closes, so the connection ends within a bound even if
    /// the task is stuck writing to a peer that reads nothing.
    pub(crate) close_wake: Notify,
    /// Closed by a broadcast as too slow: no long wait for the close to get through.
    pub(crate) too_slow: AtomicBool,
    /// Since when (µs since `created`) a broadcast has had this peer over its limits; 0 while
    /// within them. Cleared once the queue is back within the limits.
    over_since_us: AtomicU64,
    pub(crate) heartbeat: Option<Duration>,
    /// Where the task registers a plain socket for the main thread's reads.
    pub(crate) ready: Option<Arc<crate::ready::ReadySockets>>,
    /// Round-trip time of the last answered ping, in µs (0 = not measured yet).
    pub(crate) rtt_us: AtomicU64,
    /// The main thread's way to a plain TCP socket (see `direct`).
    pub(crate) direct: direct::DirectPath,
    /// The server's counters, fed with each heartbeat RTT (servers with a metrics path only).
    pub(crate) metrics: std::sync::OnceLock<Arc<crate::metrics::Metrics>>,
    created: std::time::Instant,
    /// When the connection opened, for stats (milliseconds since the Unix epoch).
    opened_unix_ms: u64,
    /// The other side's close frame arrived (a clean close, whoever started it).
    pub(crate) close_received: AtomicBool,
    /// The last packet the game took from this peer was a text frame.
    last_was_text: AtomicBool,
    traffic: Traffic,
    /// Set when the main thread has let go of this peer (forced disconnect, `close()`):
    /// no further events are reported.
    pub(crate) silenced: AtomicBool,
    pub(crate) cancel: CancellationToken,
    max_queued: usize,
    out_limit: usize,
    in_limit: usize,
}

impl Connection {
    pub(crate) fn new(
        id: i32,
        info: ConnectionInfo,
        config: &PeerConfig,
        cancel: CancellationToken,
    ) -> (Arc<Self>, Receiver<Outgoing>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let conn = Arc::new(Connection {
            id,
            info,
            state: AtomicU8::new(ReadyState::Open as u8),
            close_status: Mutex::new(None),
            outbound: tx,
            out_bytes: AtomicUsize::new(0),
            out_count: AtomicUsize::new(0),
            out_wake: Notify::new(),
            wake_pending: AtomicBool::new(false),
            inbound: Inbound::default(),
            close_queued: AtomicBool::new(false),
            close_wake: Notify::new(),
            too_slow: AtomicBool::new(false),
            over_since_us: AtomicU64::new(0),
            heartbeat: config.heartbeat_interval,
            ready: config.ready_sockets.clone(),
            rtt_us: AtomicU64::new(0),
            direct: direct::DirectPath::default(),
            metrics: std::sync::OnceLock::new(),
            created: std::time::Instant::now(),
            opened_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            close_received: AtomicBool::new(false),
            last_was_text: AtomicBool::new(false),
            traffic: Traffic::default(),
            silenced: AtomicBool::new(false),
            cancel,
            max_queued: config.max_queued_packets.max(1),
            out_limit: config.outbound_buffer_size,
            in_limit: config.inbound_buffer_size.max(1),
        });
        (conn, rx)
    }

    /// The peer id of the other side (1 on a client's connection to its server).
    pub fn id(&self) -> i32 {
        self.id
    }

    pub fn info(&self) -> &ConnectionInfo {
        &self.info
    }

    pub fn ready_state(&self) -> ReadyState {
        match self.state.load(Ordering::Acquire) {
            0 => ReadyState::Connecting,
            1 => ReadyState::Open,
            2 => ReadyState::Closing,
            _ => ReadyState::Closed,
        }
    }

    pub(crate) fn set_state(&self, state: ReadyState) {
        self.state.fetch_max(state as u8, Ordering::AcqRel);
    }

    /// Close code once closed: the code received or sent, -1 if not closed cleanly.
    pub fn close_code(&self) -> i32 {
        self.close_status_locked().as_ref().map_or(-1, |s| s.0)
    }

    pub fn close_reason(&self) -> String {
        self.close_status_locked()
            .as_ref()
            .map_or_else(String::new, |s| s.1.clone())
    }

    fn close_status_locked(&self) -> std::sync::MutexGuard<'_, Option<(i32, String)>> {
        self.close_status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes queued towards this peer and not yet written to the socket.
    pub fn outbound_buffered(&self) -> usize {
        self.out_bytes.load(Ordering::Acquire)
    }

    /// Packets queued towards this peer and not yet written to the socket.
    pub fn outbound_queued(&self) -> usize {
        self.out_count.load(Ordering::Acquire)
    }

    /// Whether the connection ended with a close handshake (the other side's close frame
    /// arrived), as opposed to a reset, a timeout or a dead peer.
    pub fn was_clean(&self) -> bool {
        self.close_received.load(Ordering::Acquire)
    }

    /// Traffic so far: packets and payload bytes, in and out, plus when it opened.
    pub fn stats(&self) -> ConnectionStats {
        ConnectionStats {
            bytes_in: self.traffic.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.traffic.bytes_out.load(Ordering::Relaxed),
            wire_bytes_in: self.traffic.wire_in.load(Ordering::Relaxed),
            wire_bytes_out: self.traffic.wire_out.load(Ordering::Relaxed),
            packets_in: self.traffic.packets_in.load(Ordering::Relaxed),
            packets_out: self.traffic.packets_out.load(Ordering::Relaxed),
            opened_unix_ms: self.opened_unix_ms,
        }
    }

    /// Whether the last packet the game took from this peer arrived as a text frame.
    pub fn last_was_text(&self) -> bool {
        self.last_was_text.load(Ordering::Relaxed)
    }

    pub(crate) fn set_last_was_text(&self, text: bool) {
        self.last_was_text.store(text, Ordering::Relaxed);
    }

    /// Round-trip time measured by the last answered heartbeat ping.
    pub fn rtt(&self) -> Option<Duration> {
        match self.rtt_us.load(Ordering::Acquire) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    pub(crate) fn micros(&self) -> u64 {
        (self.created.elapsed().as_micros() as u64).max(1)
    }

    /// The `outbound_buffer_size` this connection was made with: the most bytes it queues.
    pub fn outbound_limit(&self) -> usize {
        self.out_limit
    }

    /// Whether a packet of `len` bytes fits the outbound limits now.
    pub fn has_room(&self, len: usize) -> bool {
        self.out_count.load(Ordering::Acquire) < self.max_queued
            && self.out_bytes.load(Ordering::Acquire) + len <= self.out_limit
    }

    /// Queues a message. `Ok` means it will be written in order, or the connection closes and
    /// is reported. A packet for a connection already closing is accepted and dropped: its
    /// `Disconnected` event is on the way.
    pub fn send(&self, data: Bytes, text: bool) -> Result<(), SendError> {
        if !self.has_room(data.len()) {
            return Err(SendError::Full);
        }
        if self.enqueue(data, text, Route::Single) {
            self.wake_writer();
        }
        Ok(())
    }

    /// A broadcast's copy for this peer. A full queue does not refuse it, so one slow peer
    /// cannot stop every broadcast: the queue may grow to `BROADCAST_OVERCOMMIT` times its
    /// limits while the peer catches up. A peer that would go past that, or that has been
    /// over its limits for longer than `patience`, is closed with [`SLOW_PEER_CODE`] (and
    /// reported) instead of getting this message: nothing accepted is lost silently.
    ///
    /// The task's wake waits in `held` until the broadcast has queued every copy.
    pub fn send_broadcast(
        self: &Arc<Self>,
        data: Bytes,
        text: bool,
        patience: Duration,
        held: &mut HeldWakes,
    ) -> Result<(), SendError> {
        let room = self.has_room(data.len());
        if room || self.ready_state() != ReadyState::Open {
            if room && self.enqueue(data, text, Route::Broadcast) {
                held.hold(self);
            }
            return Ok(());
        }
        let now = self.micros();
        let since = self.over_since_us.load(Ordering::Acquire);
        let fits = self.out_count.load(Ordering::Acquire) < self.max_queued * BROADCAST_OVERCOMMIT
            && self.out_bytes.load(Ordering::Acquire) + data.len()
                <= self.out_limit * BROADCAST_OVERCOMMIT;
        let waited = since != 0 && now.saturating_sub(since) > patience.as_micros() as u64;
        if !fits || waited {
            self.too_slow.store(true, Ordering::Release);
            self.close(SLOW_PEER_CODE, "too slow: outbound queue full");
            return Err(SendError::TooSlow);
        }
        if since == 0 {
            self.over_since_us.store(now, Ordering::Release);
        }
        if self.enqueue(data, text, Route::Broadcast) {
            held.hold(self);
        }
        Ok(())
    }

    /// Counts the message against the limits and sends it directly or queues it. `true`: it
    /// is queued and the task must be woken.
    fn enqueue(&self, data: Bytes, text: bool, route: Route) -> bool {
        if self.ready_state() != ReadyState::Open {
            return false;
        }
        self.out_bytes.fetch_add(data.len(), Ordering::AcqRel);
        self.out_count.fetch_add(1, Ordering::AcqRel);
        // A text frame must hold UTF-8; other bytes go out as binary.
        let text = text && std::str::from_utf8(&data).is_ok();
        if self.direct.send(self, &data, text, route == Route::Single) {
            return false;
        }
        // The receiver lives as long as the task; if it is gone the connection is over.
        let _ = self.outbound.send(Outgoing::Data(data, text));
        true
    }

    /// Wakes the writer once until it has run.
    fn wake_writer(&self) {
        if self.wants_wake() {
            self.out_wake.notify_one();
        }
    }

    /// Whether the writer needs a wake: not once more until it has run.
    fn wants_wake(&self) -> bool {
        !self.wake_pending.swap(true, Ordering::AcqRel)
    }

    /// `count` messages of `bytes` payload bytes (`wire` once compressed) have left for the
    /// socket: they no longer count against the limits, and a peer back within them is no
    /// longer over (`send_broadcast`).
    pub(crate) fn written(&self, bytes: usize, wire: usize, count: usize) {
        self.out_bytes.fetch_sub(bytes, Ordering::AcqRel);
        self.out_count.fetch_sub(count, Ordering::AcqRel);
        if self.has_room(0) {
            self.over_since_us.store(0, Ordering::Release);
        }
        let traffic = &self.traffic;
        traffic.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
        traffic.wire_out.fetch_add(wire as u64, Ordering::Relaxed);
        traffic
            .packets_out
            .fetch_add(count as u64, Ordering::Relaxed);
    }

    /// Starts the closing handshake after everything already queued has been sent.
    pub fn close(&self, code: u16, reason: &str) {
        if self.ready_state() != ReadyState::Open {
            return;
        }
        self.set_state(ReadyState::Closing);
        self.close_queued.store(true, Ordering::Release);
        let _ = self.outbound.send(Outgoing::Close(code, reason.to_owned()));
        self.out_wake.notify_one();
        self.close_wake.notify_one();
    }

    /// Drops the connection at once, without a close frame and without reporting it.
    pub fn abort_unreported(&self) {
        self.silenced.store(true, Ordering::Release);
        self.cancel.cancel();
        self.set_state(ReadyState::Closed);
    }

    /// Drops the connection at once without a close frame; its end is still reported.
    pub fn abort(&self) {
        self.cancel.cancel();
    }

    /// A message of `len` bytes arrived for the game, `wire` bytes on the wire.
    pub(crate) fn received(&self, len: usize, wire: u64) {
        let traffic = &self.traffic;
        traffic.packets_in.fetch_add(1, Ordering::Relaxed);
        traffic.bytes_in.fetch_add(len as u64, Ordering::Relaxed);
        traffic.wire_in.fetch_add(wire, Ordering::Relaxed);
    }

    pub(crate) fn inbound_acquire(&self, len: usize) {
        self.inbound.bytes.fetch_add(len, Ordering::AcqRel);
        self.inbound.count.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn inbound_release(&self, len: usize) {
        self.inbound.bytes.fetch_sub(len, Ordering::AcqRel);
        self.inbound.count.fetch_sub(1, Ordering::AcqRel);
        if self.inbound.paused.load(Ordering::SeqCst) {
            self.inbound.wake.notify_one();
        }
    }

    pub(crate) fn inbound_full(&self) -> bool {
        self.inbound.count.load(Ordering::SeqCst) >= self.max_queued
            || self.inbound.bytes.load(Ordering::SeqCst) >= self.in_limit
    }

    pub(crate) fn record_close(&self, code: i32, reason: String) {
        let mut status = self.close_status_locked();
        if status.is_none() {
            *status = Some((code, reason));
        }
    }
}
