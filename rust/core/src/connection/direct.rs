//! The direct send path: when nothing is queued towards a plain `ws://` peer, the thread that
//! calls `put_packet` writes the frame to the socket itself (one non-blocking write), saving
//! the wake of the connection task and a thread hand-off per packet. Only what the kernel
//! does not take at once goes to the task, which writes it before anything else, so bytes
//! stay in `put_packet` order across both paths.
//!
//! One writer at a time: the socket belongs to nobody ([`OWNER_IDLE`]; the next writer takes
//! it), to the main thread during one direct write, or to the task while it has frames or a
//! partial write to finish. For `wss://` the frame is sealed into the connection's TLS
//! session, which the main thread only ever `try_lock`s ([`crate::shared_tls`]): when the
//! task holds it, the message is queued.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use super::Connection;
use crate::frame;
use crate::protocol::deflate::Skipping;
use crate::shared_tcp::{self, Tcp};
use crate::shared_tls::{self, TlsSession};

pub(crate) const OWNER_IDLE: u8 = 0;
const OWNER_MAIN: u8 = 1;
pub(crate) const OWNER_TASK: u8 = 2;

/// A send this soon after the last direct write is queued instead: a burst then goes out in
/// the task's batched writes (one system call for many frames), not one write per packet.
const DIRECT_SPACING_US: u64 = 10;
/// Messages this large or larger go to the socket directly even in a burst while the game's
/// main thread spins ([`crate::ready::ReadySockets::spinning`]): a system call per message
/// costs it a little of a frame it would have spun away, where a runtime thread woken for
/// the message would first have to win a CPU from it.
const BULK: usize = 8 * 1024;
/// A direct send's frame buffer larger than this is given back after use (a 16 KiB message
/// and its longest header fit).
const SCRATCH_KEEP: usize = 16 * 1024 + 14;
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

