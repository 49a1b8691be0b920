//! One connection's protocol state machine (`fuzzing::Protocol`) driven as the connection
//! task drives it, and the checks on what it did: shared by the `protocol` target (plain
//! frames) and the `deflate` target (permessage-deflate agreed). See `protocol.rs` for the
//! operations and the checks.

use std::time::{Duration, Instant};

use rust_websocket_core::fuzzing::{
    compressed_limit, take_inflate_peak, Agreed, Compression, Decoder, Incoming, Output, Protocol,
};

use crate::heap::Watch;
use crate::read_size;
use crate::reference::{self, Ending, Inflate, Item};

/// A data frame's header and a whole control frame.
const SLACK: usize = 14 + 14 + 125;
/// What a read or an output may allocate beyond the buffers the limits bound: the frame
/// reader's and the inflater's own state (zlib-rs: a 32 KiB window and its tables), once.
const FIXED_HEAP: usize = 256 << 10;

/// permessage-deflate as agreed for the connection under test.
#[derive(Clone, Copy, Debug)]
pub struct Deflate {
    pub agreed: Agreed,
    pub ours: Compression,
}

impl Deflate {
    /// The other side resets its compressor after every message.
    pub fn peer_no_context(&self, server: bool) -> bool {
        if server {
            self.agreed.client_no_context_takeover
        } else {
            self.agreed.server_no_context_takeover
        }
    }
}

pub struct Session<'a> {
    pub proto: Protocol,
    server: bool,
    max: usize,
    /// Largest payload the decoder takes for one message on the wire.
    wire_max: usize,
    deflate: Option<Deflate>,
    now: Instant,
    stream: &'a [u8],
    /// Bytes of `stream` read so far.
    pub at: usize,
    paused: bool,
    /// Every read since was followed by a drain to the end.
    drained: bool,
    /// Handed out by `poll_transmit`, not yet written.
    in_flight: Vec<u8>,
    /// Written.
    wire: Vec<u8>,
    pub delivered: Vec<(Vec<u8>, bool)>,
    /// The game's messages that `send` took.
    sent: Vec<(Vec<u8>, bool)>,
    sent_bytes: usize,
    game_closed: bool,
    game_asked_close: bool,
    /// The largest single read, for the bound on what is held.
    largest_read: usize,
}

impl<'a> Session<'a> {
    pub fn new(
        server: bool,
        max: usize,
        heartbeat: Option<Duration>,
        deflate: Option<Deflate>,
        stream: &'a [u8],
    ) -> Self {
        let now = Instant::now();
        let mut proto = Protocol::new(server, max, heartbeat, now);
        if let Some(d) = &deflate {
            proto.deflate_with(&d.agreed, &d.ours);
        }
        take_inflate_peak();
        Session {
            proto,
            server,
            max,
            wire_max: if deflate.is_some() {
                compressed_limit(max)
            } else {
                max
            },
            deflate,
            now,
            stream,
            at: 0,
            paused: false,
            drained: true,
            in_flight: Vec::new(),
            wire: Vec::new(),
            delivered: Vec::new(),
            sent: Vec::new(),
            sent_bytes: 0,
            game_closed: false,
            game_asked_close: false,
            largest_read: 0,
        }
    }

    /// The game sends until this much was taken: less with compression, where a send costs
    /// a deflate (instrumented, a few MB/s) and an inflate to check it.
    fn send_budget(&self) -> usize {
        if self.deflate.is_some() {
            1 << 16
        } else {
            1 << 18
        }
    }

    fn ended(&self) -> bool {
        self.proto.end().is_some()
    }

    /// Hands the game what was read (the task's `deliver`), up to `limit` outputs.
    fn drain(&mut self, limit: usize) {
        for _ in 0..limit {
            let (heap, pending) = (Watch::start(), self.proto.pending());
            let out = self.proto.poll_output(self.now);
            self.check_heap(heap.peak(), pending, "an output");
            let peak = take_inflate_peak();
            assert!(peak <= self.max.saturating_add(1), "inflate held {peak}");
            match out {
                Some(Output::Message { data, text }) => {
                    assert!(data.len() <= self.max);
                    if text {
                        assert!(std::str::from_utf8(&data).is_ok());
                    }
                    self.delivered.push((data.to_vec(), text));
                }
                Some(Output::CloseRequested { code, .. } | Output::CloseStatus { code, .. }) => {
                    assert!(code == 1005 || reference::sendable(code as u16), "{code}");
                }
                Some(Output::Rtt(_)) => {}
                None => {
                    self.drained = true;
                    // Decoded to the end, unless the input is over (a server that has the
                    // close frame stops there: the rest of that read stays, unread).
                    let mut bound = self.wire_max + SLACK;
                    if !self.proto.wants_read() {
                        bound += self.largest_read;
                    }
                    let held = self.proto.buffered();
                    assert!(held <= bound, "{held} held, limit {}", self.max);
                    return;
                }
            }
        }
    }

