//! permessage-deflate's data transform (RFC 7692 section 7.2): one message compressed with a
//! sync flush and the trailing `00 00 ff ff` removed, and back. It runs on the connection
//! task's thread, called by [`super::Protocol`] (sending) and the decoder (receiving).
//!
//! Inflating is bounded: the output grows in steps and never past the message limit plus
//! one byte, so a few KiB that would inflate to gigabytes (a decompression bomb) fail at the
//! limit before more memory is taken.
//!
//! Without context takeover a stream is reset after every message anyway, so those
//! connections borrow one stream per thread and setting instead of holding their own (a
//! deflate stream with a 15-bit window is about 300 KiB by zlib's sizing).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use flate2::{Compress, Decompress, FlushCompress, FlushDecompress, Status};

use super::extension::{Agreed, MAX_WINDOW_BITS};
use crate::config::Compression;

/// What a sync flush ends with; removed when sending, put back when receiving.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// First output buffer for an inflated message, as a multiple of its compressed size.
const FIRST_RATIO: usize = 4;
/// Most messages sent as they are after one that did not shrink (see [`Deflater::wants`]).
/// Large, so a stream of incompressible data pays for one failed compression in a thousand;
/// data that starts to compress again ends the skipping at once through [`looks_compressible`].
const MAX_SKIP: u32 = 1024;
/// Bytes of a skipped message that [`looks_compressible`] reads.
const SAMPLE: usize = 512;

/// Why an inflated message was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// It inflates past the limit (answered with 1009).
    TooBig,
    /// Not a valid deflate stream (answered with 1007).
    Corrupt(String),
}

/// The sending side's compressor for one connection.
pub(crate) struct Deflater {
    /// Messages shorter than this go out uncompressed.
    threshold: usize,
    level: u32,
    window_bits: u8,
    /// `Some` with context takeover (made on first use), `None` without: a per-thread one
    /// is borrowed per message.
    own: Option<Compress>,
    no_context: bool,
    /// Messages still to send as they are, after one that compression did not shrink;
    /// shared with the direct send path ([`Deflater::skipping`]).
    skip: Arc<Skipping>,
    /// How many the next such message makes skip (doubles up to [`MAX_SKIP`]).
    backoff: u32,
}

/// How many more messages the connection sends uncompressed before compression is tried
/// again: the connection task's [`Deflater`] sets it, and both the task and the direct send
/// path (a `put_packet` that writes its frame from the game's thread) use it up. A message
/// sent as it is leaves the deflate context as it was (RFC 7692 section 6.1: only compressed
/// messages go through it), so which of the two sends it does not matter; the direct path
/// sends only when nothing of the connection is queued, so messages keep their order.
#[derive(Debug, Default)]
pub(crate) struct Skipping(AtomicU32);

impl Skipping {
    /// Whether `data`, of the threshold's length or more, goes out uncompressed now: one of
    /// the messages to skip, and its sample does not look compressible. Takes one from the
    /// count when it does. (A message that looks compressible is left to the task, which
    /// compresses it and ends the skipping.)
    pub(crate) fn take(&self, data: &[u8]) -> bool {
        if self.0.load(Ordering::Relaxed) == 0 || looks_compressible(data) {
            return false;
        }
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }

    fn set(&self, n: u32) {
        self.0.store(n, Ordering::Relaxed);
    }
}

/// The receiving side's decompressor for one connection.
pub(crate) struct Inflater {
    own: Option<Decompress>,
    no_context: bool,
}

/// The two halves for one side of a connection with permessage-deflate agreed.
pub(crate) fn for_connection(
    agreed: &Agreed,
    ours: &Compression,
    server: bool,
) -> (Deflater, Inflater) {
    let (send_bits, send_reset, recv_reset) = if server {
        (
            agreed.server_max_window_bits,
            agreed.server_no_context_takeover,
            agreed.client_no_context_takeover,
        )
    } else {
        (
            agreed.client_max_window_bits,
            agreed.client_no_context_takeover,
            agreed.server_no_context_takeover,
        )
    };
    let deflater = Deflater {
        threshold: ours.threshold,
        level: ours.level.min(9),
        // zlib cannot make raw deflate with an 8-bit window; with 9 bits its farthest match
        // is 250 bytes back (the window less its 262-byte lookahead), within an 8-bit one.
        window_bits: send_bits.clamp(9, MAX_WINDOW_BITS),
        own: None,
        no_context: send_reset,
        skip: Arc::default(),
        backoff: 1,
    };
    let inflater = Inflater {
        own: None,
        no_context: recv_reset,
    };
    (deflater, inflater)
}