fn budget_allows() -> bool {
    DIRECT_LEFT
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

/// The main thread's way to the socket of a plain `ws://` connection.
struct Socket {
    tcp: Arc<Tcp>,
    /// A client masks its frames with keys of its own (the task has its own masker).
    masker: Option<frame::Masker>,
    /// The frame being written, kept between sends so a direct send allocates nothing.
    scratch: Vec<u8>,
    /// Messages this long or longer go to the task: with permessage-deflate they are
    /// compressed, which is the runtime's work, never the main thread's.
    direct_below: usize,
    /// With compression: while the task's compressor is skipping incompressible data, a
    /// message it would skip may come this way too, sent as it is.
    skipping: Option<Arc<Skipping>>,
    /// `wss://`: frames are sealed in this session and written from its buffer.
    tls: Option<Arc<TlsSession>>,
}

impl Socket {
    /// Whether `data` may go out from here, uncompressed: below the compression threshold,
    /// or one the compressor would skip now (asked last, with the socket ours: a skip it
    /// grants is used).
    fn sends_plain(&self, data: &[u8]) -> bool {
        data.len() < self.direct_below || self.skipping.as_ref().is_some_and(|s| s.take(data))
    }
}

#[derive(Default)]
pub(crate) struct DirectPath {
    /// Set by the task for plain TCP; taken away when the task ends, so the socket closes
    /// with it.
    socket: Mutex<Option<Socket>>,
    /// `OWNER_*`: who may write to the socket now.
    owner: AtomicU8,
    /// The task waits for the socket while the main thread writes: wake it after.
    task_waiting: AtomicBool,
    /// The rest of a frame the main thread could not write at once, with the payload size it
    /// still counts in `out_bytes`: the task writes it before anything else.
    carry: Mutex<Option<(Vec<u8>, usize)>>,
    /// When the last direct write happened (µs since the connection was made).
    last_us: AtomicU64,
    /// A direct write left sealed TLS records in the session: the task flushes them.
    tls_flush: AtomicBool,
}

impl DirectPath {
    /// Opens the path (the task does), for messages shorter than `direct_below` bytes and
    /// those `skipping` lets through; `tls` for `wss://`.
    pub(crate) fn open(
        &self,
        tcp: Arc<Tcp>,
        tls: Option<Arc<TlsSession>>,
        client: bool,
        direct_below: usize,
        skipping: Option<Arc<Skipping>>,
    ) {
        *self.socket.lock().unwrap_or_else(|e| e.into_inner()) = Some(Socket {
            tcp,
            masker: client.then(frame::Masker::new),
            scratch: Vec::new(),
            direct_below,
            skipping,
            tls,
        });
    }

    /// Closes the path: the main thread's reference to the socket goes.
    pub(crate) fn shut(&self) {
        self.socket.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// The task takes the socket, or keeps it (also when a partial direct write handed it
    /// over). `false`: the main thread is writing; the task is woken when it is done.
    pub(crate) fn task_takes(&self) -> bool {
        let take = || {
            self.owner
                .compare_exchange(OWNER_IDLE, OWNER_TASK, Ordering::AcqRel, Ordering::Acquire)
                .map_or_else(|owner| owner == OWNER_TASK, |_| true)
        };
        if take() {
            return true;
        }
        self.task_waiting.store(true, Ordering::SeqCst);
        let taken = take();
        if taken {
            self.task_waiting.store(false, Ordering::SeqCst);
        }
        taken
    }

    /// The main thread read a frame that needs an answer (a pong, a close) from the task:
    /// the socket is the task's until it has written it, so a message the game sends in
    /// answer to what it just received cannot overtake it.
    pub(crate) fn reserve_for_task(&self) {
        let _ = self.owner.compare_exchange(
            OWNER_IDLE,
            OWNER_TASK,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// The task has nothing more to write: the socket is free for direct sends again.
    pub(crate) fn task_releases(&self) {
        self.owner.store(OWNER_IDLE, Ordering::SeqCst);
    }

    /// What a partial direct write left for the task: the bytes and the payload size.
    pub(crate) fn take_carry(&self) -> Option<(Vec<u8>, usize)> {
        self.carry.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Asks the task to write what the TLS session holds sealed (the main thread left it
    /// there: a partial direct write, or an answer the session made to what it read).
    pub(crate) fn ask_tls_flush(&self) {
        self.tls_flush.store(true, Ordering::SeqCst);
    }

    /// Whether the TLS session has sealed records for the task to write.
    pub(crate) fn take_tls_flush(&self) -> bool {
        self.tls_flush.swap(false, Ordering::SeqCst)
    }

    /// Writes one data frame to the socket from this thread, if it is plain TCP, nothing else
    /// of ours is queued and nobody is writing. `false`: queue it instead. `bulk_ok`: a large
    /// message may go even in a burst while the main thread spins (not a broadcast's copy).
    pub(crate) fn send(&self, conn: &Connection, data: &[u8], text: bool, bulk_ok: bool) -> bool {
        let mut socket = self.socket.lock().unwrap_or_else(|e| e.into_inner());
        let Some(socket) = socket.as_mut() else {
            return false;
        };
        // Only this message counted: nothing queued ahead of it; and not in a burst of small
        // ones (large ones while the main thread spins: see `BULK`).
        let now = conn.micros();
        let bulk =
            bulk_ok && data.len() >= BULK && conn.ready.as_ref().is_some_and(|r| r.spinning());
        if conn.out_count.load(Ordering::Acquire) != 1
            || (!bulk
                && (now.saturating_sub(self.last_us.load(Ordering::Relaxed)) < DIRECT_SPACING_US
                    || !budget_allows()))
            || self
                .owner
                .compare_exchange(OWNER_IDLE, OWNER_MAIN, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return false;
        }
        if !socket.sends_plain(data) {
            self.release(conn);
            return false;
        }
        let op = if text {
            frame::OP_TEXT
        } else {
            frame::OP_BINARY
        };
        let buf = &mut socket.scratch;
        buf.clear();
        frame::encode(buf, op, data, socket.masker.as_mut());
        self.last_us.store(now, Ordering::Relaxed);
        if let Some(tls) = &socket.tls {
            return self.send_sealed(conn, tls, buf, data.len());
        }
        // Would-block, or a broken socket (the task finds the error on its own): 0 written.
        let written = shared_tcp::send(&socket.tcp, buf).unwrap_or_default();
        if written == buf.len() {
            // A large frame's buffer is not kept for every later small one.
            if buf.capacity() > SCRATCH_KEEP {
                *buf = Vec::new();
            }
            conn.written(data.len(), data.len(), 1);
            self.release(conn);
            return true;
        }
        // The task owns the socket until the rest is written; the buffer goes with it.
        let mut rest = std::mem::take(buf);
        rest.drain(..written);
        *self.carry.lock().unwrap_or_else(|e| e.into_inner()) = Some((rest, data.len()));
        self.hand_to_task(conn);
        true
    }

    /// The direct send of a `wss://` frame, with the socket ours: sealed into the session if
    /// the task is not using it, then written as far as the socket takes it; the session
    /// keeps the rest, in order, for the task. `false`: queue it instead.
    fn send_sealed(
        &self,
        conn: &Connection,
        tls: &TlsSession,
        frame: &[u8],
        payload: usize,
    ) -> bool {
        let Some(mut session) = tls.try_lock() else {
            self.release(conn);
            return false;
        };
        // The session takes any length; an error means the connection is ending, and the task
        // reports that.
        let _ = session.writer().write_all(frame);
        let flushed = shared_tls::write_sealed(&mut session, &tls.tcp).is_ok();
        drop(session);
        conn.written(payload, payload, 1);
        if flushed {
            self.release(conn);
        } else {
            self.ask_tls_flush();
            self.hand_to_task(conn);
        }
        true
    }

    /// The main thread is done with the socket: free for the next writer.
    fn release(&self, conn: &Connection) {
        self.owner.store(OWNER_IDLE, Ordering::SeqCst);
        // The task waited for the socket, or a close was queued meanwhile: let it go on.
        if self.task_waiting.swap(false, Ordering::SeqCst) || !conn.outbound.is_empty() {
            conn.out_wake.notify_one();
        }
    }

    /// The task owns the socket until it has written what the main thread could not.
    fn hand_to_task(&self, conn: &Connection) {
        self.owner.store(OWNER_TASK, Ordering::SeqCst);
        self.task_waiting.store(false, Ordering::SeqCst);
        conn.out_wake.notify_one();
    }
}
