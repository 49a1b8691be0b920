//! One WebSocket connection: a thread-safe handle ([`Connection`]) for the main thread and
//! the task that moves its frames ([`run`]).
//!
//! Outbound, the main thread pushes packets on a crossbeam queue and wakes the task; the task
//! feeds everything queued into the socket and flushes once, so a burst costs few syscalls.
//! Inbound, the task forwards each message as an [`Event::Packet`] and stops reading the
//! socket while the game holds too many of this peer's packets (backpressure, not loss).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::PeerConfig;
use crate::events::{Event, InboundPacket};
use crate::fence::HeadFence;
use crate::frame::{self, FrameError, FrameReader, Incoming};
use crate::heartbeat::{Heartbeat, Tick};
use crate::shared_tcp::SharedTcp;
use crate::tls::MaybeTls;
use crate::Bytes;

/// Who may write to the socket now: nobody (the next writer takes it), the main thread (a
/// direct send in progress), or the task (it has queued frames or a partial write to finish).
const OWNER_IDLE: u8 = 0;
const OWNER_MAIN: u8 = 1;
const OWNER_TASK: u8 = 2;
/// A send this soon after the last direct write is queued instead: a burst then goes out in
/// the task's batched writes (one system call for many frames), not one write per packet.
const DIRECT_SPACING_US: u64 = 10;
/// A direct send's frame buffer larger than this is given back after use.
const DIRECT_SCRATCH_KEEP: usize = 16 * 1024;
/// Direct writes allowed between two `poll()`s of any peer object in the process: a
/// broadcast to hundreds of peers sends a few at once and hands the rest to the tasks, so the
/// game's main thread does not pay a system call per peer, while a game that answers in the
/// frame a packet arrives always sends directly.
const DIRECT_PER_POLL: u32 = 4;

static DIRECT_LEFT: AtomicU32 = AtomicU32::new(DIRECT_PER_POLL);

/// Refills the direct-write budget; the Godot layer calls it from `poll()`.
pub fn refill_direct_budget() {
    DIRECT_LEFT.store(DIRECT_PER_POLL, Ordering::Relaxed);
}

fn direct_budget_allows() -> bool {
    DIRECT_LEFT
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

/// The main thread's way to the socket of a plain `ws://` connection.
struct Direct {
    tcp: Arc<tokio::net::TcpStream>,
    /// A client masks its frames with keys of its own (the task has its own masker).
    masker: Option<frame::Masker>,
    /// The frame being written, kept between sends so a direct send allocates nothing.
    scratch: Vec<u8>,
}

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

/// How long to wait for the other side's close frame after we sent ours.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// How long our queued close may wait behind data the peer does not read before the
/// connection is dropped anyway.
const CLOSE_FLUSH_LIMIT: Duration = Duration::from_secs(10);
/// With the `fault-injection` feature (tests only), a text message with exactly this content
/// makes its connection task panic, to prove a panic closes only that connection.
#[cfg(feature = "fault-injection")]
pub const PANIC_TRIGGER: &str = "rwsmp-fault-injection: panic";

/// How long to wait for the TCP close after answering the other side's close frame.
const PEER_CLOSE_GRACE: Duration = Duration::from_millis(100);

pub(crate) enum Outgoing {
    /// A message; `true` for a text frame.
    Data(Bytes, bool),
    /// A heartbeat ping; its payload (the token's 8 bytes) must come back in the pong.
    Ping(u64),
    /// Answer a ping with this payload.
    Pong(Bytes),
    /// Answer the latest ping of a flood (its payload waits in `Connection::pong`).
    PongLatest,
    Close(u16, String),
}

/// Pongs queued per connection before further pings are answered by one pong for the latest.
const MAX_QUEUED_PONGS: usize = 64;

/// Frames are encoded into one buffer up to about this size before a socket write.
const WRITE_BATCH: usize = 64 * 1024;

/// Traffic counters of one connection (payload bytes, not counting WebSocket framing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub packets_out: u64,
    pub opened_unix_ms: u64,
}

