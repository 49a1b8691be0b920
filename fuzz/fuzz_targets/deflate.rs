//! Over 500 lines: the generator of valid compressed streams and the reference check are one
//! oracle and are read together.
//!
//! The connection's protocol state machine with permessage-deflate agreed (RFC 7692), as
//! the `protocol` target drives it (`fuzz/src/session.rs`: random reads, the game's sends
//! and closes, pauses, the clock), both roles, either side with or without context
//! takeover, window bits 8 to 15, message limits 0 B to 1 MiB (1 MiB in one run of 16). The
//! stream is mostly what a peer would send: the input is a program of messages compressed
//! here with flate2 (random level, window, sync flush or a final block, tail kept or
//! removed, fragmented, pings between fragments; past 8 KiB, a message repeating a unit is
//! the unit through flate2 then back-references written here, as zlib writes a long run),
//! plain messages and control frames, interleaved with raw bytes, corrupted compressed
//! messages and misplaced RSV bits. Checked, beyond `protocol`'s
//! checks (which here compare with the reference decoder's inflate, `fuzz/src/reference.rs`):
//! - what it holds stays within the compressed limit plus one read, and inflating never
//!   holds more than the message limit plus one byte;
//! - what the game sends is compressed so that the other side inflates it back;
//! - ground truth: for the messages made here before the first deliberately broken chunk,
//!   the reference delivers their plaintext in order (with context takeover, later messages
//!   refer back to earlier ones), or stops at the first one over the limit (1009) or with
//!   bad UTF-8 in text (1007), never earlier.
//!
//! Input: three bytes of settings, the operations (`take_prefix`), the program.

#![no_main]

use std::time::Duration;

use flate2::{Compress, FlushCompress};
use libfuzzer_sys::fuzz_target;
use rust_websocket_core::fuzzing::{compressed_limit, Agreed, Compression};
use rust_websocket_fuzz::reference::{self, Ending, Inflate, Item};
use rust_websocket_fuzz::session::{Deflate, Session};
use rust_websocket_fuzz::take_prefix;

/// Message limits: 0 B to 1 MiB; the last one only with one more settings bit (the costliest
/// runs: one in 16, not 8), else 8 KiB.
const LIMITS: [usize; 8] = [0, 1, 4, 125, 1000, 16384, 65535, 1 << 20];
/// How many times a message's bytes are repeated: large messages from a small input, now
/// and then (each costs inflates in the session and the reference).
const REPEAT: [usize; 16] = [1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4, 16, 300, 5000, 70_000];
/// Plaintext made per input at most (past the largest limit, not much more: speed). A run
/// makes at most twice its message limit and 4 KiB: more only repeats a 1009 at its limit.
const BUDGET: usize = (1 << 20) + 4096;
/// A message longer than this, of a unit within the window, is compressed as the unit and
/// back-references ([`repeat_block`]): zlib-rs instrumented for coverage compresses a few
/// MB/s, which made long messages most of a run's time.
const LONG: usize = 8192;

/// What the session should deliver for one chunk of the program.
enum Expect {
    Data(Vec<u8>, bool),
    Fault(u16),
}

/// The other side: builds the byte stream from the program.
struct Peer<'a> {
    program: &'a [u8],
    /// Frames are masked (a client's).
    mask: bool,
    /// The compressor kept between messages (context takeover), made on first use.
    context: Option<(Compress, u32, u8)>,
    no_context: bool,
    /// Largest window the other side may use.
    max_bits: u8,
    max: usize,
    stream: Vec<u8>,
    made: usize,
    /// Expectations up to the first broken chunk; `broken` once there was one.
    expect: Vec<Expect>,
    broken: bool,
    closed: bool,
}

