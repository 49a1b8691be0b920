//! The PROXY protocol header a TCP load balancer sends before anything else
//! (proxy_protocol::parse, v1 text and v2 binary). Checked: no panic; an accepted header is
//! version 1 or 2, no longer than the input nor than its version's bound, parses the same from
//! its own bytes alone, and is not accepted from any shorter prefix (the server reads exactly
//! the header and leaves what follows to the HTTP upgrade); whatever is accepted, or incomplete
//! after its first byte, looks like a header to the server's first check.
//!
//! Input: the first bytes of a connection.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rust_websocket_core::proxy_protocol::{looks_like_header, parse, ProxyError, V1_MAX, V2_MAX};

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(header) => {
            assert!(header.version == 1 || header.version == 2, "{header:?}");
            assert!(header.len <= data.len(), "{header:?}");
            let bound = if header.version == 1 { V1_MAX } else { V2_MAX };
            assert!(header.len <= bound, "{header:?}");
            assert_eq!(parse(&data[..header.len]), Ok(header));
            for cut in [header.len - 1, header.len / 2] {
                assert!(
                    matches!(parse(&data[..cut]), Err(ProxyError::Incomplete)),
                    "accepted or refused from {cut} of {} bytes",
                    header.len
                );
            }
            assert!(looks_like_header(data));
        }
        // Nothing read yet is a prefix of every header, and of everything else.
        Err(ProxyError::Incomplete) => assert!(data.is_empty() || looks_like_header(data)),
        Err(_) => {}
    }
});
