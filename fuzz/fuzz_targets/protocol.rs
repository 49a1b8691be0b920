//! One connection's protocol state machine (protocol::Protocol) as the connection task drives
//! it, fed a random byte stream in reads of random sizes, with the game's sends and closes,
//! pauses for backpressure, writes that complete late, end of input and the clock moving on
//! interleaved at random. Checked:
//! - no panic, and no busy loop (after a timeout is handled, the next is later, or the
//!   connection has ended);
//! - what it holds never exceeds the message limit plus one read and a control frame;
//! - what it writes decodes as frames of the right role: the game's messages in order, at
//!   most one close frame with a code that may be sent (RFC 6455 §7.4) and nothing after it;
//! - the messages it delivers are what the reference decoder reads from the same bytes (a
//!   prefix when reading stopped early), and the outcome agrees with it: a fault closes with
//!   the fault's code, the other side's close is answered with its own code.
//!
//! Input: one byte of settings, the operations (`take_prefix`, two bytes each), the stream.

#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rust_websocket_core::fuzzing::{Decoder, Incoming, Output, Protocol};
use rust_websocket_fuzz::reference::{self, Ending, Item};
use rust_websocket_fuzz::{read_size, take_prefix};

/// A data frame's header and a whole control frame.
const SLACK: usize = 14 + 14 + 125;

struct Run<'a> {
    proto: Protocol,
    server: bool,
    max: usize,
    now: Instant,
    stream: &'a [u8],
    /// Bytes of `stream` read so far.
    at: usize,
    paused: bool,
    /// Every read since was followed by a drain to the end.
    drained: bool,
    /// Handed out by `poll_transmit`, not yet written.
    in_flight: Vec<u8>,
    /// Written.
    wire: Vec<u8>,
    delivered: Vec<(Vec<u8>, bool)>,
    /// The game's messages that `send` took.
    sent: Vec<(Vec<u8>, bool)>,
    sent_bytes: usize,
    game_closed: bool,
    /// The largest single read, for the bound on what is held.
    largest_read: usize,
}

