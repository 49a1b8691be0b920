//! The server's side of the upgrade on a plain stream (server::handshake without TLS and
//! without a handshake handler): the bounded head read (http::read_head, MAX_HEAD), the parse,
//! the upgrade checks, X-Forwarded-For behind trusted proxies (proxy.rs), then tungstenite's
//! 101 behind the head fence (fence.rs). The request arrives in reads of random sizes.
//! Checked: no panic or hang; a refusal is one well-formed bodiless HTTP answer (400, 426 or
//! 431); an accepted request is a GET over HTTP/1.1 within MAX_HEAD whose client address is
//! the TCP peer or one written in X-Forwarded-For (its port the peer's or one written in
//! X-Forwarded-Port); after a 101, the frame reader gets exactly
//! the bytes that followed the head, none lost to tungstenite, none twice.
//!
//! Input: one byte of settings, the read sizes (`take_prefix`), the bytes the client sends.

#![no_main]

use std::net::{IpAddr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use rust_websocket_core::fuzzing::{request_head_len, server_handshake, MAX_HEAD};
use rust_websocket_core::proxy::TrustedProxy;
use rust_websocket_fuzz::{take_prefix, Splits};

fuzz_target!(|data: &[u8]| {
    let Some((&settings, rest)) = data.split_first() else {
        return;
    };
    let (sizes, input) = take_prefix(rest);
    let remote: SocketAddr = if settings & 1 == 0 {
        "127.0.0.1:5000".parse().unwrap()
    } else {
        "[::ffff:10.1.2.3]:5000".parse().unwrap()
    };
    let trusted = match settings >> 1 & 3 {
        0 => vec![],
        1 => vec!["127.0.0.1"],
        2 => vec!["10.0.0.0/8", "127.0.0.0/8", "fd00::/8"],
        _ => vec!["0.0.0.0/0", "::/0"],
    };
    let trusted: Vec<TrustedProxy> = trusted
        .iter()
        .map(|t| TrustedProxy::parse(t).unwrap())
        .collect();
    let protocols: Vec<String> = match settings >> 3 & 1 {
        0 => vec![],
        _ => vec!["chat".into(), "godot".into()],
    };

    let mut splits = Splits::new(sizes);
    let mut reads = Vec::new();
    let mut at = 0;
    while at < input.len() {
        let end = input.len().min(at.saturating_add(splits.next_max()));
        reads.push(input[at..end].to_vec());
        at = end;
    }
    let got = server_handshake(reads, remote, trusted, protocols);

    let Some(request) = got.request else {
        if !got.written.is_empty() {
            let text = String::from_utf8(got.written).expect("an ASCII answer");
            assert!(
                ["400", "426", "431"]
                    .iter()
                    .any(|s| text.starts_with(&format!("HTTP/1.1 {s} "))),
                "{text:?}"
            );
            assert!(
                text.ends_with("Content-Length: 0\r\nConnection: close\r\n\r\n"),
                "{text:?}"
            );
            assert_eq!(text.matches("\r\n\r\n").count(), 1, "{text:?}");
        }
        return;
    };
    let head_len = request_head_len(input).expect("an accepted request has a whole head");
    assert!(head_len <= MAX_HEAD);
    assert_eq!(request.method, "GET");
    assert_eq!(request.version, 1);
    if request.remote.ip() == remote.ip() {
        assert_eq!(request.remote.port(), remote.port());
    } else {
        // A client written in X-Forwarded-For: its port is the peer's, or one written in
        // X-Forwarded-Port (issue 15).
        let port = request.remote.port();
        assert!(
            port == remote.port()
                || request
                    .header_values("x-forwarded-port")
                    .flat_map(|v| v.split(','))
                    .any(|p| p.trim().parse::<u16>() == Ok(port)),
            "port {port} is neither the peer's nor in X-Forwarded-Port"
        );
    }
    if request.remote != remote {
        let said: Vec<IpAddr> = request
            .header_values("x-forwarded-for")
            .flat_map(|v| v.split(','))
            .filter_map(|h| {
                h.trim()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse()
                    .ok()
            })
            .collect();
        let ip = request.remote.ip();
        assert!(
            said.iter().any(|s| *s == ip || s.to_canonical() == ip),
            "client {ip} not in X-Forwarded-For {said:?}"
        );
    }
    if let Some((_protocol, _url, rest)) = got.upgraded {
        assert!(got.written.starts_with(b"HTTP/1.1 101 "));
        assert_eq!(rest, &input[head_len..], "the bytes after the head");
    }
});