    /// One socket read of at most `max` bytes, as the task makes it when reading is on.
    fn read(&mut self, max: usize) {
        if self.paused || !self.proto.wants_read() || self.at == self.stream.len() {
            return;
        }
        self.drain(usize::MAX);
        let end = self.stream.len().min(self.at.saturating_add(max));
        let (heap, pending) = (Watch::start(), self.proto.pending());
        let n = self.proto.read(&self.stream[self.at..end]);
        assert!(n > 0);
        self.at += n;
        self.largest_read = self.largest_read.max(n);
        self.check_heap(heap.peak(), pending, "a read");
        self.drained = false;
        let held = self.proto.buffered();
        assert!(
            held <= self.wire_max + SLACK + self.largest_read,
            "{held} held"
        );
        self.drain(usize::MAX);
    }

    /// What one call on the inbound path (a read, an output) allocated at most, whatever the
    /// peer sent: twice (a buffer grows by doubling) what the limits let it hold (the wire's
    /// bytes, a message, and the outgoing frames: the game's not yet handed out, `pending`
    /// before the call, and a control frame the call may add), and the fixed state.
    fn check_heap(&self, grew: usize, pending: usize, call: &str) {
        let held = self.wire_max + SLACK + self.largest_read + self.max + pending + SLACK;
        let bound = 2 * held + FIXED_HEAP;
        assert!(
            grew <= bound,
            "{call} allocated {grew} bytes at its peak, over {bound} (limit {})",
            self.max
        );
    }

    /// The end of the input (the task reads 0 bytes).
    fn eof(&mut self) {
        if self.paused || !self.proto.wants_read() {
            return;
        }
        self.drain(usize::MAX);
        self.proto.input_ended(self.now);
    }

    fn transmit(&mut self) {
        if self.in_flight.is_empty() {
            self.proto.poll_transmit(&mut self.in_flight);
        }
    }

