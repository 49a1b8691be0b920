//! One connection's protocol state machine (protocol::Protocol) as the connection task drives
//! it, fed a random byte stream in reads of random sizes, with the game's sends and closes,
//! pauses for backpressure, writes that complete late, end of input and the clock moving on
//! interleaved at random. Checked:
//! - no panic, and no busy loop (after a timeout is handled, the next is later, or the
//!   connection has ended);
//! - what it holds never exceeds the message limit plus one read and a control frame;
//! - what a read or an output allocates (the heap's peak during the call, counted by the
//!   fuzz crate's allocator, `fuzz/src/heap.rs`) stays within twice what the limits let it
//!   hold (the read, the message, the frames waiting to go out) plus 256 KiB of fixed state;
//! - what it writes decodes as frames of the right role: the game's messages in order, at
//!   most one close frame with a code that may be sent (RFC 6455 §7.4) and nothing after it;
//! - the messages it delivers are what the reference decoder reads from the same bytes (a
//!   prefix when reading stopped early), and the outcome agrees with it: a fault closes with
//!   the fault's code, the other side's close is answered with its own code.
//!
//! Input: one byte of settings, the operations (`take_prefix`, two bytes each), the stream.
//! The session and its checks are in `fuzz/src/session.rs`, shared with `deflate`.

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rust_websocket_fuzz::session::Session;
use rust_websocket_fuzz::take_prefix;

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
    let mut session = Session::new(server, max, heartbeat, None, stream);
    session.play(ops);
    session.check();
});
