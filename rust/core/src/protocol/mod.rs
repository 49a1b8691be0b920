//! The rules of one WebSocket connection after the upgrade, as a state machine with no I/O, no
//! clock and no tokio, in the spirit of quinn-proto: bytes in; messages, frames and a timer
//! deadline out. The connection task ([`crate::driver`]) feeds it what it reads and what the
//! game sends, writes the bytes it hands out, and calls it back at its deadline; the unit tests
//! feed it byte slices and instants.
//!
//! The rules: pings answered (bounded under a flood), the heartbeat's verdicts, the closing
//! handshake begun by either side or both at once and how long to linger in it, what is
//! delivered around a close, and a failure's close: its code by cause, then the write side
//! shut and input discarded, so the peer reads the close frame instead of a reset
//! (RFC 6455 §7.1.1).

pub(crate) mod decode;
pub(crate) mod deflate;
pub(crate) mod extension;
mod heartbeat;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::frame::{self, Masker};
use crate::Bytes;
use decode::{Decoder, FrameError, Incoming};
use deflate::Deflater;
use heartbeat::{Heartbeat, Tick};

/// Pongs made and not yet handed out before further pings are answered by one pong for the
/// latest (RFC 6455 §5.5.3 allows it), so a peer flooding pings and reading nothing cannot
/// grow our output without bound.
const MAX_PENDING_PONGS: usize = 64;
/// A compression buffer larger than this is given back after the message.
const DEFLATE_KEEP: usize = 16 * 1024;

/// How long each step of the closing handshake may take.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeouts {
    /// Once our close frame is out (or the input ended while one was queued): how long the
    /// other side has to answer or close.
    pub linger: Duration,
    /// How long the game's close may wait behind queued data the peer does not read.
    pub flush_limit: Duration,
    /// How long a client that has the server's close frame waits for the server to close
    /// the TCP connection (RFC 6455 §7.1.1: the server closes first).
    pub peer_close_grace: Duration,
}

pub(crate) const TIMEOUTS: Timeouts = Timeouts {
    linger: Duration::from_secs(2),
    flush_limit: Duration::from_secs(10),
    peer_close_grace: Duration::from_millis(100),
};

/// What the game or the connection's handle learns.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Output {
    /// A whole message.
    Message { data: Bytes, text: bool },
    /// The other side began the closing handshake with this code (1005: none given); our
    /// answer, the same code and reason, is queued.
    CloseRequested { code: i32, reason: String },
    /// The connection's close code and reason: those of the first close frame received, or
    /// of ours once written.
    CloseStatus { code: i32, reason: String },
    /// Our heartbeat ping was answered after this many µs.
    Rtt(u64),
}

/// How the connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// The closing handshake is done, the input ended, the linger passed, or the heartbeat
    /// found the peer dead.
    Closed,
    /// The other side broke the protocol or a limit (the reason is reported to the game).
    Failed(String),
}

/// Where our close frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OurClose {
    None,
    /// In `out`, not handed to the task yet.
    Made,
    /// Handed to the task, being written.
    HandedOut,
    Written,
}

pub(crate) struct Protocol {
    server: bool,
    decoder: Decoder,
    /// A client masks its frames (RFC 6455 §5.3).
    masker: Option<Masker>,
    /// permessage-deflate was agreed: messages from the threshold up are compressed.
    deflater: Option<Deflater>,
    /// One message compressed, before it is framed.
    deflated: Vec<u8>,
    /// Payload bytes of the game's messages framed since [`Self::take_wire_out`], compressed
    /// where they were.
    wire_out: usize,
    timeouts: Timeouts,
    /// Frames not handed to the task yet, in the order they were made.
    out: Vec<u8>,
    pongs_in_out: usize,
    /// The latest ping of a flood, answered when `out` is next handed out.
    latest_ping: Option<Bytes>,
    outputs: VecDeque<Output>,
    heartbeat: Option<Duration>,
    next_beat: Option<Instant>,
    beat: Heartbeat,
    /// Reading is paused for backpressure now, or was at some point since the last tick: a
    /// pong may be unread in our own socket, so a missing one proves nothing.
    paused: bool,
    paused_since_tick: bool,
    /// Heartbeat tokens are µs since this instant.
    epoch: Instant,
    /// The game asked to close; its frame follows what it queued before.
    close_asked: bool,
    our_close: OurClose,
    our_close_status: Option<(u16, String)>,
    close_status_known: bool,
    close_received: bool,
    input_done: bool,
    /// A client with the server's close frame stops reading at this instant.
    input_deadline: Option<Instant>,
    /// The connection ends at this instant, whatever is left (the closing handshake's bound).
    deadline: Option<Instant>,
    failure: Option<String>,
    end: Option<End>,
}