impl ConnectionStats {
    /// Adds `other`'s traffic (for totals over several connections).
    pub fn add(&mut self, other: &ConnectionStats) {
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
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
}

/// The main thread's handle on one connection. Cheap to share; every method is non-blocking.
pub struct Connection {
    id: i32,
    info: ConnectionInfo,
    state: AtomicU8,
    /// (code, reason) of the close, once known. Code -1 when it was not a clean close.
    close_status: Mutex<Option<(i32, String)>>,
    outbound: Sender<Outgoing>,
    out_bytes: AtomicUsize,
    out_count: AtomicUsize,
    out_wake: Notify,
    in_bytes: AtomicUsize,
    in_count: AtomicUsize,
    in_paused: AtomicBool,
    /// The reader paused for backpressure since the last heartbeat tick: a pong may be
    /// waiting unread in our own socket, so a missing one proves nothing about the peer.
    paused_since_tick: AtomicBool,
    /// Our close frame is queued for the writer (as opposed to a close the other side began).
    close_queued: AtomicBool,
    heartbeat: Option<Duration>,
    /// The heartbeat's state (see `heartbeat`): the outstanding ping, whose payload a pong
    /// must carry to answer it, so unsolicited pongs cannot keep a silent peer alive.
    beat: Mutex<Heartbeat>,
    /// Since when (µs since `created`) a broadcast has had this peer over its limits; 0 while
    /// within them. The writer clears it once the queue is back within the limits.
    over_since_us: AtomicU64,
    /// Wakes the task when our close is queued, so it ends within `CLOSE_LINGER` even if the
    /// writer is stuck on a peer that reads nothing.
    close_wake: Notify,
    /// Set by the task for plain TCP: sends go to the socket from the caller's thread when
    /// nothing is queued.
    /// Taken away when the task ends, so the socket closes with it.
    direct: Mutex<Option<Direct>>,
    /// `OWNER_*`: who may write to the socket now.
    write_owner: AtomicU8,
    /// The rest of a frame the main thread could not write at once, with the payload size it
    /// still counts in `out_bytes`: the task writes it before anything else.
    carry: Mutex<Option<(Vec<u8>, usize)>>,
    /// When the last direct write happened (µs since `created`).
    last_direct_us: AtomicU64,
    /// The main thread has woken the writer and it has not run since: no further wake.
    wake_pending: AtomicBool,
    /// Closed by a broadcast as too slow, or for a protocol error or limit: no long wait for
    /// the close to get through (`CLOSE_LINGER` rather than `CLOSE_FLUSH_LIMIT`).
    too_slow: AtomicBool,
    /// The reader failed (protocol error, limit): after our close frame the writer shuts the
    /// write side down while the reader discards input, so the peer reads the close frame
    /// instead of a reset (RFC 6455 §7.1.1). Holds the reason for the report.
    failure: Mutex<Option<String>>,
    /// Round-trip time of the last answered ping, in µs (0 = not measured yet).
    rtt_us: AtomicU64,
    created: std::time::Instant,
    /// When the connection opened, for stats (milliseconds since the Unix epoch).
    opened_unix_ms: u64,
    /// Pongs queued and not written yet. Every ping gets its own pong up to
    /// `MAX_QUEUED_PONGS`; beyond that (a peer flooding pings and not reading) only the latest
    /// ping is answered (RFC 6455 5.5.3), its payload waiting in `pong`, so the queue stays
    /// bounded.
    pongs_queued: AtomicUsize,
    pong: Mutex<Option<Bytes>>,
    /// The other side's close frame arrived (a clean close, whoever started it).
    close_received: AtomicBool,
    /// The last packet the game took from this peer was a text frame.
    last_was_text: AtomicBool,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    packets_in: AtomicU64,
    packets_out: AtomicU64,
    in_wake: Notify,
    /// Set when the main thread has let go of this peer (forced disconnect, `close()`):
    /// no further events are reported.
    silenced: AtomicBool,
    cancel: CancellationToken,
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
            in_bytes: AtomicUsize::new(0),
            in_count: AtomicUsize::new(0),
            in_paused: AtomicBool::new(false),
            paused_since_tick: AtomicBool::new(false),
            in_wake: Notify::new(),
            silenced: AtomicBool::new(false),
            close_queued: AtomicBool::new(false),
            heartbeat: config.heartbeat_interval,
            beat: Mutex::new(Heartbeat::default()),
            over_since_us: AtomicU64::new(0),
            close_wake: Notify::new(),
            too_slow: AtomicBool::new(false),
            failure: Mutex::new(None),
            direct: Mutex::new(None),
            write_owner: AtomicU8::new(OWNER_IDLE),
            carry: Mutex::new(None),
            wake_pending: AtomicBool::new(false),
            last_direct_us: AtomicU64::new(0),
            rtt_us: AtomicU64::new(0),
            created: std::time::Instant::now(),
            opened_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            pongs_queued: AtomicUsize::new(0),
            pong: Mutex::new(None),
            close_received: AtomicBool::new(false),
            last_was_text: AtomicBool::new(false),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            packets_in: AtomicU64::new(0),
            packets_out: AtomicU64::new(0),
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

