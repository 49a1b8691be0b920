//! The connection task: drives one connection's [`Protocol`] with its socket, the game's
//! queue and a timer until the connection ends, then reports the end. The rules are all in
//! the protocol; this file moves bytes, wakes and counters.
//!
//! One loop, one `select!`: reading, writing and the timer run concurrently, so a peer that
//! reads nothing cannot stop us from reading its pings and close, and a game that reads
//! nothing (backpressure) cannot stop our writes. While the game's main thread reads the
//! socket itself (`main_thread`, [`crate::ready`]), the task leaves input to it.

mod main_thread;
mod reads;
mod task_io;

pub(crate) use main_thread::read_on_main_thread;
#[cfg(feature = "fuzzing")]
pub(crate) use reads::fill;
pub(crate) use reads::next_frame;
use reads::poll_fill;

use std::future::poll_fn;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

use crate::connection::{Connection, Outgoing, ReadyState};
use crate::events::{Event, InboundPacket};
use crate::fence::HeadFence;
use crate::protocol::decode::Decoder;
use crate::protocol::deflate;
use crate::protocol::{Output, Protocol, TIMEOUTS};
use crate::ready::ReadySockets;
use crate::shared_tcp::{self, TaskSocket, Tcp};
use crate::shared_tls::TlsSession;
use crate::tls::MaybeTls;
use task_io::TaskIo;

/// Frames are gathered into one buffer up to about this size before a socket write.
const WRITE_BATCH: usize = 64 * 1024;

/// A connection's protocol, shared by its task and the game's main thread, which reads
/// sockets known to have input in `poll()` ([`crate::ready`]). The task
/// locks it for each step and never across an `await`; the main thread only `try_lock`s it.
pub(crate) struct Shared {
    live: Mutex<Live>,
    /// The main thread changed something the task must act on (a frame to send, a close,
    /// the end of input).
    wake: Notify,
    /// Nonzero: the main thread has left input in the socket for the task to read (a new
    /// value each time); the task clears it once a read of its own finds the socket empty.
    handoff: AtomicU64,
    conn: Arc<Connection>,
    events: Sender<Event>,
}

struct Live {
    proto: Protocol,
    /// The socket, for the main thread's reads (`None` once the task ends: it closes the
    /// socket before it reports the end).
    tcp: Option<Arc<Tcp>>,
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

    /// The main thread leaves the socket's input to the task.
    fn hand_over(&self) {
        self.handoff.fetch_add(1, Ordering::AcqRel);
        self.wake.notify_one();
    }

    /// Whether the main thread is this socket's reader now: it reads only ([`crate::ready`])
    /// and has handed nothing over.
    fn main_reads(&self) -> bool {
        self.conn.ready.as_ref().is_some_and(|r| r.main_only())
            && self.handoff.load(Ordering::Acquire) == 0
    }

    /// Main-only reading has started or ended ([`crate::ready`]): the task decides again
    /// whether it waits for input.
    pub(crate) fn replan(&self) {
        self.wake.notify_one();
    }
}

/// Drives one open connection until it closes, then reports [`Event::Disconnected`].
/// `decoder` may hold bytes already read (the client reads its id with it).
///
/// The setup (protocol, socket registrations) runs in this call and only what the task
/// keeps goes into the returned future: an `async fn` would also hold its arguments and
/// every value the setup borrowed for as long as the connection lives (about 2 KiB each).
pub(crate) fn run(
    conn: Arc<Connection>,
    stream: HeadFence<MaybeTls>,
    decoder: Decoder,
    outbound: Receiver<Outgoing>,
    events: Sender<Event>,
) -> impl std::future::Future<Output = ()> + Send {
    let started = start(&conn, stream, decoder, events);
    async move {
        let Some(Started {
            shared,
            sock,
            tls,
            key,
        }) = started
        else {
            return;
        };
        let main_reader = key.and(conn.ready.as_deref());
        drive(&shared, sock, tls, &outbound, main_reader).await;
        if let (Some(ready), Some(key)) = (&conn.ready, key) {
            ready.forget(key);
        }
    }
}

/// What the task of an open connection keeps: the protocol shared with the main thread, its
/// registration of the socket, the TLS session, and its key in the main thread's ready set.
struct Started {
    shared: Arc<Shared>,
    sock: TaskSocket,
    tls: Option<Arc<TlsSession>>,
    key: Option<u64>,
}

