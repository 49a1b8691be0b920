//! The frame reader (protocol::decode) as the server (masked frames) or the client, with a
//! random message limit, fed a byte stream in reads of random sizes through the connection
//! task's read plan. It must decode exactly what the reference decoder decodes from the whole
//! stream (the same messages and control frames, the same fault and close code), deliver
//! only what the rules allow, and never hold more than the limit plus one frame's header and
//! one control frame.
//!
//! Input: one byte of settings, then the read sizes (`take_prefix`), then the stream.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rust_websocket_core::fuzzing::{Decoder, Incoming};
use rust_websocket_fuzz::reference::{self, Ending, Item};
use rust_websocket_fuzz::{take_prefix, Splits};

/// A data frame's header (14 bytes at most) and a whole control frame (14 + 125).
const SLACK: usize = 14 + 14 + 125;

fuzz_target!(|data: &[u8]| {
    let Some((&settings, rest)) = data.split_first() else {
        return;
    };
    let server = settings & 1 == 0;
    let max = [0, 1, 4, 125, 126, 1000, 65535, 1 << 20][usize::from(settings >> 1 & 7)];
    let (sizes, stream) = take_prefix(rest);
    let mut splits = Splits::new(sizes);

    let mut decoder = Decoder::new(max, server);
    let mut items = Vec::new();
    let mut at = 0;
    let ending = 'read: loop {
        loop {
            match decoder.parse() {
                Ok(Some(item)) => items.push(check(item, max)),
                Ok(None) => break,
                Err(e) => {
                    assert!(matches!(e.code, 1002 | 1007 | 1009), "{e:?}");
                    break 'read Ending::Fault(e.code);
                }
            }
        }
        let held = decoder.buffered();
        assert!(held <= max + SLACK, "{held} bytes held, limit {max}");
        if at == stream.len() {
            break Ending::Incomplete;
        }
        let end = stream.len().min(at.saturating_add(splits.next_max()));
        let n = decoder.read(&stream[at..end]);
        assert!(n > 0);
        at += n;
    };
    let (want_items, want_ending) = reference::decode(&stream[..at], max, server);
    assert_eq!(items, want_items);
    assert_eq!(ending, want_ending);
});

fn check(item: Incoming, max: usize) -> Item {
    match item {
        Incoming::Data { data, text } => {
            assert!(data.len() <= max);
            if text {
                assert!(std::str::from_utf8(&data).is_ok());
            }
            Item::Data {
                data: data.to_vec(),
                text,
            }
        }
        Incoming::Ping(p) => {
            assert!(p.len() <= 125);
            Item::Ping(p.to_vec())
        }
        Incoming::Pong(p) => {
            assert!(p.len() <= 125);
            Item::Pong(p.to_vec())
        }
        Incoming::Close(c) => {
            if let Some((code, reason)) = &c {
                assert!(reference::sendable(*code));
                assert!(reason.len() <= 123);
            }
            Item::Close(c)
        }
    }
}
