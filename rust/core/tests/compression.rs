//! permessage-deflate between our own server and client on 127.0.0.1 (third-party peers are in
//! the Godot suite's `compression` and `browser_compressed` tests): agreed when both have it
//! on, plain when one side does not, and a burst mixing short messages (sent as they are, by
//! the direct path when it finds the queue empty) with long ones (compressed by the task)
//! arrives whole and in order; a `Sec-WebSocket-Extensions` line that is not ASCII fails
//! our client's handshake and gets plain frames from our server.

mod common;

use std::time::Duration;

use crossbeam_channel::Receiver;
use rust_websocket_core::client::Client;
use rust_websocket_core::config::{Compression, PeerConfig};
use rust_websocket_core::connection::Connection;
use rust_websocket_core::events::Event;
use rust_websocket_core::url::WsUrl;
use rust_websocket_core::Bytes;

use common::connected;

fn config(compression: bool) -> PeerConfig {
    PeerConfig {
        inbound_buffer_size: 1 << 20,
        outbound_buffer_size: 1 << 20,
        compression: compression.then_some(Compression {
            threshold: 100,
            ..Compression::default()
        }),
        ..PeerConfig::default()
    }
}

fn client(port: u16, config: PeerConfig) -> (Client, Receiver<Event>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let url = WsUrl::parse(&format!("ws://127.0.0.1:{port}/")).unwrap();
    (Client::connect(&common::rt(), url, config, tx, None), rx)
}

/// Short (16 B) and long (5000 B, compressible) packets, each starting with its number.
fn packets() -> Vec<Bytes> {
    (0..2000u32)
        .map(|i| {
            let len = if i % 3 == 0 { 5000 } else { 16 };
            let mut v: Vec<u8> = (0..len).map(|j| (j % 50) as u8).collect();
            v[..4].copy_from_slice(&i.to_le_bytes());
            Bytes::from(v)
        })
        .collect()
}

/// Sends from a plain thread as the game does, with pauses and a direct-write budget as
/// `poll()` gives, so that some short packets find the queue empty and go direct.
fn send_all(conn: &Connection, packets: &[Bytes]) {
    for (i, p) in packets.iter().enumerate() {
        if i % 10 == 0 {
            std::thread::sleep(Duration::from_micros(300));
            rust_websocket_core::connection::refill_direct_budget();
        }
        common::send_retrying(conn, p);
    }
}

fn receive_all(rx: &Receiver<Event>, want: &[Bytes]) {
    for (i, want) in want.iter().enumerate() {
        let got = loop {
            match rx.recv_timeout(Duration::from_secs(10)).expect("a packet") {
                Event::Packet(p) => break p,
                Event::Error { message } => panic!("#{i}: {message}"),
                _ => {}
            }
        };
        assert!(got.data() == &want[..], "#{i}: {} bytes", got.data().len());
    }
}

#[test]
fn a_mixed_burst_arrives_whole_and_in_order_both_ways() {
    let (server, srx, port) = common::start_plain(config(true));
    let (client, crx) = client(port, config(true));
    let (to_server, _) = connected(&crx);
    let (to_client, _) = connected(&srx);
    for conn in [&to_server, &to_client] {
        assert_eq!(conn.info().extensions, "permessage-deflate");
    }
    let sent = packets();
    for (from, to_rx) in [(&to_server, &srx), (&to_client, &crx)] {
        let (from, all) = (from.clone(), sent.clone());
        let sender = std::thread::spawn(move || send_all(&from, &all));
        receive_all(to_rx, &sent);
        sender.join().unwrap();
    }
    // The long packets went out compressed: far fewer bytes on the wire than in the packets.
    for conn in [&to_server, &to_client] {
        let s = conn.stats();
        assert!(s.wire_bytes_out * 4 < s.bytes_out, "{s:?}");
        assert!(s.wire_bytes_in * 4 < s.bytes_in, "{s:?}");
    }
    client.close();
    server.close();
}

/// Random (incompressible) long packets among compressible long ones and short ones: the
/// compressor skips the random ones, which then may go out by the direct path, sent as they
/// are between compressed messages of one context; all arrive whole and in order, and the
/// random bytes cross the wire about as they are.
#[test]
fn incompressible_packets_among_compressible_ones_arrive_whole_and_in_order() {
    let (server, srx, port) = common::start_plain(config(true));
    let (client, crx) = client(port, config(true));
    let (to_server, _) = connected(&crx);
    let (to_client, _) = connected(&srx);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let sent: Vec<Bytes> = (0..3000u32)
        .map(|i| {
            // Runs of random packets, then compressible ones, then short ones.
            let mut v: Vec<u8> = match i % 100 {
                0..60 => (0..5000)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect(),
                60..80 => (0..5000).map(|j| (j % 50) as u8).collect(),
                _ => vec![1; 16],
            };
            v[..4].copy_from_slice(&i.to_le_bytes());
            Bytes::from(v)
        })
        .collect();
    for (from, to_rx) in [(&to_server, &srx), (&to_client, &crx)] {
        let (from, all) = (from.clone(), sent.clone());
        let sender = std::thread::spawn(move || send_all(&from, &all));
        receive_all(to_rx, &sent);
        sender.join().unwrap();
    }
    for conn in [&to_server, &to_client] {
        let s = conn.stats();
        // 60% of the packets (nearly all of the bytes) are random: they were not made larger,
        // and the compressible fifth shrank.
        assert!(s.wire_bytes_out < s.bytes_out, "{s:?}");
        assert!(s.wire_bytes_out * 10 > s.bytes_out * 7, "{s:?}");
    }
    client.close();
    server.close();
}