impl Peer<'_> {
    fn byte(&mut self) -> u8 {
        match self.program.split_first() {
            Some((&b, rest)) => {
                self.program = rest;
                b
            }
            None => 0,
        }
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.program.len());
        let (head, rest) = self.program.split_at(n);
        self.program = rest;
        head.to_vec()
    }

    /// A message's plaintext: a length (two bytes), that many input bytes, repeated; and
    /// the unit's length. A unit longer than `window` (which no back-reference reaches) is
    /// repeated to [`LONG`] bytes at most.
    fn plaintext(&mut self, window: usize) -> (Vec<u8>, usize) {
        let len = usize::from(u16::from_le_bytes([self.byte(), self.byte()]) % 2048);
        let repeat = REPEAT[usize::from(self.byte() % 16)];
        let mut plain = self.bytes(len);
        let budget = BUDGET.min(self.max.saturating_mul(2).saturating_add(4096));
        let mut n = (plain.len() * repeat).min(budget.saturating_sub(self.made));
        if plain.len() > window {
            n = n.min(LONG.max(plain.len()));
        }
        self.made += n;
        plain.truncate(n);
        let unit = plain.len();
        while plain.len() < n {
            plain.extend_from_within(..unit.min(n - plain.len()));
        }
        (plain, unit)
    }

    /// The window the other side compresses with for `bits` (see `compress`).
    fn window(&self, bits: u8) -> usize {
        1 << (9 + bits % 7).min(self.max_bits.max(9))
    }

    fn frame(&mut self, first: u8, payload: &[u8]) {
        // A key that changes along the stream, zero at its start.
        let [lo, hi] = (self.stream.len() as u16).to_le_bytes();
        let key = self.mask.then_some([lo, 0, hi, lo]);
        self.stream.push(first);
        let m = if key.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n @ 0..=125 => self.stream.push(m | n as u8),
            n @ 126..=0xffff => {
                self.stream.push(m | 126);
                self.stream.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                self.stream.push(m | 127);
                self.stream.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match key {
            Some(k) => {
                self.stream.extend_from_slice(&k);
                let at = self.stream.len();
                self.stream.extend_from_slice(payload);
                for (i, b) in self.stream[at..].iter_mut().enumerate() {
                    *b ^= k[i % 4];
                }
            }
            None => self.stream.extend_from_slice(payload),
        }
    }

    /// A message in `parts` frames, RSV1 (0x40) on the first when `compressed`; with `ping`,
    /// a ping between the first two. `rsv_later`: RSV bits on a later frame too (a fault).
    fn message(&mut self, text: bool, compressed: bool, payload: &[u8], opts: u8) {
        let parts = usize::from(opts % 4) + 1;
        let ping = opts & 0x04 != 0;
        let rsv_later = if opts & 0x08 != 0 { 0x40 } else { 0 };
        let step = payload.len().div_ceil(parts).max(1);
        let mut chunks: Vec<&[u8]> = payload.chunks(step).collect();
        if chunks.is_empty() {
            chunks.push(&[]);
        }
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let op = match i {
                0 if text => 0x1,
                0 => 0x2,
                _ => 0x0,
            };
            let rsv = match i {
                0 if compressed => 0x40,
                0 => 0,
                _ => rsv_later,
            };
            let fin = if i == last { 0x80 } else { 0 };
            self.frame(fin | rsv | op, chunk);
            if i == 0 && ping && last > 0 {
                self.frame(0x89, b"between");
            }
        }
    }

    /// `plain` (repeats of its first `unit` bytes) compressed as the other side would:
    /// `params` picks the level, the window, a final block or a sync flush, whether the tail
    /// is kept, whether the context is kept against what was agreed. Past [`LONG`] bytes,
    /// zlib compresses the unit and the rest is back-references to it, a block zlib could
    /// have written; the compressor's context is dropped after it (it did not see the rest).
    /// Also returns whether what follows is no longer clean.
    fn compress(&mut self, plain: &[u8], unit: usize, params: u8, bits: u8) -> (Vec<u8>, bool) {
        let level = u32::from(params % 10);
        let finish = params & 0x10 != 0;
        let keep_tail = params & 0x20 != 0;
        let against = params & 0x40 != 0 && self.no_context;
        let bits = (9 + bits % 7).min(self.max_bits.max(9));
        let keep = !self.no_context || against;
        let long = plain.len() > LONG && unit > 0 && unit <= 1 << bits;
        let (plain, rest) = if long {
            (&plain[..unit], &plain[unit..])
        } else {
            (plain, &[][..])
        };
        let mut stream = match self.context.take() {
            Some((s, l, b)) if keep && (l, b) == (level, bits) => s,
            // A new compressor mid-connection with context takeover: the next message
            // cannot refer to what the old one sent, which is fine for the reader.
            other => {
                if let Some((s, l, b)) = other {
                    spare_compress(s, l, b);
                }
                fresh_compress(level, bits)
            }
        };
        let mut out = Vec::with_capacity(plain.len() / 2 + 128);
        let flush = if finish && !long {
            FlushCompress::Finish
        } else {
            FlushCompress::Sync
        };
        let mut fed = 0;
        loop {
            let before = stream.total_in();
            stream
                .compress_vec(&plain[fed..], &mut out, flush)
                .expect("compress");
            fed += (stream.total_in() - before) as usize;
            if fed == plain.len() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.len().max(64));
        }
        if out.is_empty() {
            // zlib flushes nothing twice in a row: the data must still end in an empty
            // stored block (RFC 7692 section 7.2.1), which becomes `00` without the tail.
            out.extend_from_slice(&[0, 0, 0, 0xff, 0xff]);
        }
        if long {
            repeat_block(&mut out, rest, unit, finish);
        }
        // Kept, the tail reads as the start of another stored block that the next message
        // goes on (RFC 7692 section 7.2.1 has the sender remove it): no longer clean.
        let tail = out.ends_with(&[0, 0, 0xff, 0xff]);
        if tail && !keep_tail {
            out.truncate(out.len() - 4);
        }
        if finish {
            stream.reset();
        }
        if keep && !long {
            self.context = Some((stream, level, bits));
        } else {
            spare_compress(stream, level, bits);
        }
        // Against what was agreed, the message is fine, the next one may not be.
        (out, against || tail && keep_tail)
    }

    fn expect(&mut self, e: Expect) {
        if !self.broken {
            self.expect.push(e);
        }
    }

    /// What a whole message should come out as.
    fn expect_message(&mut self, plain: Vec<u8>, text: bool, wire: usize, compressed: bool) {
        let wire_max = if compressed {
            compressed_limit(self.max)
        } else {
            self.max
        };
        if wire > wire_max || plain.len() > self.max {
            self.expect(Expect::Fault(1009));
        } else if text && std::str::from_utf8(&plain).is_err() {
            self.expect(Expect::Fault(1007));
        } else {
            self.expect(Expect::Data(plain, text));
        }
    }

    fn run(&mut self) {
        while !self.program.is_empty() && !self.closed {
            let tag = self.byte();
            match tag % 8 {
                0..=2 => {
                    let (params, opts, bits) = (self.byte(), self.byte(), self.byte());
                    let (plain, unit) = self.plaintext(self.window(bits));
                    let text = tag & 0x80 != 0;
                    let (payload, against) = self.compress(&plain, unit, params, bits);
                    self.message(text, true, &payload, opts & 0x07);
                    self.expect_message(plain, text, payload.len(), true);
                    self.broken |= against;
                }
                3 => {
                    let opts = self.byte();
                    let (plain, _) = self.plaintext(usize::MAX);
                    let text = tag & 0x80 != 0;
                    self.message(text, false, &plain, opts & 0x07);
                    // Fragment by fragment: a fragment past the limit (1009) or one that
                    // cannot be UTF-8 (1007) stops it before the rest is seen.
                    let step = plain.len().div_ceil(usize::from(opts % 4) + 1).max(1);
                    let mut ends: Vec<usize> = (step..plain.len()).step_by(step).collect();
                    ends.push(plain.len());
                    let fault = ends.iter().find_map(|&end| {
                        let fin = end == plain.len();
                        if end > self.max {
                            return Some(1009);
                        }
                        match std::str::from_utf8(&plain[..end]) {
                            Err(e) if text && (fin || e.error_len().is_some()) => Some(1007),
                            _ => None,
                        }
                    });
                    match fault {
                        Some(code) => self.expect(Expect::Fault(code)),
                        None => self.expect(Expect::Data(plain, text)),
                    }
                }
                4 => {
                    let n = usize::from(self.byte());
                    let raw = self.bytes(n);
                    self.stream.extend_from_slice(&raw);
                    self.broken = true;
                }
                5 => {
                    let len = usize::from(self.byte() % 126);
                    let payload = self.bytes(len);
                    let op = if tag & 0x80 != 0 { 0x8a } else { 0x89 };
                    self.frame(op, &payload);
                }
                6 => {
                    // A compressed message corrupted: a byte changed or the end cut off.
                    let (params, opts, bits, at, xor) = (
                        self.byte(),
                        self.byte(),
                        self.byte(),
                        self.byte(),
                        self.byte(),
                    );
                    let (plain, unit) = self.plaintext(self.window(bits));
                    let (mut payload, _) = self.compress(&plain, unit, params, bits);
                    if !payload.is_empty() {
                        let i = usize::from(at) % payload.len();
                        if xor == 0 {
                            payload.truncate(i);
                        } else {
                            payload[i] ^= xor;
                        }
                    }
                    self.message(tag & 0x80 != 0, true, &payload, opts);
                    self.broken = true;
                }
                _ => {
                    // RSV bits where they may not be: a continuation frame (opts bit 3), a
                    // control frame, RSV2 or RSV3.
                    let what = self.byte();
                    match what % 3 {
                        0 => {
                            let (plain, unit) = self.plaintext(self.window(15));
                            let (payload, _) = self.compress(&plain, unit, what >> 2, 15);
                            self.message(false, true, &payload, 0x08 | ((what >> 4) % 4));
                        }
                        1 => self.frame(0x89 | 0x40, b"rsv"),
                        _ => self.frame(0x82 | (what & 0x30), b"x"),
                    }
                    self.broken = true;
                }
            }
            if tag & 0x78 == 0x78 && !self.broken {
                // A close frame ends the program.
                let code: u16 = [1000, 1001, 3000, 4999][usize::from(tag >> 1 & 3)];
                self.frame(0x88, &code.to_be_bytes());
                self.closed = true;
            }
        }
    }
}

