//! The client's side of the upgrade (client::upgrade, after TCP and TLS): the request, the
//! server's answer read behind the head fence (fence.rs) and checked by tungstenite (101,
//! Sec-WebSocket-Accept), the sub-protocol, then Godot's id message read by our frame reader
//! from whatever followed the head. The answer arrives in reads of random sizes; the marker
//! `@ACCEPT@` in it stands for the accept key that matches the request's random key.
//! Checked: no panic or hang; success only after a 101 with the id message (an id of 2 or
//! more) when the Godot protocol is on, with a sub-protocol when one was asked for, and
//! with every `Sec-WebSocket-Extensions` line of the head visible ASCII (compression
//! offered or not: a line the client cannot read is refused, never skipped).
//!
//! Input: one byte of settings, the read sizes (`take_prefix`), the bytes the server sends.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rust_websocket_core::fuzzing::{client_handshake, Compression};
use rust_websocket_fuzz::{take_prefix, Splits};

fuzz_target!(|data: &[u8]| {
    let Some((&settings, rest)) = data.split_first() else {
        return;
    };
    let (sizes, input) = take_prefix(rest);
    let godot = settings & 1 == 0;
    let protocols: Vec<String> = match settings >> 1 & 1 {
        0 => vec![],
        _ => vec!["chat".into(), "godot".into()],
    };
    let url = if settings >> 2 & 1 == 0 {
        "ws://127.0.0.1:9080/game?x=1"
    } else {
        "wss://[::1]/"
    };

    let mut splits = Splits::new(sizes);
    let mut reads = Vec::new();
    let mut at = 0;
    while at < input.len() {
        let end = input.len().min(at.saturating_add(splits.next_max()));
        reads.push(input[at..end].to_vec());
        at = end;
    }
    let compression = (settings >> 3 & 1 == 1).then(Compression::default);
    let got =
        client_handshake(url, reads, protocols.clone(), godot, compression).expect("a valid URL");
    assert!(
        got.written.starts_with(b"GET /"),
        "{:?}",
        String::from_utf8_lossy(&got.written)
    );
    if let Ok((protocol, id)) = got.result {
        // Empty lines before the status line are skipped, as httparse skips them.
        let at = input
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')
            .unwrap_or(input.len());
        let input = &input[at..];
        assert!(
            input.starts_with(b"HTTP/1.") && input.windows(4).any(|w| w == b" 101"),
            "accepted without a 101"
        );
        assert!(id >= 2);
        assert!(extension_lines_readable(input), "an extension line skipped");
        if !protocols.is_empty() {
            assert!(protocols.contains(&protocol), "protocol {protocol:?}");
        }
    }
});

/// Every `Sec-WebSocket-Extensions` line in the head (up to its first empty line, CRLF or
/// bare LF) is a header value the client reads as text: tab, space and visible ASCII.
fn extension_lines_readable(input: &[u8]) -> bool {
    const NAME: &[u8] = b"sec-websocket-extensions:";
    input
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter(|l| l.len() >= NAME.len() && l[..NAME.len()].eq_ignore_ascii_case(NAME))
        .all(|l| {
            l[NAME.len()..]
                .iter()
                .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        })
}
