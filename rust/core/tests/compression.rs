//! permessage-deflate between our own server and client on 127.0.0.1 (third-party peers are in
//! the Godot suite's `compression` and `browser_compressed` tests): agreed when both have it
//! on, plain when one side does not, and a burst mixing short messages (sent as they are, by
//! the direct path when it finds the queue empty) with long ones (compressed by the task)
//! arrives whole and in order.

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