    fn written(&mut self) {
        if !self.in_flight.is_empty() {
            self.wire.append(&mut self.in_flight);
            self.proto.on_written(self.now);
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        for _ in 0..4 {
            match self.proto.poll_timeout() {
                Some(at) if at <= self.now && !self.ended() => {
                    self.proto.handle_timeout(self.now);
                    let next = self.proto.poll_timeout();
                    assert!(
                        self.ended() || next.is_none_or(|t| t > self.now),
                        "a handled timeout is due again at once"
                    );
                }
                _ => return,
            }
        }
    }

    /// The operations (two bytes each), then as the task goes on: reading what is left,
    /// writing, the clock, the end of input.
    pub fn play(&mut self, ops: &[u8]) {
        for op in ops.chunks_exact(2) {
            if self.ended() {
                break;
            }
            let (kind, arg) = (op[0] % 10, op[1]);
            match kind {
                0 => self.read(read_size(arg)),
                1 if !self.paused => {
                    // The game stops reading after `arg % 4` more outputs (backpressure).
                    self.drain(usize::from(arg % 4));
                    self.paused = true;
                    self.proto.set_paused(true);
                }
                2 => {
                    if self.paused {
                        self.paused = false;
                        self.proto.set_paused(false);
                        self.drain(usize::MAX);
                    }
                }
                3 if self.sent_bytes < self.send_budget() => {
                    let n = [0, 1, 125, 126, 1000, 65536][usize::from(arg % 6)];
                    let text = arg & 0x80 != 0;
                    let msg: Vec<u8> = (0..n)
                        .map(|i| b'a' + ((i + self.sent.len()) % 26) as u8)
                        .collect();
                    if self.proto.send(&msg, text) {
                        self.sent_bytes += msg.len();
                        self.sent.push((msg, text));
                    }
                }
                4 => self.transmit(),
                5 => self.written(),
                6 => {
                    let ms = [0, 1, 50, 99, 100, 101, 1000, 2000, 10_000][usize::from(arg % 9)];
                    self.advance(Duration::from_millis(ms));
                }
                7 => {
                    self.game_asked_close = true;
                    self.proto.ask_close(self.now, arg & 1 != 0);
                }
                8 => {
                    self.game_asked_close = true;
                    self.game_closed = true;
                    let code = [1000, 1001, 1003, 1011, 1014, 3000, 4999][usize::from(arg % 7)];
                    // Up to 126 bytes: past 123 it is cut on a char boundary.
                    let reason = "é".repeat(usize::from(arg >> 2));
                    self.proto.close(code, &reason, self.now);
                }
                9 => self.eof(),
                _ => {}
            }
        }
        if !self.ended() && self.paused {
            self.paused = false;
            self.proto.set_paused(false);
        }
        while !self.ended() && self.proto.wants_read() && self.at < self.stream.len() {
            self.read(usize::MAX);
        }
        for _ in 0..8 {
            if self.ended() {
                break;
            }
            self.written();
            self.transmit();
            self.written();
            self.eof();
            self.advance(Duration::from_secs(2));
        }
        // What was made and not written yet counts as sent for the checks.
        self.wire.append(&mut self.in_flight);
        self.proto.poll_transmit(&mut self.wire);
    }

    /// Every check on what was written and what was delivered.
    pub fn check(&self) {
        self.check_with(None);
    }

    /// [`Self::check`], given the reference's reading of the whole stream when the caller
    /// has it (used if the session read the whole stream).
    pub fn check_with(&self, whole: Option<(Vec<Item>, Ending)>) {
        let our_close = self.check_wire();
        self.check_inbound(our_close, whole);
    }

    /// What we wrote decodes (as the other side reads it) into the game's messages in order,
    /// and at most one close frame, with a code that may be sent, after which nothing.
    /// Returns that frame's code (`Some(None)`: one without a code).
    fn check_wire(&self) -> Option<Option<u16>> {
        let mut peer = Decoder::new(usize::MAX, !self.server);
        if let Some(d) = &self.deflate {
            peer.inflate_with(&d.agreed, &d.ours);
        }
        let mut at = 0;
        let mut frames = Vec::new();
        while at < self.wire.len() {
            at += peer.read(&self.wire[at..]);
            while let Some(f) = peer.parse().expect("we write valid frames") {
                frames.push(f);
            }
        }
        assert_eq!(peer.buffered(), 0, "a frame cut short");
        let mut data = Vec::new();
        let mut closed = None;
        for f in frames {
            assert!(closed.is_none(), "a frame after our close frame: {f:?}");
            match f {
                Incoming::Data { data: d, text } => data.push((d.to_vec(), text)),
                Incoming::Close(c) => {
                    if let Some((code, _)) = c {
                        assert!(reference::sendable(code), "we sent close code {code}");
                    }
                    closed = Some(c.map(|(code, _)| code));
                }
                Incoming::Ping(_) | Incoming::Pong(_) => {}
            }
        }
        assert_eq!(data, self.sent, "the game's messages on the wire");
        closed
    }

    /// The messages delivered against the reference decoder's reading of the bytes read.
    fn check_inbound(&self, our_close: Option<Option<u16>>, whole: Option<(Vec<Item>, Ending)>) {
        let (items, ending) = match whole {
            Some(read) if self.at == self.stream.len() => read,
            _ => {
                let mut inflate = self
                    .deflate
                    .map(|d| Inflate::new(d.peer_no_context(self.server), self.wire_max));
                reference::decode_with(
                    &self.stream[..self.at],
                    self.max,
                    self.server,
                    inflate.as_mut(),
                )
            }
        };
        let mut want = Vec::new();
        let mut close = None;
        for item in items {
            match item {
                Item::Data { data, text } => want.push((data, text)),
                Item::Close(c) => {
                    close = Some(c);
                    break;
                }
                Item::Ping(_) | Item::Pong(_) => {}
            }
        }
        assert!(
            want.starts_with(&self.delivered),
            "delivered {:?}, reference {:?}",
            self.delivered.len(),
            want.len()
        );
        if !self.drained {
            return; // Reading stopped with input left undecoded (paused when it ended).
        }
        assert_eq!(self.delivered.len(), want.len(), "messages delivered");
        match (close, ending) {
            (Some(theirs), _) => {
                assert!(self.proto.close_received());
                if !self.game_asked_close {
                    let echo = theirs.map(|(code, _)| code);
                    assert_eq!(our_close, Some(echo), "our answer to their close");
                }
            }
            (None, Ending::Fault(code)) => {
                assert!(self.proto.failure().is_some(), "fault {code} not seen");
                if !self.game_closed {
                    assert_eq!(our_close, Some(Some(code)), "the close for a fault");
                }
            }
            (None, Ending::Incomplete) => {
                assert!(self.proto.failure().is_none());
                assert!(!self.proto.close_received());
            }
        }
    }
}