impl Run<'_> {
    fn ended(&self) -> bool {
        self.proto.end().is_some()
    }

    /// Hands the game what was read (the task's `deliver`), up to `limit` outputs.
    fn drain(&mut self, limit: usize) {
        for _ in 0..limit {
            match self.proto.poll_output(self.now) {
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
                    let mut bound = self.max + SLACK;
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
        let n = self.proto.read(&self.stream[self.at..end]);
        assert!(n > 0);
        self.at += n;
        self.largest_read = self.largest_read.max(n);
        self.drained = false;
        let held = self.proto.buffered();
        assert!(held <= self.max + SLACK + self.largest_read, "{held} held");
        self.drain(usize::MAX);
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
}

fuzz_target!(|data: &[u8]| {
    let Some((&settings, rest)) = data.split_first() else {
        return;
    };
    let server = settings & 1 == 0;
    let max = [4, 125, 1000, 65535][usize::from(settings >> 1 & 3)];
    let heartbeat = [
        None,
        Some(Duration::from_millis(100)),
        Some(Duration::from_secs(1)),
        None,
    ][usize::from(settings >> 3 & 3)];
    let (ops, stream) = take_prefix(rest);
    let t0 = Instant::now();
    let mut run = Run {
        proto: Protocol::new(server, max, heartbeat, t0),
        server,
        max,
        now: t0,
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
        largest_read: 0,
    };
    let mut game_asked_close = false;
    for op in ops.chunks_exact(2) {
        if run.ended() {
            break;
        }
        let (kind, arg) = (op[0] % 10, op[1]);
        match kind {
            0 => run.read(read_size(arg)),
            1 if !run.paused => {
                // The game stops reading after `arg % 4` more outputs (backpressure).
                run.drain(usize::from(arg % 4));
                run.paused = true;
                run.proto.set_paused(true);
            }
            2 => {
                if run.paused {
                    run.paused = false;
                    run.proto.set_paused(false);
                    run.drain(usize::MAX);
                }
            }
            3 if run.sent_bytes < 1 << 18 => {
                let n = [0, 1, 125, 126, 1000, 65536][usize::from(arg % 6)];
                let text = arg & 0x80 != 0;
                let msg: Vec<u8> = (0..n)
                    .map(|i| b'a' + ((i + run.sent.len()) % 26) as u8)
                    .collect();
                if run.proto.send(&msg, text) {
                    run.sent_bytes += msg.len();
                    run.sent.push((msg, text));
                }
            }
            4 => run.transmit(),
            5 => run.written(),
            6 => {
                let ms = [0, 1, 50, 99, 100, 101, 1000, 2000, 10_000][usize::from(arg % 9)];
                run.advance(Duration::from_millis(ms));
            }
            7 => {
                game_asked_close = true;
                run.proto.ask_close(run.now, arg & 1 != 0);
            }
            8 => {
                game_asked_close = true;
                run.game_closed = true;
                let code = [1000, 1001, 1003, 1011, 1014, 3000, 4999][usize::from(arg % 7)];
                let reason = "é".repeat(usize::from(arg >> 3));
                run.proto.close(code, &reason, run.now);
            }
            9 => run.eof(),
            _ => {}
        }
    }
    // Then as the task goes on: reading what is left, writing, the clock, the end of input.
    if !run.ended() && run.paused {
        run.paused = false;
        run.proto.set_paused(false);
    }
    while !run.ended() && run.proto.wants_read() && run.at < run.stream.len() {
        run.read(usize::MAX);
    }
    for _ in 0..8 {
        if run.ended() {
            break;
        }
        run.written();
        run.transmit();
        run.written();
        run.eof();
        run.advance(Duration::from_secs(2));
    }
    // What was made and not written yet counts as sent for the checks below.
    run.wire.append(&mut run.in_flight);
    run.proto.poll_transmit(&mut run.wire);

    let our_close = check_wire(&run);
    check_inbound(&run, game_asked_close, our_close);
});

/// What we wrote decodes (as the other side reads it) into the game's messages in order, and
/// at most one close frame, with a code that may be sent, after which nothing. Returns that
/// frame's code (`Some(None)`: one without a code).
fn check_wire(run: &Run) -> Option<Option<u16>> {
    let mut peer = Decoder::new(usize::MAX, !run.server);
    let mut at = 0;
    let mut frames = Vec::new();
    while at < run.wire.len() {
        at += peer.read(&run.wire[at..]);
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
    assert_eq!(data, run.sent, "the game's messages on the wire");
    closed
}

/// The messages delivered against the reference decoder's reading of the bytes read.
fn check_inbound(run: &Run, game_asked_close: bool, our_close: Option<Option<u16>>) {
    let (items, ending) = reference::decode(&run.stream[..run.at], run.max, run.server);
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
        want.starts_with(&run.delivered),
        "delivered {:?}, reference {:?}",
        run.delivered.len(),
        want.len()
    );
    if !run.drained {
        return; // Reading stopped with input left undecoded (paused when it ended).
    }
    assert_eq!(run.delivered.len(), want.len(), "messages delivered");
    match (close, ending) {
        (Some(theirs), _) => {
            assert!(run.proto.close_received());
            if !game_asked_close {
                let echo = theirs.map(|(code, _)| code);
                assert_eq!(our_close, Some(echo), "our answer to their close");
            }
        }
        (None, Ending::Fault(code)) => {
            assert!(run.proto.failure().is_some(), "fault {code} not seen");
            if !run.game_closed {
                assert_eq!(our_close, Some(Some(code)), "the close for a fault");
            }
        }
        (None, Ending::Incomplete) => {
            assert!(run.proto.failure().is_none());
            assert!(!run.proto.close_received());
        }
    }
}