#[cfg(feature = "fuzzing")]
thread_local! {
    /// The largest output buffer an inflate held on this thread since [`take_inflate_peak`]
    /// (the fuzz targets hold it to the message limit plus one byte).
    static INFLATE_PEAK: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(feature = "fuzzing")]
pub(crate) fn take_inflate_peak() -> usize {
    INFLATE_PEAK.with(|p| p.replace(0))
}

thread_local! {
    /// Streams borrowed by connections without context takeover, by (level, window bits).
    static SHARED_DEFLATE: RefCell<Vec<(u32, u8, Compress)>> = const { RefCell::new(Vec::new()) };
    static SHARED_INFLATE: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

fn new_compress(level: u32, bits: u8) -> Compress {
    Compress::new_with_window_bits(flate2::Compression::new(level), false, bits)
}

/// Always a 15-bit window: it reads a stream made with any smaller one.
fn new_decompress() -> Decompress {
    Decompress::new_with_window_bits(false, MAX_WINDOW_BITS)
}

impl Deflater {
    /// Whether `data` is sent compressed: from the threshold up, unless the data has stopped
    /// compressing. Incompressible data (media, encrypted or already compressed payloads)
    /// costs a deflate pass and saves nothing, so after a message that shrank by less than a
    /// tenth the next ones go as they are — 1, then 2, 4, ... up to [`MAX_SKIP`] while it goes
    /// on; one that shrinks resets that. While skipping, a message whose sample looks
    /// compressible ([`looks_compressible`]) is tried at once. The choice is made before
    /// compressing: with context takeover, data once compressed must be sent compressed.
    pub(crate) fn wants(&mut self, data: &[u8]) -> bool {
        if data.len() < self.threshold {
            return false;
        }
        if self.skip.take(data) {
            return false;
        }
        // Not skipping, or data that looks compressible: compressed, and the skipping ends.
        self.skip.set(0);
        true
    }

    /// The skip count, for the direct send path to use up too.
    pub(crate) fn skipping(&self) -> Arc<Skipping> {
        self.skip.clone()
    }

    /// Appends `data` compressed (one message's payload, without the tail) to `out`.
    pub(crate) fn compress(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        self.compress_into(data, out);
        if (out.len() - start) * 10 > data.len() * 9 {
            self.skip.set(self.backoff);
            self.backoff = (self.backoff * 2).min(MAX_SKIP);
        } else {
            self.backoff = 1;
        }
    }

    fn compress_into(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if !self.no_context {
            let (level, bits) = (self.level, self.window_bits);
            let stream = self.own.get_or_insert_with(|| new_compress(level, bits));
            compress_message(stream, data, out);
            return;
        }
        let key = (self.level, self.window_bits);
        let taken = SHARED_DEFLATE.with_borrow_mut(|pool| {
            let at = pool.iter().position(|(l, b, _)| (*l, *b) == key)?;
            Some(pool.swap_remove(at).2)
        });
        let mut stream = taken.unwrap_or_else(|| new_compress(key.0, key.1));
        compress_message(&mut stream, data, out);
        stream.reset();
        SHARED_DEFLATE.with_borrow_mut(|pool| pool.push((key.0, key.1, stream)));
    }
}

/// Whether up to [`SAMPLE`] bytes from the middle of `data` repeat byte values more than
/// random bytes do: their collision entropy (Rényi order 2, `-log2 Σ p²` over the byte
/// values' frequencies, estimated without bias from the pairs of equal bytes) is under 7 bits
/// a byte. Random bytes give 8 (a full sample has 1,022 equal pairs on average, about 45
/// either way, against the 2,044 it takes); text, JSON and game state give 3 to 6. A pass
/// over the sample, well under a microsecond. Samples under 128 bytes say too little and
/// answer no. Data that repeats only in longer runs (the same random block again) looks
/// random here: the periodic retry finds it instead.
fn looks_compressible(data: &[u8]) -> bool {
    let n = data.len().min(SAMPLE);
    if n < 128 {
        return false;
    }
    let start = (data.len() - n) / 2;
    let mut counts = [0u32; 256];
    for &b in &data[start..start + n] {
        counts[b as usize] += 1;
    }
    let pairs: u64 = counts
        .iter()
        .map(|&c| u64::from(c) * u64::from(c.saturating_sub(1)))
        .sum();
    let n = n as u64;
    // Σ p² > 2^-7, with Σ c(c-1) / n(n-1) for Σ p².
    pairs * 128 > n * (n - 1)
}

fn compress_message(stream: &mut Compress, data: &[u8], out: &mut Vec<u8>) {
    if data.is_empty() {
        // An empty stored block (section 7.2.3.6). zlib would emit nothing for a second
        // flush in a row, which the other side could not read; this leaves the context as is.
        out.push(0x00);
        return;
    }
    let start = out.len();
    out.reserve(data.len() / 2 + 64);
    let mut fed = 0;
    loop {
        let before = stream.total_in();
        // Errors are for misuse (a stream in a bad state), not for data: none can happen.
        let _ = stream.compress_vec(&data[fed..], out, FlushCompress::Sync);
        fed += (stream.total_in() - before) as usize;
        // A sync flush is complete once it leaves room in the output (zlib's rule).
        if fed == data.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve((out.len() - start).max(64));
    }
    if out[start..].ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
    }
}