    fn set_state(&self, state: ReadyState) {
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
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            packets_in: self.packets_in.load(Ordering::Relaxed),
            packets_out: self.packets_out.load(Ordering::Relaxed),
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

    fn beat_state(&self) -> std::sync::MutexGuard<'_, Heartbeat> {
        self.beat.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn micros(&self) -> u64 {
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
        self.enqueue(data, text);
        Ok(())
    }

    /// A broadcast's copy for this peer. A full queue does not refuse it, so one slow peer
    /// cannot stop every broadcast: the queue may grow to `BROADCAST_OVERCOMMIT` times its
    /// limits while the peer catches up. A peer that would go past that, or that has been
    /// over its limits for longer than `patience`, is closed with [`SLOW_PEER_CODE`] (and
    /// reported) instead of getting this message: nothing accepted is lost silently.
    pub fn send_broadcast(
        &self,
        data: Bytes,
        text: bool,
        patience: Duration,
    ) -> Result<(), SendError> {
        if self.has_room(data.len()) || self.ready_state() != ReadyState::Open {
            return self.send(data, text).or(Ok(()));
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
        self.enqueue(data, text);
        Ok(())
    }

    fn enqueue(&self, data: Bytes, text: bool) {
        if self.ready_state() != ReadyState::Open {
            return;
        }
        self.out_bytes.fetch_add(data.len(), Ordering::AcqRel);
        self.out_count.fetch_add(1, Ordering::AcqRel);
        // A text frame must hold UTF-8; other bytes go out as binary.
        let text = text && std::str::from_utf8(&data).is_ok();
        if self.send_direct(&data, text) {
            return;
        }
        // The receiver lives as long as the task; if it is gone the connection is over.
        let _ = self.outbound.send(Outgoing::Data(data, text));
        self.wake_writer();
    }

    /// Wakes the writer once until it has run.
    fn wake_writer(&self) {
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            self.out_wake.notify_one();
        }
    }

    /// Writes one data frame to the socket from this thread, if it is plain TCP, nothing else
    /// of ours is queued and nobody is writing. What the kernel does not take at once is
    /// handed to the task, which writes it before anything else. `false`: queue it instead.
    fn send_direct(&self, data: &[u8], text: bool) -> bool {
        let mut direct = self.direct.lock().unwrap_or_else(|e| e.into_inner());
        let Some(direct) = direct.as_mut() else {
            return false;
        };
        // Only this message counted: nothing queued ahead of it; and not in a burst.
        let now = self.micros();
        if self.out_count.load(Ordering::Acquire) != 1
            || now.saturating_sub(self.last_direct_us.load(Ordering::Relaxed)) < DIRECT_SPACING_US
            || !direct_budget_allows()
            || self
                .write_owner
                .compare_exchange(OWNER_IDLE, OWNER_MAIN, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return false;
        }
        let op = if text {
            frame::OP_TEXT
        } else {
            frame::OP_BINARY
        };
        let buf = &mut direct.scratch;
        buf.clear();
        frame::encode(buf, op, data, direct.masker.as_mut());
        self.last_direct_us.store(now, Ordering::Relaxed);
        let written = match direct.tcp.try_write(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            // A broken socket: the task finds the error on its own write or read.
            Err(_) => 0,
        };
        if written == buf.len() {
            // A large frame's buffer is not kept for every later small one.
            if buf.capacity() > DIRECT_SCRATCH_KEEP {
                *buf = Vec::new();
            }
            self.written(data.len(), 1);
            self.write_owner.store(OWNER_IDLE, Ordering::Release);
            // A pong or ping queued by the task while we wrote: let it go now.
            if !self.outbound.is_empty() {
                self.out_wake.notify_one();
            }
            return true;
        }
        // The task owns the socket until the rest is written; the buffer goes with it.
        let mut rest = std::mem::take(buf);
        rest.drain(..written);
        *self.carry.lock().unwrap_or_else(|e| e.into_inner()) = Some((rest, data.len()));
        self.write_owner.store(OWNER_TASK, Ordering::Release);
        self.out_wake.notify_one();
        true
    }

    /// `count` messages of `bytes` payload bytes have left for the socket: they no longer count
    /// against the limits, and a peer back within them is no longer over (`send_broadcast`).
    fn written(&self, bytes: usize, count: usize) {
        self.out_bytes.fetch_sub(bytes, Ordering::AcqRel);
        self.out_count.fetch_sub(count, Ordering::AcqRel);
        if self.has_room(0) {
            self.over_since_us.store(0, Ordering::Release);
        }
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
        self.packets_out.fetch_add(count as u64, Ordering::Relaxed);
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

    pub(crate) fn inbound_acquire(&self, len: usize) {
        self.in_bytes.fetch_add(len, Ordering::AcqRel);
        self.in_count.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn inbound_release(&self, len: usize) {
        self.in_bytes.fetch_sub(len, Ordering::AcqRel);
        self.in_count.fetch_sub(1, Ordering::AcqRel);
        if self.in_paused.load(Ordering::SeqCst) {
            self.in_wake.notify_one();
        }
    }

    fn inbound_full(&self) -> bool {
        self.in_count.load(Ordering::SeqCst) >= self.max_queued
            || self.in_bytes.load(Ordering::SeqCst) >= self.in_limit
    }

    /// Waits while the game holds too much of this peer's input.
    async fn inbound_room(&self) {
        while self.inbound_full() {
            self.in_paused.store(true, Ordering::SeqCst);
            self.paused_since_tick.store(true, Ordering::Release);
            if self.inbound_full() {
                self.in_wake.notified().await;
            }
            self.in_paused.store(false, Ordering::SeqCst);
        }
    }

    fn record_close(&self, code: i32, reason: String) {
        let mut status = self.close_status_locked();
        if status.is_none() {
            *status = Some((code, reason));
        }
    }
}

/// How a connection ended.
enum End {
    /// Close handshake done, or the stream ended (possibly without a close frame).
    Closed,
    /// The task was cancelled by the main thread, or nobody listens any more.
    Cancelled,
    /// The other side broke the protocol or a limit; reported as a Godot error.
    Failed(String),
}

/// Drives one open connection until it closes, then reports [`Event::Disconnected`].
/// `reader` may hold bytes already read (the client reads its id with it).
pub(crate) async fn run(
    conn: Arc<Connection>,
    stream: HeadFence<MaybeTls>,
    mut reader: FrameReader,
    outbound: Receiver<Outgoing>,
    events: Sender<Event>,
) {
    // The fence has done its work: what it still holds goes to the frame reader.
    let Some((stream, rest)) = stream.into_parts() else {
        return;
    };
    reader.prime(&rest);
    match stream {
        MaybeTls::Plain(tcp) => {
            let tcp = Arc::new(tcp);
            let masker = (!reader.is_server()).then(frame::Masker::new);
            *conn.direct.lock().unwrap_or_else(|e| e.into_inner()) = Some(Direct {
                tcp: tcp.clone(),
                masker,
                scratch: Vec::new(),
            });
            let (rd, wr) = (SharedTcp(tcp.clone()), SharedTcp(tcp));
            drive(conn, rd, wr, reader, outbound, events).await;
        }
        tls => {
            let (rd, wr) = tokio::io::split(tls);
            drive(conn, rd, wr, reader, outbound, events).await;
        }
    }
}

async fn drive<R, W>(
    conn: Arc<Connection>,
    mut rd: R,
    mut wr: W,
    mut reader: FrameReader,
    outbound: Receiver<Outgoing>,
    events: Sender<Event>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut report = EndReport {
        conn: &conn,
        events: &events,
        failure: None,
    };
    // A client masks what it sends; a server does not.
    let mask = !reader.is_server();
    let cancel = conn.cancel.clone();
    let end = {
        let writer = write_loop(&conn, &mut wr, &outbound, mask);
        let reader = read_loop(&conn, &mut reader, &mut rd, &events);
        tokio::pin!(writer, reader);
        // Set once our close frame is queued or sent: from then on the connection ends at
        // the latest when this deadline passes.
        let mut linger: Option<tokio::time::Instant> = None;
        let mut writer_done = false;
        let mut reader_end: Option<End> = None;
        let mut heartbeat = conn.heartbeat.map(|every| {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks
        });
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break End::Cancelled,
                _ = tick(&mut heartbeat), if linger.is_none() => {
                    // Not reading (the game holds too many of this peer's packets), or not
                    // for part of the last interval: the pong may be unread in our socket.
                    // No verdict until the reader has run for a whole interval.
                    let blind = conn.in_paused.load(Ordering::SeqCst)
                        || conn.paused_since_tick.swap(false, Ordering::AcqRel);
                    // Outstanding from now, even if a full socket delays writing it.
                    let verdict = conn.beat_state().tick(conn.micros(), blind);
                    match verdict {
                        Tick::Ping(token) => {
                            let _ = conn.outbound.send(Outgoing::Ping(token));
                            conn.out_wake.notify_one();
                        }
                        Tick::Dead => break End::Closed,
                        Tick::Wait => {}
                    }
                }
                end = &mut reader, if reader_end.is_none() => {
                    // A close frame is queued (ours, an answer to the other side's, or one
                    // for a protocol error): let the writer deliver it before dropping the
                    // socket.
                    if writer_done || !conn.close_queued.load(Ordering::Acquire) {
                        break end;
                    }
                    reader_end = Some(end);
                    linger.get_or_insert_with(|| tokio::time::Instant::now() + CLOSE_LINGER);
                }
                res = &mut writer, if !writer_done => match res {
                    Ok(()) => {
                        writer_done = true;
                        if let Some(end) = reader_end.take() {
                            break end;
                        }
                        linger = Some(tokio::time::Instant::now() + CLOSE_LINGER);
                    }
                    // The socket is gone; the reader's cause, if any, is the one to report.
                    Err(_) => break reader_end.take().unwrap_or(End::Closed),
                },
                // Our close is queued: the connection ends within a bound even if the peer
                // reads nothing and the close frame never gets written.
                _ = conn.close_wake.notified(), if linger.is_none() => {
                    let bound = if conn.too_slow.load(Ordering::Acquire) {
                        CLOSE_LINGER
                    } else {
                        CLOSE_FLUSH_LIMIT
                    };
                    linger = Some(tokio::time::Instant::now() + bound);
                }
                _ = sleep_until_opt(linger), if linger.is_some() => {
                    break reader_end.take().unwrap_or(End::Closed);
                }
            }
        }
    };
    // Drop the socket before reporting, so the other side sees the close first.
    conn.direct.lock().unwrap_or_else(|e| e.into_inner()).take();
    drop(rd);
    drop(wr);
    report.failure = match end {
        End::Failed(reason) => Some(reason),
        // The linger may end the task while the reader still discards input.
        _ => conn
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(),
    };
}

/// Reports the end of a connection when dropped: on a normal end, and also when the task
/// unwinds from a panic, so the main thread never keeps a dead peer.
struct EndReport<'a> {
    conn: &'a Connection,
    events: &'a Sender<Event>,
    failure: Option<String>,
}

impl Drop for EndReport<'_> {
    fn drop(&mut self) {
        let conn = self.conn;
        conn.set_state(ReadyState::Closed);
        conn.record_close(-1, String::new());
        if conn.silenced.load(Ordering::Acquire) {
            return;
        }
        if let Some(reason) = self.failure.take() {
            let _ = self.events.send(Event::Error {
                message: format!("peer {}: {reason}; connection closed", conn.id),
            });
        }
        let _ = self.events.send(Event::Disconnected { id: conn.id });
    }
}