/// Deflate's bit order (RFC 1951 section 3.1.1): values from the least significant bit,
/// Huffman codes from the most significant.
struct Bits<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits<'_> {
    fn put(&mut self, value: u32, count: u32) {
        self.acc |= u64::from(value) << self.n;
        self.n += count;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    fn code(&mut self, code: u32, len: u32) {
        self.put(code.reverse_bits() >> (32 - len), len);
    }

    /// A literal/length symbol in the fixed Huffman code (section 3.2.6).
    fn symbol(&mut self, s: u32) {
        match s {
            0..=143 => self.code(0x30 + s, 8),
            144..=255 => self.code(0x190 + s - 144, 9),
            256..=279 => self.code(s - 256, 7),
            _ => self.code(0xc0 + s - 280, 8),
        }
    }

    fn align(&mut self) {
        if self.n > 0 {
            self.out.push(self.acc as u8);
            self.acc = 0;
            self.n = 0;
        }
    }
}

const LEN_BASE: [u32; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LEN_EXTRA: [u32; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_BASE: [u32; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u32; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

/// Appends to a byte-aligned deflate stream one fixed-Huffman block that goes on with
/// `rest`, which repeats the `distance` bytes before it: back-references of 258 bytes (a
/// long run of one pattern, as zlib writes it), literals for the last one or two. Ends with
/// a sync flush's empty stored block, or is the final block when `last`.
fn repeat_block(out: &mut Vec<u8>, rest: &[u8], distance: usize, last: bool) {
    let mut bits = Bits { out, acc: 0, n: 0 };
    bits.put(u32::from(last), 1);
    bits.put(1, 2);
    let d = distance as u32;
    let di = DIST_BASE
        .iter()
        .rposition(|&b| b <= d)
        .expect("distance >= 1");
    let mut at = 0;
    while at < rest.len() {
        let left = rest.len() - at;
        if left < 3 {
            bits.symbol(u32::from(rest[at]));
            at += 1;
            continue;
        }
        let len = match left {
            259 | 260 => left - 3,
            _ => left.min(258),
        } as u32;
        let li = LEN_BASE.iter().rposition(|&b| b <= len).expect("len >= 3");
        bits.symbol(257 + li as u32);
        bits.put(len - LEN_BASE[li], LEN_EXTRA[li]);
        bits.code(di as u32, 5);
        bits.put(d - DIST_BASE[di], DIST_EXTRA[di]);
        at += len as usize;
    }
    bits.symbol(256);
    if !last {
        bits.put(0, 3);
        bits.align();
        bits.out.extend_from_slice(&[0, 0, 0xff, 0xff]);
    }
    bits.align();
}

fuzz_target!(|data: &[u8]| {
    let [s0, s1, s2, rest @ ..] = data else {
        return;
    };
    let server = s0 & 1 == 0;
    let max = match LIMITS[usize::from(s0 >> 1 & 7)] {
        m if m > 1 << 16 && s0 & 0x20 == 0 => 8192,
        m => m,
    };
    let heartbeat = (s0 & 0x10 != 0).then(|| Duration::from_millis(100));
    let agreed = Agreed {
        server_no_context_takeover: s0 & 0x40 != 0,
        client_no_context_takeover: s0 & 0x80 != 0,
        server_max_window_bits: 8 + s1 % 8,
        client_max_window_bits: 8 + (s1 >> 3) % 8,
    };
    let ours = Compression {
        threshold: [0, 1, 64, 1024][usize::from(s1 >> 6)],
        level: u32::from(s2 % 10),
        no_context_takeover: s2 & 0x80 != 0,
    };
    let deflate = Deflate { agreed, ours };
    let (ops, program) = take_prefix(rest);

    let (peer_bits, peer_no_context) = if server {
        (
            agreed.client_max_window_bits,
            agreed.client_no_context_takeover,
        )
    } else {
        (
            agreed.server_max_window_bits,
            agreed.server_no_context_takeover,
        )
    };
    let mut peer = Peer {
        program,
        mask: server,
        context: None,
        no_context: peer_no_context,
        max_bits: peer_bits,
        max,
        stream: Vec::new(),
        made: 0,
        expect: Vec::new(),
        broken: false,
        closed: false,
    };
    peer.run();
    let reference = check_ground_truth(&peer, server, &deflate);

    let mut session = Session::new(server, max, heartbeat, Some(deflate), &peer.stream);
    session.play(ops);
    session.check_with(Some(reference));
    if let Some((s, level, bits)) = peer.context.take() {
        spare_compress(s, level, bits);
    }
});

thread_local! {
    /// Compressors of earlier runs by (level, window bits), reset: a new one allocates and
    /// clears some 300 KiB, which was a tenth of a run.
    static SPARE: std::cell::RefCell<Vec<(Compress, u32, u8)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

fn fresh_compress(level: u32, bits: u8) -> Compress {
    let spare = SPARE.with_borrow_mut(|v| {
        let i = v.iter().position(|&(_, l, b)| (l, b) == (level, bits))?;
        Some(v.swap_remove(i).0)
    });
    match spare {
        Some(mut s) => {
            s.reset();
            s
        }
        None => Compress::new_with_window_bits(flate2::Compression::new(level), false, bits),
    }
}

fn spare_compress(s: Compress, level: u32, bits: u8) {
    SPARE.with_borrow_mut(|v| {
        if v.len() < 16 {
            v.push((s, level, bits));
        }
    });
}

/// The reference reads the messages made here, before the first broken chunk, as made.
/// Returns its reading of the whole stream (the session's check reuses it when the session
/// read it all).
fn check_ground_truth(peer: &Peer, server: bool, deflate: &Deflate) -> (Vec<Item>, Ending) {
    let mut inflate = Inflate::new(deflate.peer_no_context(server), compressed_limit(peer.max));
    let (items, ending) =
        reference::decode_with(&peer.stream, peer.max, server, Some(&mut inflate));
    let data: Vec<(&[u8], bool)> = items
        .iter()
        .take_while(|i| !matches!(i, Item::Close(_)))
        .filter_map(|i| match i {
            Item::Data { data, text } => Some((&data[..], *text)),
            _ => None,
        })
        .collect();
    for (i, e) in peer.expect.iter().enumerate() {
        match e {
            Expect::Data(plain, text) => {
                let got = data.get(i).map(|(d, t)| (d.len(), *t));
                assert_eq!(got, Some((plain.len(), *text)), "message {i}, {ending:?}");
                assert!(data[i].0 == &plain[..], "message {i}: other bytes");
            }
            Expect::Fault(code) => {
                assert_eq!(data.len(), i, "messages before the fault");
                assert_eq!(ending, Ending::Fault(*code), "message {i}");
                return (items, ending);
            }
        }
    }
    if !peer.broken {
        assert_eq!(data.len(), peer.expect.len());
        assert_eq!(ending, Ending::Incomplete);
    }
    (items, ending)
}