impl Protocol {
    /// A connection just upgraded. `decoder` may hold bytes read already.
    pub(crate) fn new(
        decoder: Decoder,
        heartbeat: Option<Duration>,
        timeouts: Timeouts,
        now: Instant,
    ) -> Self {
        let server = decoder.is_server();
        Protocol {
            server,
            decoder,
            masker: (!server).then(Masker::new),
            deflater: None,
            deflated: Vec::new(),
            wire_out: 0,
            timeouts,
            out: Vec::new(),
            pongs_in_out: 0,
            latest_ping: None,
            outputs: VecDeque::new(),
            heartbeat,
            next_beat: heartbeat.map(|every| now + every),
            beat: Heartbeat::default(),
            paused: false,
            paused_since_tick: false,
            epoch: now,
            close_asked: false,
            our_close: OurClose::None,
            our_close_status: None,
            close_status_known: false,
            close_received: false,
            input_done: false,
            input_deadline: None,
            deadline: None,
            failure: None,
            end: None,
        }
    }

    /// permessage-deflate was agreed: messages the game sends are compressed with `deflater`
    /// (the decoder inflates those received).
    pub(crate) fn deflate_with(&mut self, deflater: Deflater) {
        self.deflater = Some(deflater);
    }

    /// Where the task reads to (see [`Decoder::read_plan`]).
    pub(crate) fn decoder(&mut self) -> &mut Decoder {
        &mut self.decoder
    }

