//! The connection task: drives one connection's [`Protocol`] with its socket, the game's
//! queue and a timer until the connection ends, then reports the end. The rules are all in
//! the protocol; this file moves bytes, wakes and counters.
//!
//! One loop, one `select!`: reading, writing and the timer run concurrently, so a peer that
//! reads nothing cannot stop us from reading its pings and close, and a game that reads
//! nothing (backpressure) cannot stop our writes.

use std::future::poll_fn;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::{BufMut, BytesMut};
use crossbeam_channel::{Receiver, Sender};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::connection::{Connection, Outgoing, ReadyState};
use crate::events::{Event, InboundPacket};
use crate::fence::HeadFence;
use crate::protocol::decode::{Decoder, Incoming, ReadPlan, IDLE_READ};
use crate::protocol::deflate;
use crate::protocol::{Output, Protocol, TIMEOUTS};
use crate::shared_tcp::SharedTcp;
use crate::shared_tls::{self, SharedTls, TlsSession};
use crate::tls::MaybeTls;

/// Frames are gathered into one buffer up to about this size before a socket write.
const WRITE_BATCH: usize = 64 * 1024;
/// Socket reads one `poll()` makes for one connection at most (see [`read_on_main_thread`]).
const MAIN_READS_PER_CONN: usize = 4;

/// A connection's protocol, shared by its task and the game's main thread, which reads
/// sockets known to have input in `poll()` ([`crate::ready`]). The task
/// locks it for each step and never across an `await`; the main thread only `try_lock`s it.
pub(crate) struct Shared {
    live: Mutex<Live>,
    /// The main thread changed something the task must act on (a frame to send, a close,
    /// the end of input).
    wake: Notify,
    conn: Arc<Connection>,
    events: Sender<Event>,
}