/// [`run`]'s setup. `None`: the socket could not be shared or registered (the end is
/// reported).
fn start(
    conn: &Arc<Connection>,
    stream: HeadFence<MaybeTls>,
    mut decoder: Decoder,
    events: Sender<Event>,
) -> Option<Started> {
    // The fence has done its work: what it still holds goes to the decoder.
    let (stream, rest) = stream.into_parts()?;
    decoder.receive(&rest);
    let client = !decoder.is_server();
    let mut proto = Protocol::new(decoder, conn.heartbeat, TIMEOUTS, Instant::now());
    // With compression agreed, messages from the threshold up are compressed here, on the
    // runtime's thread: only shorter ones and those the compressor skips (sent as they are)
    // may take the direct path.
    let (mut direct_below, mut skipping) = (usize::MAX, None);
    if let Some((agreed, ours)) = &conn.info().deflate {
        let deflater = deflate::for_connection(agreed, ours, !client).0;
        skipping = Some(deflater.skipping());
        proto.deflate_with(deflater);
        direct_below = ours.threshold;
    }
    let shared_socket = match stream {
        MaybeTls::Plain(tcp) => shared_tcp::share(tcp).map(|tcp| (tcp, None)),
        MaybeTls::Tls(stream) => TlsSession::new(*stream).map(|tls| (tls.tcp.clone(), Some(tls))),
    };
    let sock = shared_socket.and_then(|(tcp, tls)| Ok((TaskSocket::new(tcp)?, tls)));
    let (sock, tls) = match sock {
        Ok(sock) => sock,
        Err(e) => {
            // Reported when dropped.
            let _end = EndReport {
                conn,
                events: &events,
                failure: Some(format!("socket: {e}")),
            };
            return None;
        }
    };
    let tcp = sock.tcp().clone();
    conn.direct
        .open(tcp.clone(), tls.clone(), client, direct_below, skipping);
    let shared = Arc::new(Shared {
        live: Mutex::new(Live {
            proto,
            tcp: Some(tcp.clone()),
            tls: tls.clone(),
            done: false,
        }),
        wake: Notify::new(),
        handoff: AtomicU64::new(0),
        conn: conn.clone(),
        events,
    });
    // Not with compression: inflating stays on the runtime's threads.
    let key = conn
        .ready
        .as_ref()
        .filter(|_| conn.info().deflate.is_none())
        .and_then(|ready| ready.add(&tcp, &shared));
    Some(Started {
        shared,
        sock,
        tls,
        key,
    })
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

async fn drive(
    shared: &Arc<Shared>,
    mut sock: TaskSocket,
    tls: Option<Arc<TlsSession>>,
    outbound: &Receiver<Outgoing>,
    main_reader: Option<&ReadySockets>,
) {
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
        closing,
    }) = plan(shared, outbound, &mut batch, &mut close_seen)
    {
        // The main thread reads while the game polls, unless it handed input over; the
        // peer's answer to a close is ours to read whatever the game does.
        let may_yield = main_reader.is_some() && !closing;
        // Plaintext our reads left in the TLS session is ours to deliver: no new input will
        // tell the main thread it is there.
        let main_reads =
            may_yield && shared.main_reads() && !tls.as_ref().is_some_and(|t| t.holds_plaintext());
        if let Err(e) = sock.set_reading(!main_reads) {
            report.failure = Some(format!("socket: {e}"));
            break;
        }
        let (mut rd, mut wr) = (
            TaskIo::new(&sock, tls.as_deref()),
            TaskIo::new(&sock, tls.as_deref()),
        );
        if shut_down {
            // Nothing follows a failure's close frame: the peer reads it, then our FIN.
            let _ = tokio::time::timeout(TIMEOUTS.linger, wr.shutdown()).await;
        }
        if ended {
            break;
        }
        let reading = reading && sock.reading();
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
            res = poll_fn(|cx| poll_fill(shared, &mut rd, cx, may_yield)), if reading => {
                match res {
                    Ok(n) if n > 0 => {}
                    // Nothing there and the main thread reads from now on.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    _ => shared.lock().proto.input_ended(Instant::now()),
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
    drop(sock);
    drop(tls);
    let mut live = shared.lock();
    live.done = true;
    live.tcp = None;
    live.tls = None;
    conn.close_received
        .store(live.proto.close_received(), Ordering::Release);
    if report.failure.is_none() {
        report.failure = live.proto.failure().map(str::to_owned);
    }
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
    closing: bool,
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
    deliver(conn, proto, &shared.events, now)?;
    let mut shut_down = false;
    if batch.idle() {
        shut_down = batch.finish(conn) && proto.on_written(now);
        if proto.end().is_none() {
            refill(conn, proto, outbound, batch, now);
        }
    }
    // Again after the accounting: a close frame just written records its status, which must
    // reach the connection even when the connection ends with this step.
    let paused = deliver(conn, proto, &shared.events, now)?;
    if proto.closing() {
        conn.set_state(ReadyState::Closing);
    }
    Some(Plan {
        paused,
        shut_down,
        ended: proto.end().is_some(),
        deadline: proto.poll_timeout().map(tokio::time::Instant::from_std),
        reading: proto.wants_read() && !paused,
        closing: proto.closing(),
    })
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