    /// The decoder, to look at (the fuzz targets check what it holds).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn decoder_ref(&self) -> &Decoder {
        &self.decoder
    }

    /// Whether the task should read from the socket.
    pub(crate) fn wants_read(&self) -> bool {
        !self.input_done && self.end.is_none()
    }

    /// Reading is paused (the game holds too much of this peer's input) or resumed.
    pub(crate) fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
        self.paused_since_tick |= paused;
    }

    /// The next thing for the game, decoding what was read as needed. The task calls it only
    /// while the game has room: what stays undecoded waits in the socket's buffers.
    pub(crate) fn poll_output(&mut self, now: Instant) -> Option<Output> {
        loop {
            if let Some(output) = self.outputs.pop_front() {
                return Some(output);
            }
            if self.failure.is_some() {
                // After a failure, input is read only to be dropped.
                self.decoder.discard();
                return None;
            }
            if self.input_done {
                return None;
            }
            match self.decoder.parse() {
                Ok(None) => return None,
                Ok(Some(incoming)) => self.on_incoming(incoming, now),
                Err(e) => self.fail(e, now),
            }
        }
    }

    fn on_incoming(&mut self, incoming: Incoming, now: Instant) {
        match incoming {
            // Nothing may follow a close frame (RFC 6455 §5.5.1): what does is dropped.
            Incoming::Data { .. } | Incoming::Ping(_) | Incoming::Close(_)
                if self.close_received => {}
            Incoming::Data { data, text } => self.outputs.push_back(Output::Message { data, text }),
            Incoming::Ping(payload) => {
                if self.our_close != OurClose::None {
                    return; // Nothing goes out after our close frame.
                }
                if self.pongs_in_out < MAX_PENDING_PONGS {
                    self.pongs_in_out += 1;
                    self.encode(frame::OP_PONG, &payload);
                } else {
                    self.latest_ping = Some(payload);
                }
            }
            Incoming::Pong(payload) => {
                // Only the answer to our outstanding ping counts.
                let now_us = self.micros(now);
                if let Some(rtt) = self.beat.pong(&payload, now_us) {
                    self.outputs.push_back(Output::Rtt(rtt));
                }
            }
            Incoming::Close(frame) => {
                self.close_received = true;
                let (code, reason) = frame.unwrap_or((1005, String::new()));
                self.record_status(code as i32, &reason);
                if !self.close_asked && self.our_close == OurClose::None {
                    // The other side began it: answer with the same code and reason.
                    self.make_close(code, &reason);
                    self.outputs.push_back(Output::CloseRequested {
                        code: code as i32,
                        reason,
                    });
                }
                if self.server {
                    // The server closes the TCP connection first, once its answer is out.
                    self.input_ended(now);
                } else {
                    // A client gives the server a moment to do so.
                    self.input_deadline = Some(now + self.timeouts.peer_close_grace);
                }
            }
        }
    }

    /// The other side broke the protocol or a limit: close with the code for the cause.
    fn fail(&mut self, e: FrameError, now: Instant) {
        let (code, reason) = e.close();
        self.failure = Some(e.to_string());
        self.decoder.discard();
        if self.our_close == OurClose::None {
            self.make_close(code, reason);
        }
        self.bound(now + self.timeouts.linger);
    }

    /// The input ended: end of stream, a read error, or a server that has the close frame.
    pub(crate) fn input_ended(&mut self, now: Instant) {
        self.input_done = true;
        self.input_deadline = None;
        if self.close_asked || self.our_close != OurClose::None {
            self.bound(now + self.timeouts.linger);
        }
        self.check_end();
    }

    /// A message from the game. `false`: the connection is closing and it is dropped.
    pub(crate) fn send(&mut self, data: &[u8], text: bool) -> bool {
        if self.our_close != OurClose::None || self.end.is_some() {
            return false;
        }
        let op = if text {
            frame::OP_TEXT
        } else {
            frame::OP_BINARY
        };
        let compress = self.deflater.as_mut().map(|d| d.wants(data));
        match self.deflater.as_mut() {
            Some(deflater) if compress == Some(true) => {
                deflater.compress(data, &mut self.deflated);
                self.wire_out += self.deflated.len();
                let op = op | frame::RSV1;
                frame::encode(&mut self.out, op, &self.deflated, self.masker.as_mut());
                self.deflated.clear();
                if self.deflated.capacity() > DEFLATE_KEEP {
                    self.deflated = Vec::new();
                }
            }
            _ => {
                self.wire_out += data.len();
                self.encode(op, data);
            }
        }
        true
    }

    /// Payload bytes of the game's messages framed since the last call, as on the wire.
    pub(crate) fn take_wire_out(&mut self) -> usize {
        std::mem::take(&mut self.wire_out)
    }

    /// The game asked to close; its close frame will come through [`Self::close`] after the
    /// messages it queued before. From now the connection ends within the flush limit (within
    /// the linger when `hurry`: a peer dropped for being too slow gets no long wait).
    pub(crate) fn ask_close(&mut self, now: Instant, hurry: bool) {
        self.close_asked = true;
        let bound = if hurry {
            self.timeouts.linger
        } else {
            self.timeouts.flush_limit
        };
        self.bound(now + bound);
    }

    /// The game's close frame, after everything it sent before.
    pub(crate) fn close(&mut self, code: u16, reason: &str, now: Instant) {
        if !self.close_asked {
            self.ask_close(now, false);
        }
        if self.our_close == OurClose::None && self.end.is_none() {
            self.make_close(code, reason);
        }
    }

    fn make_close(&mut self, code: u16, reason: &str) {
        self.encode(frame::OP_CLOSE, &frame::close_payload(code, reason));
        self.our_close = OurClose::Made;
        self.our_close_status = Some((code, reason.to_owned()));
    }

    fn encode(&mut self, opcode: u8, payload: &[u8]) {
        frame::encode(&mut self.out, opcode, payload, self.masker.as_mut());
    }

    /// Bytes made and not handed out yet.
    pub(crate) fn pending(&self) -> usize {
        self.out.len()
    }

    /// Hands the frames made so far to the task, appended to `buf`, in order.
    pub(crate) fn poll_transmit(&mut self, buf: &mut Vec<u8>) {
        if let Some(ping) = self.latest_ping.take() {
            if self.our_close == OurClose::None {
                self.encode(frame::OP_PONG, &ping);
            }
        }
        self.pongs_in_out = 0;
        if buf.is_empty() {
            std::mem::swap(buf, &mut self.out);
        } else {
            buf.append(&mut self.out);
        }
        if self.our_close == OurClose::Made {
            self.our_close = OurClose::HandedOut;
        }
    }

    /// Everything handed out has been written. `true`: shut the write side down now (after a
    /// failure's close frame, so the peer reads it, then our FIN).
    pub(crate) fn on_written(&mut self, now: Instant) -> bool {
        if self.our_close != OurClose::HandedOut {
            return false;
        }
        self.our_close = OurClose::Written;
        if let Some((code, reason)) = self.our_close_status.take() {
            self.record_status(code as i32, &reason);
        }
        // The other side now has its linger to answer, whatever bound was set before.
        self.deadline = Some(now + self.timeouts.linger);
        self.check_end();
        self.failure.is_some()
    }

    /// When [`Self::handle_timeout`] must next be called.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let beat = self.next_beat.filter(|_| !self.closing());
        [self.deadline, self.input_deadline, beat]
            .into_iter()
            .flatten()
            .min()
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.deadline.is_some_and(|d| d <= now) {
            self.finish();
            return;
        }
        if self.input_deadline.is_some_and(|d| d <= now) {
            self.input_ended(now);
        }
        if self.closing() {
            return;
        }
        let (Some(every), Some(at)) = (self.heartbeat, self.next_beat) else {
            return;
        };
        if at > now {
            return;
        }
        self.next_beat = Some(now + every);
        let blind = self.paused || std::mem::take(&mut self.paused_since_tick);
        let now_us = self.micros(now);
        match self.beat.tick(now_us, blind) {
            Tick::Ping(token) => self.encode(frame::OP_PING, &token.to_le_bytes()),
            // The peer, or the path to it, is dead: no close frame would get through.
            Tick::Dead => self.finish(),
            Tick::Wait => {}
        }
    }

    /// Whether the closing handshake has begun, from either side.
    pub(crate) fn closing(&self) -> bool {
        self.close_asked || self.our_close != OurClose::None || self.close_received
    }

    /// Whether the other side's close frame arrived (a clean close, whoever began it).
    pub(crate) fn close_received(&self) -> bool {
        self.close_received
    }

    /// The failure that ended (or is ending) the connection, for the report.
    pub(crate) fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// How it ended, once it has.
    pub(crate) fn end(&self) -> Option<&End> {
        self.end.as_ref()
    }

    /// Ends the connection now, whatever is left.
    fn finish(&mut self) {
        if self.end.is_none() {
            self.end = Some(match &self.failure {
                Some(reason) => End::Failed(reason.clone()),
                None => End::Closed,
            });
        }
    }

    /// The input is over, and no close frame of ours is on its way: nothing is left to do.
    fn check_end(&mut self) {
        let close_pending = match self.our_close {
            OurClose::None => self.close_asked,
            OurClose::Written => false,
            OurClose::Made | OurClose::HandedOut => true,
        };
        if self.input_done && !close_pending {
            self.finish();
        }
    }

    /// The connection ends at `at` at the latest (an earlier bound stays).
    fn bound(&mut self, at: Instant) {
        self.deadline = Some(self.deadline.map_or(at, |d| d.min(at)));
    }

    fn record_status(&mut self, code: i32, reason: &str) {
        if !self.close_status_known {
            self.close_status_known = true;
            self.outputs.push_back(Output::CloseStatus {
                code,
                reason: reason.to_owned(),
            });
        }
    }

    fn micros(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.epoch).as_micros() as u64).max(1)
    }
}