async fn tick(ticks: &mut Option<tokio::time::Interval>) {
    match ticks {
        Some(ticks) => {
            ticks.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Writes queued packets (many per write) until a close frame has been sent.
async fn write_loop<W>(
    conn: &Connection,
    sink: &mut W,
    outbound: &Receiver<Outgoing>,
    mask: bool,
) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let mut batch = Vec::new();
    let mut masker = mask.then(frame::Masker::new);
    loop {
        // Take the socket (or keep it, handed over by a partial direct send). While the main
        // thread writes, wait: it wakes us when it is done and something is queued.
        if conn
            .write_owner
            .compare_exchange(OWNER_IDLE, OWNER_TASK, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
            && conn.write_owner.load(Ordering::Acquire) != OWNER_TASK
        {
            // Asleep: the next queued send must wake us again.
            conn.wake_pending.store(false, Ordering::Release);
            conn.out_wake.notified().await;
            continue;
        }
        conn.wake_pending.store(false, Ordering::Release);
        let carried = conn.carry.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((rest, payload)) = carried {
            sink.write_all(&rest).await?;
            conn.written(payload, 1);
        }
        let mut bytes = 0usize;
        let mut count = 0usize;
        let mut close = None;
        while let Ok(item) = outbound.try_recv() {
            match item {
                Outgoing::Data(data, text) => {
                    let op = if text {
                        frame::OP_TEXT
                    } else {
                        frame::OP_BINARY
                    };
                    frame::encode(&mut batch, op, &data, masker.as_mut());
                    bytes += data.len();
                    count += 1;
                    // Bound a batch so the counters (and the sender's limits) move along.
                    if batch.len() >= WRITE_BATCH {
                        break;
                    }
                }
                Outgoing::Ping(token) => frame::encode(
                    &mut batch,
                    frame::OP_PING,
                    &token.to_le_bytes(),
                    masker.as_mut(),
                ),
                Outgoing::Pong(payload) => {
                    conn.pongs_queued.fetch_sub(1, Ordering::AcqRel);
                    frame::encode(&mut batch, frame::OP_PONG, &payload, masker.as_mut());
                }
                Outgoing::PongLatest => {
                    let payload = conn.pong.lock().unwrap_or_else(|e| e.into_inner()).take();
                    if let Some(payload) = payload {
                        frame::encode(&mut batch, frame::OP_PONG, &payload, masker.as_mut());
                    }
                }
                Outgoing::Close(code, reason) => {
                    let payload = frame::close_payload(code, &reason);
                    frame::encode(&mut batch, frame::OP_CLOSE, &payload, masker.as_mut());
                    close = Some((code, reason));
                    break;
                }
            }
        }
        if !batch.is_empty() {
            sink.write_all(&batch).await?;
            sink.flush().await?;
            batch.clear();
            conn.written(bytes, count);
        }
        if let Some((code, reason)) = close {
            conn.record_close(code as i32, reason);
            if conn.failure.lock().map(|f| f.is_some()).unwrap_or(false) {
                // Nothing follows our close frame: the peer reads it, then our FIN.
                let _ = sink.shutdown().await;
            }
            return Ok(());
        }
        if outbound.is_empty() {
            // Idle: the socket is free for direct sends again, and the next queued send
            // must wake us.
            conn.write_owner.store(OWNER_IDLE, Ordering::Release);
            conn.wake_pending.store(false, Ordering::Release);
            if !outbound.is_empty() {
                continue;
            }
            // Hold no write buffer while waiting.
            batch = Vec::new();
            conn.out_wake.notified().await;
        }
    }
}

/// Reads and drops everything until the stream ends or fails.
async fn discard_until_eof<R: AsyncRead + Unpin>(stream: &mut R) {
    use tokio::io::AsyncReadExt;
    let mut scratch = [0u8; 4096];
    while let Ok(n) = stream.read(&mut scratch).await {
        if n == 0 {
            break;
        }
    }
}

/// Forwards received messages until the stream ends; answers protocol errors with a close.
async fn read_loop<R>(
    conn: &Arc<Connection>,
    reader: &mut FrameReader,
    stream: &mut R,
    events: &Sender<Event>,
) -> End
where
    R: AsyncRead + Unpin,
{
    // Set on a client once the server sent its close frame: our answer goes out, then we stop
    // waiting for its TCP close after a grace period (RFC 6455 7.1.1 lets a client close
    // first; the built-in peer does it at once).
    let mut closed_by_peer = false;
    loop {
        conn.inbound_room().await;
        let next = if closed_by_peer {
            match tokio::time::timeout(PEER_CLOSE_GRACE, reader.next(stream)).await {
                Ok(next) => next,
                Err(_) => return End::Closed,
            }
        } else {
            reader.next(stream).await
        };
        let (data, text) = match next {
            Ok(None) => return End::Closed,
            Ok(Some(Incoming::Data { data, text })) => {
                #[cfg(feature = "fault-injection")]
                if text && &data[..] == PANIC_TRIGGER.as_bytes() {
                    panic!("fault injection: the peer asked this connection task to panic");
                }
                // Nothing may follow a close frame (RFC 6455 5.5.1); drop what does.
                if closed_by_peer {
                    continue;
                }
                (data, text)
            }
            Ok(Some(Incoming::Close(frame))) => {
                conn.set_state(ReadyState::Closing);
                conn.close_received.store(true, Ordering::Release);
                let (code, reason) = match frame {
                    Some((code, reason)) => (code as i32, reason),
                    None => (1005, String::new()),
                };
                conn.record_close(code, reason.clone());
                // The other side started the closing handshake (not an answer to ours):
                // tell the game, and answer with the same code and reason.
                if !conn.close_queued.swap(true, Ordering::AcqRel) {
                    let _ = conn
                        .outbound
                        .send(Outgoing::Close(code as u16, reason.clone()));
                    conn.out_wake.notify_one();
                    if !conn.silenced.load(Ordering::Acquire) {
                        let id = conn.id;
                        let _ = events.send(Event::CloseRequest { id, code, reason });
                    }
                }
                // A server closes the TCP connection first (RFC 6455 7.1.1): as soon as the
                // answer is written. A client gives the server a moment to do so.
                if reader.is_server() {
                    return End::Closed;
                }
                closed_by_peer = true;
                continue;
            }
            Ok(Some(Incoming::Ping(payload))) => {
                if conn.pongs_queued.fetch_add(1, Ordering::AcqRel) < MAX_QUEUED_PONGS {
                    let _ = conn.outbound.send(Outgoing::Pong(payload));
                    conn.out_wake.notify_one();
                    continue;
                }
                conn.pongs_queued.fetch_sub(1, Ordering::AcqRel);
                let pending = conn
                    .pong
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .replace(payload)
                    .is_some();
                if !pending {
                    let _ = conn.outbound.send(Outgoing::PongLatest);
                    conn.out_wake.notify_one();
                }
                continue;
            }
            Ok(Some(Incoming::Pong(payload))) => {
                // Only the answer to our outstanding ping counts; other pongs are ignored.
                let rtt = conn.beat_state().pong(&payload, conn.micros());
                if let Some(rtt) = rtt {
                    conn.rtt_us.store(rtt, Ordering::Release);
                }
                continue;
            }
            Err(FrameError::Io(_)) => return End::Closed,
            Err(e) => {
                *conn.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
                conn.too_slow.store(true, Ordering::Release);
                match e {
                    FrameError::TooBig { .. } => conn.close(1009, "Message too big"),
                    FrameError::Utf8 => conn.close(1007, "Invalid UTF-8"),
                    _ => conn.close(1002, "Protocol error"),
                }
                // Dropping the socket now, with the peer's data unread in it, would make the
                // kernel send a reset that can destroy our close frame before the peer reads
                // it. Discard input until the peer closes (or the linger ends the task).
                discard_until_eof(stream).await;
                return End::Failed(e.to_string());
            }
        };
        if conn.silenced.load(Ordering::Acquire) {
            continue;
        }
        conn.packets_in.fetch_add(1, Ordering::Relaxed);
        conn.bytes_in
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        let packet = InboundPacket::new(conn.clone(), data, text);
        if events.send(Event::Packet(packet)).is_err() {
            return End::Cancelled; // Nobody listens any more.
        }
    }
}
