//! The client against our server and against raw servers written here: connecting, the
//! outbound limit, a closed port, frames that arrive with the 101, hostile frames (the right
//! close code, nothing reaches the game), and a server that never reads.

use std::time::{Duration, Instant};

use rust_websocket_core::config::PeerConfig;
use rust_websocket_core::connection::{ReadyState, SendError};
use rust_websocket_core::events::Event;
use rust_websocket_core::Bytes;
use tokio::io::AsyncReadExt;

mod common;
use common::{connect_client, connected, next_event, start_plain as start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_connects_to_server_and_reports_failure() {
    let (server, srx, port) = start(PeerConfig::default());
    let (client, crx) = connect_client(&format!("ws://127.0.0.1:{port}/x?y=1"));
    let (crx2, srx2) = (crx.clone(), srx.clone());
    let ((cconn, my_id), (sconn, their_id)) =
        tokio::task::spawn_blocking(move || (connected(&crx2), connected(&srx2)))
            .await
            .unwrap();
    assert_eq!(my_id, their_id);
    assert_eq!(cconn.id(), 1);
    assert_eq!(
        sconn.info().requested_url,
        format!("ws://127.0.0.1:{port}/x?y=1")
    );
    // Outbound limit: a full queue says Full instead of dropping.
    let big = Bytes::from(vec![7u8; 40_000]);
    assert_eq!(cconn.send(big.clone(), false), Ok(()));
    let mut refused = 0;
    for _ in 0..100 {
        if cconn.send(big.clone(), false) == Err(SendError::Full) {
            refused += 1;
        }
    }
    assert!(refused > 0, "65535-byte outbound limit never reported Full");
    client.close();
    server.close();

    // A closed port: ConnectFailed, never a hang.
    let (_client, crx) = connect_client(&format!("ws://127.0.0.1:{port}"));
    let reason = next_event(&crx, |e| match e {
        Event::ConnectFailed { reason } => Some(reason),
        _ => None,
    })
    .await;
    assert!(reason.contains("could not connect"), "{reason}");
}

/// A raw server for one client: answers the upgrade with a 101 followed, in the same write,
/// by `after_101`, then returns everything the client sent until it closed the TCP connection
/// (at most 5 s) or, if not `reads`, holds the socket 30 s without reading.
async fn raw_server(after_101: Vec<u8>, reads: bool) -> (u16, tokio::task::JoinHandle<Vec<u8>>) {
    use tokio::io::AsyncWriteExt;
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut chunk = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut chunk).await.unwrap();
            head.extend_from_slice(&chunk[..n]);
        }
        let head = String::from_utf8_lossy(&head).to_string();
        let key = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-key"))
            .expect("no key")
            .1
            .trim();
        let mut out = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            derive_accept_key(key.as_bytes())
        )
        .into_bytes();
        out.extend_from_slice(&after_101);
        s.write_all(&out).await.unwrap();
        if !reads {
            tokio::time::sleep(Duration::from_secs(30)).await;
            return Vec::new();
        }
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
        answer
    });
    (port, server)
}

/// What a client reports until its connection ends, as text (a panic on a failed connect).
async fn client_events(port: u16) -> Vec<String> {
    let (client, crx) = connect_client(&format!("ws://127.0.0.1:{port}/"));
    let events = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        loop {
            match crx.recv_timeout(Duration::from_secs(5)).expect("events") {
                Event::Connected { id, .. } => seen.push(format!("connected {id}")),
                Event::Packet(p) => seen.push(format!("packet {:?}", p.data())),
                Event::CloseRequest { code, reason, .. } => {
                    seen.push(format!("close {code} {reason}"))
                }
                Event::Error { message } => seen.push(format!("error {message}")),
                Event::Disconnected { .. } => return seen,
                Event::ConnectFailed { reason } => panic!("{reason}"),
                _ => {}
            }
        }
    })
    .await
    .unwrap();
    drop(client);
    events
}

/// The payloads of the masked frames a client wrote, unmasked: (opcode, payload).
fn client_frames(mut wire: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while wire.len() >= 6 {
        assert_eq!(wire[1] & 0x80, 0x80, "an unmasked frame from the client");
        let (len, hlen) = match wire[1] & 0x7f {
            126 => (u16::from_be_bytes([wire[2], wire[3]]) as usize, 4),
            127 => panic!("a client frame of 64 KiB or more"),
            n => (n as usize, 2),
        };
        let mask = [wire[hlen], wire[hlen + 1], wire[hlen + 2], wire[hlen + 3]];
        let body = &wire[hlen + 4..hlen + 4 + len];
        let payload = body
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        frames.push((wire[0] & 0x0f, payload));
        wire = &wire[hlen + 4 + len..];
    }
    assert!(wire.is_empty(), "a partial frame: {wire:?}");
    frames
}

