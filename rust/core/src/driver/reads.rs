//! The task's reads: one read into the decoder as its read plan asks, in a `select!` branch
//! that locks the protocol only inside each poll, and the client's wait for its first frame.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{ready, Context, Poll};

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use super::task_io::TaskIo;
use super::Shared;
use crate::protocol::decode::{Decoder, Incoming, ReadPlan, IDLE_READ};

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
/// main thread can read between them. Cancel-safe like `fill`. A read that finds the socket
/// empty ends a hand-over made before it began, and, when the main thread is the reader now
/// (`may_yield`), ends with `WouldBlock` so that the task stops waiting for input.
pub(super) fn poll_fill(
    shared: &Shared,
    rd: &mut TaskIo<'_>,
    cx: &mut Context<'_>,
    may_yield: bool,
) -> Poll<io::Result<usize>> {
    let handoff = shared.handoff.load(Ordering::Acquire);
    let sock = rd.socket();
    sock.take_drained();
    let res = poll_fill_locked(shared, rd, cx);
    if res.is_pending() && sock.take_drained() {
        if handoff != 0 {
            let _ =
                shared
                    .handoff
                    .compare_exchange(handoff, 0, Ordering::AcqRel, Ordering::Acquire);
        }
        if may_yield && shared.main_reads() {
            return Poll::Ready(Err(io::ErrorKind::WouldBlock.into()));
        }
    }
    res
}

fn poll_fill_locked<R: AsyncRead + Unpin>(
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
