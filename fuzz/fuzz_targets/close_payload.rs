//! Close frame payloads: ours (frame::close_payload: the code, then the reason cut to 123
//! bytes on a character boundary) and the other side's (read as the decoder reads them).
//! Checked: what we make for any code we may send and any reason is read back as the same
//! code and the reason's longest prefix that fits; any payload read as valid makes the same
//! bytes again when we send it back (our answer echoes it), and an invalid one is refused
//! with 1002 or 1007.
//!
//! Input: two bytes of code, then the reason (any bytes; made UTF-8 for our side).

#![no_main]

use libfuzzer_sys::fuzz_target;
use rust_websocket_core::fuzzing::{close_payload, parse_close};
use rust_websocket_fuzz::reference;

fuzz_target!(|data: &[u8]| {
    // The other side's payload, as it came.
    match parse_close(data) {
        Ok(None) => assert!(data.is_empty()),
        Ok(Some((code, reason))) => {
            assert!(reference::sendable(code));
            if data.len() <= 125 {
                assert_eq!(close_payload(code, &reason), data, "the echo differs");
            }
        }
        Err(e) => assert!(matches!(e.code, 1002 | 1007), "{e:?}"),
    }
    // Ours.
    if data.len() < 2 {
        return;
    }
    let code = u16::from_be_bytes([data[0], data[1]]);
    if !reference::sendable(code) {
        return;
    }
    let reason = String::from_utf8_lossy(&data[2..]);
    let payload = close_payload(code, &reason);
    assert!(payload.len() <= 125);
    let (back, back_reason) = parse_close(&payload)
        .expect("ours parse")
        .expect("with a code");
    assert_eq!(back, code);
    assert!(reason.starts_with(&back_reason));
    assert!(back_reason.len() >= 120 || back_reason.len() == reason.len());
});
