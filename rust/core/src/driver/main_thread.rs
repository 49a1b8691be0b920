//! The main thread's reads of a connection's socket, from `poll()` ([`crate::ready`]): the
//! same protocol as the task's, locked only if it is free at that moment.

use std::io;
use std::mem::MaybeUninit;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{deliver, Live, Shared};
use crate::protocol::decode::{Decoder, ReadPlan};
use crate::shared_tcp::Tcp;
use crate::shared_tls;

/// Socket reads one `poll()` makes for one connection at most.
const MAIN_READS_PER_CONN: usize = 4;
/// The main thread's first read of a quiet connection: on its own stack, so a burst of small
/// messages takes one system call (the task's is smaller: its stack is the future's).
const MAIN_IDLE_READ: usize = 4096;

/// What one main-thread read of a connection did.
pub(crate) struct MainRead {
    pub(crate) bytes: usize,
    /// Input may be left in the socket (the read budget ran out): no new edge will say so.
    pub(crate) more: bool,
}

/// The main thread's read of a connection's socket, from `poll()`: a few non-blocking reads
/// through the protocol, their messages handed to the game's queue at once. Put off to the
/// next `poll()` when the task holds the protocol; a no-op once the task has ended. Input the
/// main thread leaves in the socket (its read budget ran out, or the game's queue is full)
/// is handed to the task.
pub(crate) fn read_on_main_thread(shared: &Shared) -> MainRead {
    let mut result = MainRead {
        bytes: 0,
        more: true,
    };
    let Ok(mut live) = shared.live.try_lock() else {
        return result;
    };
    result.more = false;
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
            None => {
                result.more = true;
                return result;
            }
        },
        None => None,
    };
    let before = (proto.poll_timeout(), proto.pending(), proto.closing());
    // Input ended, or delivery stopped (paused for the game's room, or nobody listens): the
    // task decides what follows, so it must run.
    let mut wake_task = false;
    result.more = true;
    for _ in 0..MAIN_READS_PER_CONN {
        if !proto.wants_read() {
            result.more = false;
            break;
        }
        if shared.conn.inbound.paused.load(Ordering::Acquire) {
            // The task reads on once the game has taken some.
            shared.hand_over();
            result.more = false;
            break;
        }
        // A short read of plain TCP emptied the socket; TLS may hold more than it gave.
        let read = match session.as_deref_mut() {
            Some(session) => try_fill_tls(session, tcp, proto.decoder()).map(|n| (n, true)),
            None => try_fill(tcp, proto.decoder()),
        };
        let mut emptied = false;
        let eof = match read {
            Ok((0, _)) => true,
            Ok((n, filled)) => {
                result.bytes += n;
                emptied = !filled;
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
            if !delivered {
                // The game's queue filled: what is left in the socket is the task's to read
                // once there is room (no new input may come to say it is there).
                shared.hand_over();
            }
            wake_task = true;
            result.more = false;
            break;
        }
        if emptied {
            result.more = false;
            break;
        }
    }
    if result.more {
        // Perhaps a stream: the task reads it on another core, as long as it lasts.
        shared.hand_over();
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

/// One read into the decoder as its read plan asks, without waiting: `WouldBlock` when
/// nothing is there. With the bytes read, whether the read filled the room it offered (a
/// shorter one emptied the socket).
fn try_fill(tcp: &Tcp, decoder: &mut Decoder) -> io::Result<(usize, bool)> {
    let sock = socket2::SockRef::from(tcp);
    match decoder.read_plan() {
        ReadPlan::Idle => {
            let mut first = [MaybeUninit::<u8>::uninit(); MAIN_IDLE_READ];
            let n = sock.recv(&mut first)?;
            // SAFETY: `recv` initialized the first `n` bytes.
            let read = unsafe { std::slice::from_raw_parts(first.as_ptr().cast::<u8>(), n) };
            decoder.receive_read(read, MAIN_IDLE_READ);
            Ok((n, n == MAIN_IDLE_READ))
        }
        ReadPlan::Buffer(ask) => {
            let buf = decoder.buffer();
            let room = buf.spare_capacity_mut();
            let offered = room.len();
            let n = sock.recv(room)?;
            // SAFETY: `recv` initialized `n` bytes of the spare capacity.
            unsafe { buf.set_len(buf.len() + n) };
            decoder.filled(n, ask);
            Ok((n, n == offered))
        }
    }
}

/// [`try_fill`] for a `wss://` connection: the plaintext of what has arrived, through its
/// TLS session.
fn try_fill_tls(
    session: &mut tokio_rustls::rustls::Connection,
    tcp: &Tcp,
    decoder: &mut Decoder,
) -> io::Result<usize> {
    match decoder.read_plan() {
        ReadPlan::Idle => {
            let mut first = [0u8; MAIN_IDLE_READ];
            let n = shared_tls::read_plain(session, tcp, &mut first)?;
            decoder.receive_read(&first[..n], MAIN_IDLE_READ);
            Ok(n)
        }
        ReadPlan::Buffer(ask) => {
            let buf = decoder.buffer();
            let start = buf.len();
            let room = (buf.capacity() - start).min(shared_tls::RECORD);
            buf.resize(start + room, 0);
            let n = shared_tls::read_plain(session, tcp, &mut buf[start..]);
            buf.truncate(start + *n.as_ref().unwrap_or(&0));
            let n = n?;
            decoder.filled(n, ask);
            Ok(n)
        }
    }
}