struct Live {
    proto: Protocol,
    /// The socket, for the main thread's reads (`None` once the task ends: it closes the
    /// socket before it reports the end).
    tcp: Option<Arc<TcpStream>>,
    /// `wss://`: the TLS session the socket's bytes go through.
    tls: Option<Arc<TlsSession>>,
    /// The task has finished: nothing more may be delivered (its end is reported next).
    done: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Live> {
        // A poisoned lock means a panic in the task, which ends it: the state is not used on.
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Drives one open connection until it closes, then reports [`Event::Disconnected`].
/// `decoder` may hold bytes already read (the client reads its id with it).
pub(crate) async fn run(
    conn: Arc<Connection>,
    stream: HeadFence<MaybeTls>,
    mut decoder: Decoder,
    outbound: Receiver<Outgoing>,
    events: Sender<Event>,
) {
    // The fence has done its work: what it still holds goes to the decoder.
    let Some((stream, rest)) = stream.into_parts() else {
        return;
    };
    decoder.receive(&rest);
    let client = !decoder.is_server();
    let mut proto = Protocol::new(decoder, conn.heartbeat, TIMEOUTS, Instant::now());
    // With compression agreed, messages from the threshold up are compressed here, on the
    // runtime's thread: only shorter ones (sent as they are) may take the direct path.
    let mut direct_below = usize::MAX;
    if let Some((agreed, ours)) = &conn.info().deflate {
        proto.deflate_with(deflate::for_connection(agreed, ours, !client).0);
        direct_below = ours.threshold;
    }
    let (tcp, tls) = match stream {
        MaybeTls::Plain(tcp) => (Arc::new(tcp), None),
        MaybeTls::Tls(stream) => {
            let tls = TlsSession::new(*stream);
            (tls.tcp.clone(), Some(tls))
        }
    };
    conn.direct
        .open(tcp.clone(), tls.clone(), client, direct_below);
    let shared = Arc::new(Shared {
        live: Mutex::new(Live {
            proto,
            tcp: Some(tcp.clone()),
            tls: tls.clone(),
            done: false,
        }),
        wake: Notify::new(),
        conn: conn.clone(),
        events: events.clone(),
    });
    // Not with compression: inflating stays on the runtime's threads.
    let key = conn
        .ready
        .as_ref()
        .filter(|_| conn.info().deflate.is_none())
        .and_then(|ready| ready.add(&tcp, &shared));
    match tls {
        None => drive(&shared, SharedTcp(tcp.clone()), SharedTcp(tcp), &outbound).await,
        Some(tls) => drive(&shared, SharedTls(tls.clone()), SharedTls(tls), &outbound).await,
    }
    if let (Some(ready), Some(key)) = (&conn.ready, key) {
        ready.forget(key);
    }
}

/// The batch being written.
#[derive(Default)]
struct Batch {
    buf: Vec<u8>,
    sent: usize,
    /// All written; the flush is left (TLS records buffered in the session).
    flushing: bool,
    /// The game's messages in `buf`: payload bytes, the same once compressed, and count, for
    /// its limits and stats.
    bytes: usize,
    wire: usize,
    count: usize,
}

impl Batch {
    fn idle(&self) -> bool {
        self.sent == self.buf.len() && !self.flushing
    }

    /// Accounts for a batch written in full. `true` if there was one.
    fn finish(&mut self, conn: &Connection) -> bool {
        if self.buf.is_empty() {
            return false;
        }
        conn.written(self.bytes, self.wire, self.count);
        self.buf.clear();
        self.sent = 0;
        self.bytes = 0;
        self.wire = 0;
        self.count = 0;
        true
    }
}

async fn drive<R, W>(shared: &Arc<Shared>, mut rd: R, mut wr: W, outbound: &Receiver<Outgoing>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let conn = &shared.conn;
    let events = &shared.events;
    let mut report = EndReport {
        conn,
        events,
        failure: None,
    };
    let mut batch = Batch::default();
    let mut close_seen = false;
    // `None`: nobody listens any more.
    while let Some(Plan {
        paused,
        shut_down,
        ended,
        deadline,
        reading,
    }) = plan(shared, outbound, &mut batch, &mut close_seen)
    {
        if shut_down {
            // Nothing follows a failure's close frame: the peer reads it, then our FIN.
            let _ = tokio::time::timeout(TIMEOUTS.linger, wr.shutdown()).await;
        }
        if ended {
            break;
        }
        // Not biased: a peer that streams must not starve our writes, nor a fast socket our
        // reads.
        tokio::select! {
            _ = conn.cancel.cancelled() => break,
            res = write_some(&mut wr, &batch.buf[batch.sent..]), if !batch.idle() => match res {
                Ok(0) if batch.flushing => batch.flushing = false,
                Ok(n) if n > 0 => {
                    batch.sent += n;
                    batch.flushing = batch.sent == batch.buf.len();
                }
                // The socket is gone.
                _ => break,
            },
            res = poll_fn(|cx| poll_fill(shared, &mut rd, cx)), if reading => {
                if !matches!(res, Ok(n) if n > 0) {
                    shared.lock().proto.input_ended(Instant::now());
                }
            }
            _ = conn.inbound.wake.notified(), if paused => {}
            _ = conn.out_wake.notified(), if batch.idle() => {}
            _ = conn.close_wake.notified(), if !close_seen => {}
            _ = shared.wake.notified() => {}
            _ = sleep_until(deadline), if deadline.is_some() => {
                shared.lock().proto.handle_timeout(Instant::now());
            }
        }
    }
    // Drop the socket before reporting, so the other side sees the close first.
    conn.direct.shut();
    drop(rd);
    drop(wr);
    let mut live = shared.lock();
    live.done = true;
    live.tcp = None;
    live.tls = None;
    conn.close_received
        .store(live.proto.close_received(), Ordering::Release);
    report.failure = live.proto.failure().map(str::to_owned);
}

/// What the task does next, decided under the protocol's lock.
struct Plan {
    /// No room for the game's input: reading waits until it takes some.
    paused: bool,
    /// A failure's close frame is written: shut the write side down.
    shut_down: bool,
    ended: bool,
    deadline: Option<tokio::time::Instant>,
    reading: bool,
}

/// One step of the task's rules: the game's close, delivery, accounting of a written batch
/// and the next batch. `None`: nobody listens any more.
fn plan(
    shared: &Shared,
    outbound: &Receiver<Outgoing>,
    batch: &mut Batch,
    close_seen: &mut bool,
) -> Option<Plan> {
    let conn = &shared.conn;
    let now = Instant::now();
    let mut live = shared.lock();
    let proto = &mut live.proto;
    if !*close_seen && conn.close_queued.load(Ordering::Acquire) {
        *close_seen = true;
        proto.ask_close(now, conn.too_slow.load(Ordering::Acquire));
    }
    let paused = deliver(conn, proto, &shared.events, now)?;
    if proto.closing() {
        conn.set_state(ReadyState::Closing);
    }
    let mut shut_down = false;
    if batch.idle() {
        shut_down = batch.finish(conn) && proto.on_written(now);
        if proto.end().is_none() {
            refill(conn, proto, outbound, batch, now);
        }
    }
    Some(Plan {
        paused,
        shut_down,
        ended: proto.end().is_some(),
        deadline: proto.poll_timeout().map(tokio::time::Instant::from_std),
        reading: proto.wants_read() && !paused,
    })
}

/// What one main-thread read of a connection did.
pub(crate) struct MainRead {
    pub(crate) bytes: usize,
    /// Input may be left in the socket (the read budget ran out): no new edge will say so.
    pub(crate) more: bool,
}

/// The main thread's read of a plain connection's socket, from `poll()`: a few non-blocking
/// reads through the protocol, their messages handed to the game's queue at once. Skipped
/// when the task holds the protocol (it reads then), and a no-op once the task has ended.
pub(crate) fn read_on_main_thread(shared: &Shared) -> MainRead {
    let mut result = MainRead {
        bytes: 0,
        more: false,
    };
    let Ok(mut live) = shared.live.try_lock() else {
        return result;
    };
    let Live {
        proto,
        tcp: Some(tcp),
        tls,
        done: false,
    } = &mut *live
    else {
        return result;
    };
    // With TLS, only if the task is not using the session either.
    let mut session = match tls {
        Some(tls) => match tls.try_lock() {
            Some(session) => Some(session),
            None => return result,
        },
        None => None,
    };
    let before = (proto.poll_timeout(), proto.pending(), proto.closing());
    // Input ended, or delivery stopped (paused for the game's room, or nobody listens): the
    // task decides what follows, so it must run.
    let mut wake_task = false;
    result.more = true;
    for _ in 0..MAIN_READS_PER_CONN {
        if !proto.wants_read() || shared.conn.inbound.paused.load(Ordering::Acquire) {
            result.more = false;
            break;
        }
        let read = match session.as_deref_mut() {
            Some(session) => try_fill_tls(session, tcp, proto.decoder()),
            None => try_fill(tcp, proto.decoder()),
        };
        let eof = match read {
            Ok(0) => true,
            Ok(n) => {
                result.bytes += n;
                false
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                result.more = false;
                break;
            }
            Err(_) => true,
        };
        let now = Instant::now();
        if eof {
            proto.input_ended(now);
        }
        let delivered = deliver(&shared.conn, proto, &shared.events, now) == Some(false);
        if eof || !delivered {
            wake_task = true;
            result.more = false;
            break;
        }
    }
    if proto.pending() > 0 {
        shared.conn.direct.reserve_for_task();
    }
    // What the session still holds is the task's to finish: records it sealed in answer
    // (a key update) to write, plaintext left when the read budget ran out.
    if let Some(session) = session.as_deref_mut() {
        if session.wants_write() {
            shared.conn.direct.ask_tls_flush();
            wake_task = true;
        }
        let plaintext = session
            .process_new_packets()
            .map(|s| s.plaintext_bytes_to_read());
        if plaintext.map_or(true, |n| n > 0) {
            wake_task = true;
        }
    }
    drop(session);
    let after = (proto.poll_timeout(), proto.pending(), proto.closing());
    if wake_task || before != after || proto.end().is_some() {
        shared.wake.notify_one();
    }
    result
}

/// Hands the game what has been read, while it has room. `Some(true)`: no room, reading is
/// paused until the game takes some; `None`: nobody listens any more.
fn deliver(
    conn: &Arc<Connection>,
    proto: &mut Protocol,
    events: &Sender<Event>,
    now: Instant,
) -> Option<bool> {
    loop {
        if conn.inbound_full() {
            conn.inbound.paused.store(true, Ordering::SeqCst);
            if conn.inbound_full() {
                proto.set_paused(true);
                return Some(true);
            }
        }
        conn.inbound.paused.store(false, Ordering::SeqCst);
        proto.set_paused(false);
        let Some(output) = proto.poll_output(now) else {
            return Some(false);
        };
        match output {
            Output::Message { data, text } => {
                let wire = proto.decoder().take_wire_in();
                #[cfg(feature = "fault-injection")]
                if text && &data[..] == crate::connection::PANIC_TRIGGER.as_bytes() {
                    panic!("fault injection: the peer asked this connection task to panic");
                }
                if conn.silenced.load(Ordering::Acquire) {
                    continue;
                }
                conn.received(data.len(), wire);
                // A pong or close read before this message is the task's to write: hold the
                // socket for it before the game can see the message and answer directly.
                if proto.pending() > 0 {
                    conn.direct.reserve_for_task();
                }
                let packet = InboundPacket::new(conn.clone(), data, text);
                events.send(Event::Packet(packet)).ok()?;
            }
            Output::CloseRequested { code, reason } => {
                conn.set_state(ReadyState::Closing);
                if !conn.silenced.load(Ordering::Acquire) {
                    let id = conn.id();
                    let _ = events.send(Event::CloseRequest { id, code, reason });
                }
            }
            Output::CloseStatus { code, reason } => conn.record_close(code, reason),
            Output::Rtt(us) => {
                conn.rtt_us.store(us, Ordering::Release);
                if let Some(metrics) = conn.metrics.get() {
                    metrics.observe_rtt(us);
                }
            }
        }
    }
}

/// Takes the socket and fills the batch: the rest of a partial direct write first, then the
/// game's queued messages through the protocol (up to a batch), then the protocol's own
/// frames. With nothing to write, the socket is free for direct sends again.
fn refill(
    conn: &Connection,
    proto: &mut Protocol,
    outbound: &Receiver<Outgoing>,
    batch: &mut Batch,
    now: Instant,
) {
    if !conn.direct.task_takes() {
        return; // The main thread is writing; it wakes us when done.
    }
    // The next queued send must wake us again.
    conn.wake_pending.store(false, Ordering::Release);
    if let Some((rest, payload)) = conn.direct.take_carry() {
        batch.buf.extend_from_slice(&rest);
        batch.bytes += payload;
        batch.wire += payload;
        batch.count += 1;
    }
    if conn.direct.take_tls_flush() {
        batch.flushing = true;
    }
    while batch.buf.len() + proto.pending() < WRITE_BATCH {
        match outbound.try_recv() {
            Ok(Outgoing::Data(data, text)) => {
                if proto.send(&data, text) {
                    batch.bytes += data.len();
                    batch.count += 1;
                }
            }
            Ok(Outgoing::Close(code, reason)) => proto.close(code, &reason, now),
            Err(_) => break,
        }
    }
    batch.wire += proto.take_wire_out();
    proto.poll_transmit(&mut batch.buf);
    if batch.buf.is_empty() {
        batch.buf = Vec::new(); // Hold no write buffer while idle.
        conn.direct.task_releases();
    }
}

/// Writes some of `data`, or flushes when it is empty (`Ok(0)`). Cancel-safe.
async fn write_some<W: AsyncWrite + Unpin>(wr: &mut W, data: &[u8]) -> std::io::Result<usize> {
    if data.is_empty() {
        wr.flush().await.map(|()| 0)
    } else {
        wr.write(data).await
    }
}

/// One read into the decoder, as its read plan asks. Cancel-safe: the bytes are handed over
/// in the same poll that reads them.
pub(crate) async fn fill<R: AsyncRead + Unpin>(
    stream: &mut R,
    decoder: &mut Decoder,
) -> std::io::Result<usize> {
    match decoder.read_plan() {
        ReadPlan::Idle => {
            let mut first = [0u8; IDLE_READ];
            let n = stream.read(&mut first).await?;
            decoder.receive(&first[..n]);
            Ok(n)
        }
        ReadPlan::Buffer(ask) => {
            let n = stream.read_buf(decoder.buffer()).await?;
            decoder.filled(n, ask);
            Ok(n)
        }
    }
}

/// [`fill`] for the task's `select!`: the protocol is locked only inside each poll, so the
/// main thread can read between them. Cancel-safe like `fill`.
fn poll_fill<R: AsyncRead + Unpin>(
    shared: &Shared,
    rd: &mut R,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    let mut live = shared.lock();
    let decoder = live.proto.decoder();
    match decoder.read_plan() {
        ReadPlan::Idle => {
            let mut first = [0u8; IDLE_READ];
            let mut buf = ReadBuf::new(&mut first);
            ready!(Pin::new(rd).poll_read(cx, &mut buf))?;
            let n = buf.filled().len();
            decoder.receive(&first[..n]);
            Poll::Ready(Ok(n))
        }
        ReadPlan::Buffer(ask) => {
            let n = ready!(poll_read_buf(rd, cx, decoder.buffer()))?;
            decoder.filled(n, ask);
            Poll::Ready(Ok(n))
        }
    }
}

/// One read into `buf`'s spare capacity (what `AsyncReadExt::read_buf` does, as a poll).
fn poll_read_buf<R: AsyncRead + Unpin>(
    rd: &mut R,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    let dst = buf.chunk_mut();
    // SAFETY: the slice is only written by the read, and only what it reports is advanced
    // over (the same as tokio's `read_buf`).
    let dst = unsafe { &mut *(dst as *mut _ as *mut [MaybeUninit<u8>]) };
    let mut rb = ReadBuf::uninit(dst);
    ready!(Pin::new(rd).poll_read(cx, &mut rb))?;
    let n = rb.filled().len();
    // SAFETY: `n` bytes were initialized by the read.
    unsafe { buf.advance_mut(n) };
    Poll::Ready(Ok(n))
}

/// [`fill`] without waiting, from the main thread: `WouldBlock` when nothing is there. A
/// plain `recv`, not tokio's `try_read`: that one trusts the runtime's view of readiness,
/// which is stale exactly when the runtime has not run since the input arrived.
fn try_fill(tcp: &TcpStream, decoder: &mut Decoder) -> io::Result<usize> {
    let sock = socket2::SockRef::from(tcp);
    match decoder.read_plan() {
        ReadPlan::Idle => {
            let mut first = [MaybeUninit::<u8>::uninit(); IDLE_READ];
            let n = sock.recv(&mut first)?;
            // SAFETY: `recv` initialized the first `n` bytes.
            let read = unsafe { std::slice::from_raw_parts(first.as_ptr().cast::<u8>(), n) };
            decoder.receive(read);
            Ok(n)
        }
        ReadPlan::Buffer(ask) => {
            let buf = decoder.buffer();
            let n = sock.recv(buf.spare_capacity_mut())?;
            // SAFETY: `recv` initialized `n` bytes of the spare capacity.
            unsafe { buf.set_len(buf.len() + n) };
            decoder.filled(n, ask);
            Ok(n)
        }
    }
}

/// [`try_fill`] for a `wss://` connection: the plaintext of what has arrived, through its
/// TLS session.
fn try_fill_tls(
    session: &mut tokio_rustls::rustls::Connection,
    tcp: &TcpStream,
    decoder: &mut Decoder,
) -> io::Result<usize> {
    match decoder.read_plan() {
        ReadPlan::Idle => {
            let mut first = [0u8; IDLE_READ];
            let n = shared_tls::read_plain(session, tcp, true, &mut first)?;
            decoder.receive(&first[..n]);
            Ok(n)
        }
        ReadPlan::Buffer(ask) => {
            let buf = decoder.buffer();
            let start = buf.len();
            let room = (buf.capacity() - start).min(shared_tls::RECORD);
            buf.resize(start + room, 0);
            let n = shared_tls::read_plain(session, tcp, true, &mut buf[start..]);
            buf.truncate(start + *n.as_ref().unwrap_or(&0));
            let n = n?;
            decoder.filled(n, ask);
            Ok(n)
        }
    }
}

/// The next message or control frame, reading as needed; `Ok(None)` when the stream ends.
/// For the client's handshake (its id), before the connection task runs.
pub(crate) async fn next_frame<R: AsyncRead + Unpin>(
    stream: &mut R,
    decoder: &mut Decoder,
) -> Result<Option<Incoming>, String> {
    loop {
        if let Some(item) = decoder.parse().map_err(|e| e.to_string())? {
            return Ok(Some(item));
        }
        if fill(stream, decoder).await.map_err(|e| e.to_string())? == 0 {
            return Ok(None);
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
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
        // After a panic the main thread's way to the socket is still open: close it first.
        conn.direct.shut();
        conn.set_state(ReadyState::Closed);
        conn.record_close(-1, String::new());
        if conn.silenced.load(Ordering::Acquire) {
            return;
        }
        if let Some(reason) = self.failure.take() {
            let _ = self.events.send(Event::Error {
                message: format!("peer {}: {reason}; connection closed", conn.id()),
            });
        }
        let _ = self.events.send(Event::Disconnected { id: conn.id() });
    }
}