impl Inflater {
    /// One message's payload (compressed, without the tail) inflated, or an error once it
    /// would be over `max` bytes, never holding more than `max + 1`.
    pub(crate) fn inflate(&mut self, data: &[u8], max: usize) -> Result<Vec<u8>, InflateError> {
        if !self.no_context {
            let stream = self.own.get_or_insert_with(new_decompress);
            let result = inflate_message(stream, data, max);
            if result.is_err() {
                // The stream's state is unknown now; the connection is failing anyway.
                stream.reset(false);
            }
            return result;
        }
        let mut stream = SHARED_INFLATE
            .with_borrow_mut(Option::take)
            .unwrap_or_else(new_decompress);
        let result = inflate_message(&mut stream, data, max);
        stream.reset(false);
        SHARED_INFLATE.with_borrow_mut(|slot| *slot = Some(stream));
        result
    }
}

fn inflate_message(
    stream: &mut Decompress,
    data: &[u8],
    max: usize,
) -> Result<Vec<u8>, InflateError> {
    let limit = max.saturating_add(1);
    let first = data
        .len()
        .saturating_mul(FIRST_RATIO)
        .clamp(64.min(limit), limit);
    let mut out = Vec::with_capacity(first);
    for input in [data, &TAIL[..]] {
        let mut fed = 0;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= limit {
                    return Err(InflateError::TooBig);
                }
                let grow = out.capacity().min(limit - out.len());
                out.reserve_exact(grow);
            }
            #[cfg(feature = "fuzzing")]
            INFLATE_PEAK.with(|p| p.set(p.get().max(out.capacity())));
            let (before_in, before_out) = (stream.total_in(), out.len());
            let status = stream
                .decompress_vec(&input[fed..], &mut out, FlushDecompress::Sync)
                .map_err(|e| InflateError::Corrupt(e.to_string()))?;
            let consumed = (stream.total_in() - before_in) as usize;
            fed += consumed;
            if out.len() > max {
                return Err(InflateError::TooBig);
            }
            if status == Status::StreamEnd {
                // The sender ended the stream (a final block): what follows starts a new
                // one (RFC 7692 section 7.2.3.4 allows it).
                stream.reset(false);
                return Ok(out);
            }
            let room = out.len() < out.capacity();
            if fed == input.len() && room {
                break;
            }
            if room && consumed == 0 && out.len() == before_out {
                // Input and room left, and no progress: the stream cannot go on.
                return Err(InflateError::Corrupt("deflate stream stalled".into()));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
