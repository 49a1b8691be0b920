//! The connection task: drives one connection's [`Protocol`] with its socket, the game's
//! queue and a timer until the connection ends, then reports the end. The rules are all in
//! the protocol; this file moves bytes, wakes and counters.
//!
//! One loop, one `select!`: reading, writing and the timer run concurrently, so a peer that
//! reads nothing cannot stop us from reading its pings and close, and a game that reads
//! nothing (backpressure) cannot stop our writes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::connection::{Connection, Outgoing, ReadyState};
use crate::events::{Event, InboundPacket};
use crate::fence::HeadFence;
use crate::protocol::decode::{Decoder, Incoming, ReadPlan, IDLE_READ};
use crate::protocol::deflate;
use crate::protocol::{Output, Protocol, TIMEOUTS};
use crate::shared_tcp::SharedTcp;
use crate::tls::MaybeTls;

/// Frames are gathered into one buffer up to about this size before a socket write.
const WRITE_BATCH: usize = 64 * 1024;

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
    match stream {
        MaybeTls::Plain(tcp) => {
            let tcp = Arc::new(tcp);
            conn.direct.open(tcp.clone(), client, direct_below);
            let (rd, wr) = (SharedTcp(tcp.clone()), SharedTcp(tcp));
            drive(&conn, rd, wr, proto, &outbound, &events).await;
        }
        tls => {
            let (rd, wr) = tokio::io::split(tls);
            drive(&conn, rd, wr, proto, &outbound, &events).await;
        }
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

async fn drive<R, W>(
    conn: &Arc<Connection>,
    mut rd: R,
    mut wr: W,
    mut proto: Protocol,
    outbound: &Receiver<Outgoing>,
    events: &Sender<Event>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut report = EndReport {
        conn,
        events,
        failure: None,
    };
    let mut batch = Batch::default();
    let mut close_seen = false;
    loop {
        let now = Instant::now();
        if !close_seen && conn.close_queued.load(Ordering::Acquire) {
            close_seen = true;
            proto.ask_close(now, conn.too_slow.load(Ordering::Acquire));
        }
        let Some(paused) = deliver(conn, &mut proto, events, now) else {
            break; // Nobody listens any more.
        };
        if proto.closing() {
            conn.set_state(ReadyState::Closing);
        }
        if batch.idle() {
            if batch.finish(conn) && proto.on_written(now) {
                // Nothing follows a failure's close frame: the peer reads it, then our FIN.
                let _ = tokio::time::timeout(TIMEOUTS.linger, wr.shutdown()).await;
            }
            if proto.end().is_none() {
                refill(conn, &mut proto, outbound, &mut batch, now);
            }
        }
        if proto.end().is_some() {
            break;
        }
        let deadline = proto.poll_timeout().map(tokio::time::Instant::from_std);
        let reading = proto.wants_read() && !paused;
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
            res = fill(&mut rd, proto.decoder()), if reading => {
                if !matches!(res, Ok(n) if n > 0) {
                    proto.input_ended(Instant::now());
                }
            }
            _ = conn.inbound.wake.notified(), if paused => {}
            _ = conn.out_wake.notified(), if batch.idle() => {}
            _ = conn.close_wake.notified(), if !close_seen => {}
            _ = sleep_until(deadline), if deadline.is_some() => {
                proto.handle_timeout(Instant::now());
            }
        }
    }
    // Drop the socket before reporting, so the other side sees the close first.
    conn.direct.shut();
    drop(rd);
    drop(wr);
    conn.close_received
        .store(proto.close_received(), Ordering::Release);
    report.failure = proto.failure().map(str::to_owned);
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