#[test]
fn one_side_without_compression_means_plain_frames() {
    for (server_on, client_on) in [(true, false), (false, true)] {
        let (server, srx, port) = common::start_plain(config(server_on));
        let (client, crx) = client(port, config(client_on));
        let (to_server, _) = connected(&crx);
        let (to_client, _) = connected(&srx);
        let big = Bytes::from(vec![7u8; 50_000]);
        to_server.send(big.clone(), false).unwrap();
        receive_all(&srx, std::slice::from_ref(&big));
        for conn in [&to_server, &to_client] {
            assert_eq!(conn.info().extensions, "");
        }
        let s = to_client.stats();
        assert_eq!(s.wire_bytes_in, s.bytes_in);
        client.close();
        server.close();
    }
}

/// Reads a request head from `s` (until its empty line), as text with bytes over 0x7f lossy.
fn read_head(s: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).expect("a head"), 1, "closed in the head");
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A server whose answer carries bytes over 0x7f in `Sec-WebSocket-Extensions` (not a header
/// value, RFC 9110 section 5.5; never a valid permessage-deflate answer): our client, having
/// offered compression, fails the handshake and says why, instead of dropping that line and
/// failing later with 1002 at the server's first compressed frame. The same with the bytes
/// on a second line after a valid answer.
#[test]
fn a_server_answer_that_is_not_ascii_fails_the_handshake() {
    use std::io::Write;
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    let answers: [&[u8]; 2] = [
        b"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=\xe9\r\n",
        b"Sec-WebSocket-Extensions: permessage-deflate\r\n\
          Sec-WebSocket-Extensions: permessage-deflate\xc3\xa9\r\n",
    ];
    for answer in answers {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let sent = answer.to_vec();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let head = read_head(&mut s);
            let key = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-key"))
                .expect("a key")
                .1
                .trim();
            let mut out = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
                derive_accept_key(key.as_bytes())
            )
            .into_bytes();
            out.extend_from_slice(&sent);
            out.extend_from_slice(b"\r\n");
            // The id (42), then a compressed "hi" (RFC 7692 section 7.2.3.1's example).
            out.extend_from_slice(&[0x82, 4, 42, 0, 0, 0]);
            out.extend_from_slice(&[0xc1, 0x05, 0xf2, 0x48, 0xcd, 0xc9, 0xc9]);
            let _ = s.write_all(&out);
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = std::io::Read::read_to_end(&mut s, &mut Vec::new());
            head
        });
        let (_client, crx) = client(port, config(true));
        let reason = loop {
            match crx.recv_timeout(Duration::from_secs(5)).expect("an event") {
                Event::ConnectFailed { reason } => break reason,
                Event::Connected { .. } => {
                    panic!("connected with {:?}", answer.escape_ascii().to_string())
                }
                _ => {}
            }
        };
        assert!(
            reason.contains("Sec-WebSocket-Extensions") && reason.contains("not visible ASCII"),
            "{reason}"
        );
        assert!(server.join().unwrap().contains("permessage-deflate"));
    }
}

/// A client's offer with bytes over 0x7f is malformed, as one with a bad token is: our
/// server answers 101 without `Sec-WebSocket-Extensions` (plain frames) and does not take
/// compression from the other lines either.
#[test]
fn a_client_offer_that_is_not_ascii_gets_plain_frames() {
    use std::io::{Read, Write};
    let (server, srx, port) = common::start_plain(config(true));
    let offers: [&[u8]; 2] = [
        b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=\xe9\r\n",
        b"Sec-WebSocket-Extensions: permessage-deflate\xc3\xa9\r\n\
          Sec-WebSocket-Extensions: permessage-deflate\r\n",
    ];
    for offer in offers {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
            Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            .to_vec();
        request.extend_from_slice(offer);
        request.extend_from_slice(b"\r\n");
        s.write_all(&request).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let head = read_head(&mut s).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 101"), "{head}");
        assert!(!head.contains("sec-websocket-extensions"), "{head}");
        // The id message follows, a plain frame.
        let mut id = [0u8; 6];
        s.read_exact(&mut id).unwrap();
        assert_eq!(id[..2], [0x82, 4]);
        let (conn, _) = connected(&srx);
        assert_eq!(conn.info().extensions, "");
    }
    server.close();
}