/// A server that sends its 101, the id, a message, a close frame and one more message in a
/// single write: the client gets the id and the first message (the fence kept them away from
/// tungstenite's handshake), answers the close, and drops what followed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reads_frames_sent_with_the_101_and_nothing_after_a_close() {
    let mut reply = vec![0x82, 4, 42, 0, 0, 0]; // Our id: 42.
    reply.extend_from_slice(b"\x81\x06before");
    reply.extend_from_slice(b"\x88\x05\x03\xe8bye"); // Close 1000 "bye".
    reply.extend_from_slice(b"\x82\x05after");
    let (port, server) = raw_server(reply, true).await;
    let events = client_events(port).await;
    assert_eq!(
        events,
        [
            "connected 42".to_string(),
            format!("packet {:?}", b"before"),
            "close 1000 bye".to_string()
        ]
    );
    // The client answers the close with the same code and reason, masked.
    let answer = server.await.unwrap();
    assert_eq!(answer.len(), 2 + 4 + 5, "{answer:?}");
    assert_eq!(client_frames(&answer), [(8, b"\x03\xe8bye".to_vec())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_server_gets_the_right_close_code_and_nothing_reaches_the_game() {
    let cases: [(&str, Vec<u8>, u16); 7] = [
        (
            "masked frame",
            vec![0x82, 0x84, 1, 2, 3, 4, 9, 9, 9, 9],
            1002,
        ),
        ("reserved opcode", vec![0x83, 0x00], 1002),
        ("rsv1 without an extension", vec![0xc2, 0x01, 7], 1002),
        ("fragmented ping", vec![0x09, 0x00], 1002),
        ("invalid UTF-8", vec![0x81, 0x02, 0xc3, 0x28], 1007),
        (
            "2^63 bytes",
            vec![0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0],
            1009,
        ),
        (
            "over inbound_buffer_size",
            vec![0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0],
            1009,
        ),
    ];
    for (what, frame, code) in cases {
        let mut reply = vec![0x82, 4, 42, 0, 0, 0];
        reply.extend_from_slice(&frame);
        let (port, server) = raw_server(reply, true).await;
        let events = client_events(port).await;
        assert_eq!(events.len(), 2, "{what}: {events:?}");
        assert_eq!(events[0], "connected 42", "{what}");
        assert!(events[1].starts_with("error "), "{what}: {events:?}");
        let frames = client_frames(&server.await.unwrap());
        assert_eq!(frames.len(), 1, "{what}: {frames:?}");
        assert_eq!(frames[0].0, 8, "{what}: not a close frame");
        assert_eq!(
            u16::from_be_bytes([frames[0].1[0], frames[0].1[1]]),
            code,
            "{what}: close {:?}",
            String::from_utf8_lossy(&frames[0].1[2..])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_reads_fills_the_queue_and_nothing_more() {
    let (port, server) = raw_server(vec![0x82, 4, 42, 0, 0, 0], false).await;
    let (client, crx) = connect_client(&format!("ws://127.0.0.1:{port}/"));
    let (conn, _) = tokio::task::spawn_blocking(move || connected(&crx))
        .await
        .unwrap();
    let payload = Bytes::from(vec![7u8; 16 * 1024]);
    let (mut accepted, mut refused_in_a_row) = (0usize, 0usize);
    let end = Instant::now() + Duration::from_secs(10);
    // Until sending has been refused for half a second straight: the socket is full.
    while refused_in_a_row < 50 && Instant::now() < end {
        match conn.send(payload.clone(), false) {
            Ok(()) => {
                accepted += payload.len();
                refused_in_a_row = 0;
            }
            Err(e) => {
                assert!(matches!(e, SendError::Full), "{e:?}");
                refused_in_a_row += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    assert_eq!(refused_in_a_row, 50, "sending never stayed refused");
    // What was accepted is queued (within outbound_buffer_size) or in the kernel's buffers.
    assert!(
        conn.outbound_buffered() <= 65535,
        "{}",
        conn.outbound_buffered()
    );
    assert!(
        accepted < 64 << 20,
        "{accepted} bytes accepted by a server that never reads"
    );
    assert_eq!(conn.ready_state(), ReadyState::Open);
    drop(client);
    server.abort();
}
