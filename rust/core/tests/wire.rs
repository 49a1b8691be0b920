//! The core against real tokio-tungstenite peers on 127.0.0.1 (no Godot involved).

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use futures_util::{SinkExt, StreamExt};
use rwsmp_core::client::Client;
use rwsmp_core::config::PeerConfig;
use rwsmp_core::connection::{ReadyState, SendError};
use rwsmp_core::events::Event;
use rwsmp_core::server::{BindAddress, Server};
use rwsmp_core::url::WsUrl;
use rwsmp_core::Bytes;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::{connected, next_event, rt, wait_for};

fn start(config: PeerConfig) -> (Server, Receiver<Event>, u16) {
    common::start(None, config)
}

async fn raw_client(
    port: u16,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/"))
        .await
        .expect("connect");
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greeting_packets_and_close_code() {
    let (server, rx, port) = start(PeerConfig::default());
    let mut ws = raw_client(port).await;
    // First message: our id, 4 bytes little-endian, >= 2.
    let first = ws.next().await.unwrap().unwrap();
    let Message::Binary(id_bytes) = first else {
        panic!("expected binary id, got {first:?}")
    };
    assert_eq!(id_bytes.len(), 4);
    let id = i32::from_le_bytes(id_bytes[..].try_into().unwrap());
    assert!(id >= 2);

    let rx2 = rx.clone();
    let (conn, ev_id) = tokio::task::spawn_blocking(move || connected(&rx2))
        .await
        .unwrap();
    assert_eq!(ev_id, id);
    assert_eq!(conn.id(), id);
    assert_eq!(conn.info().remote.ip().to_string(), "127.0.0.1");
    assert_eq!(conn.info().requested_url, format!("ws://127.0.0.1:{port}/"));

    // Client -> server: binary, text and an empty message, in order.
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    ws.send(Message::text("hi")).await.unwrap();
    ws.send(Message::binary(Vec::<u8>::new())).await.unwrap();
    let rx2 = rx.clone();
    let got = tokio::task::spawn_blocking(move || {
        (0..3)
            .map(|_| {
                wait_for(&rx2, |e| match e {
                    Event::Packet(p) => Some((p.from(), p.data().to_vec(), p.was_text())),
                    _ => None,
                })
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(
        got,
        vec![
            (id, vec![1, 2, 3], false),
            (id, b"hi".to_vec(), true),
            (id, vec![], false)
        ]
    );

    // Server -> client, then a close whose code and reason the client sees.
    conn.send(Bytes::from_static(b"pong"), false).unwrap();
    conn.close(4001, "bye");
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::binary(b"pong".to_vec())
    );
    match ws.next().await.unwrap().unwrap() {
        Message::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), 4001);
            assert_eq!(frame.reason.as_str(), "bye");
        }
        other => panic!("expected close, got {other:?}"),
    }
    drop(ws);
    let gone = next_event(&rx, |e| match e {
        Event::Disconnected { id } => Some(id),
        _ => None,
    })
    .await;
    assert_eq!(gone, id);
    assert_eq!(conn.ready_state(), ReadyState::Closed);
    assert_eq!(conn.close_code(), 4001);
    server.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_closes_with_1009() {
    let config = PeerConfig {
        inbound_buffer_size: 1000,
        ..PeerConfig::default()
    };
    let (server, _rx, port) = start(config);
    let mut ws = raw_client(port).await;
    ws.next().await.unwrap().unwrap(); // id
    ws.send(Message::binary(vec![0u8; 1001])).await.unwrap();
    let close = loop {
        match ws.next().await {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(u16::from(close.expect("close frame").code), 1009);
    server.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subprotocol_mismatch_is_refused_and_match_is_selected() {
    let config = PeerConfig {
        supported_protocols: vec!["game-v2".into(), "game-v1".into()],
        ..PeerConfig::default()
    };
    let (server, _rx, port) = start(config);
    let mut req = format!("ws://127.0.0.1:{port}/")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", "chat".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_err());
    // No protocol at all while the server requires one: refused too.
    assert!(
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/"))
            .await
            .is_err()
    );
    let mut req = format!("ws://127.0.0.1:{port}/")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "game-v1, game-v2".parse().unwrap(),
    );
    let (_ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("matching protocol");
    assert_eq!(resp.headers()["sec-websocket-protocol"], "game-v1");
    server.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_socket_dropped_at_handshake_timeout() {
    let config = PeerConfig {
        handshake_timeout: Duration::from_millis(500),
        ..PeerConfig::default()
    };
    let (server, rx, port) = start(config);
    let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let t0 = Instant::now();
    // Meanwhile a real client connects at once.
    let mut ws = raw_client(port).await;
    ws.next().await.unwrap().unwrap();
    assert!(t0.elapsed() < Duration::from_millis(400));
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(3), silent.read(&mut buf))
        .await
        .expect("not dropped");
    assert_eq!(n.unwrap_or(0), 0);
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_millis(1500),
        "{waited:?}"
    );
    drop(rx);
    server.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_connects_to_server_and_reports_failure() {
    let (server, srx, port) = start(PeerConfig::default());
    let (ctx, crx): (Sender<Event>, Receiver<Event>) = crossbeam_channel::unbounded();
    let client = Client::connect(
        &rt(),
        WsUrl::parse(&format!("ws://127.0.0.1:{port}/x?y=1")).unwrap(),
        PeerConfig::default(),
        ctx,
        None,
    );
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
    let (ctx, crx) = crossbeam_channel::unbounded();
    let _client = Client::connect(
        &rt(),
        WsUrl::parse(&format!("ws://127.0.0.1:{port}")).unwrap(),
        PeerConfig::default(),
        ctx,
        None,
    );
    let reason = next_event(&crx, |e| match e {
        Event::ConnectFailed { reason } => Some(reason),
        _ => None,
    })
    .await;
    assert!(reason.contains("could not connect"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_backpressure_loses_nothing() {
    let config = PeerConfig {
        max_queued_packets: 16,
        ..PeerConfig::default()
    };
    let (server, rx, port) = start(config);
    let mut ws = raw_client(port).await;
    ws.next().await.unwrap().unwrap();
    const N: u32 = 5000;
    let sender = tokio::spawn(async move {
        for i in 0..N {
            ws.feed(Message::binary(i.to_le_bytes().to_vec()))
                .await
                .unwrap();
        }
        ws.flush().await.unwrap();
        ws
    });
    let got = tokio::task::spawn_blocking(move || {
        connected(&rx);
        // The game holds packets: the reader must stop at max_queued_packets, not drop.
        std::thread::sleep(Duration::from_millis(300));
        let held = rx.len();
        let mut next = 0u32;
        while next < N {
            if let Event::Packet(p) = rx.recv_timeout(Duration::from_secs(5)).expect("packet") {
                assert_eq!(p.data(), next.to_le_bytes());
                next += 1;
            }
        }
        held
    })
    .await
    .unwrap();
    assert!(
        got <= 17,
        "reader kept reading while the game held {got} packets"
    );
    drop(sender.await.unwrap());
    server.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_bind_is_dual_stack() {
    let (tx, rx) = crossbeam_channel::unbounded();
    let server =
        Server::start(&rt(), 0, BindAddress::Any, PeerConfig::default(), tx, None).expect("bind *");
    let port = server.local_port();
    for url in [
        format!("ws://127.0.0.1:{port}/"),
        format!("ws://[::1]:{port}/"),
    ] {
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(
            matches!(ws.next().await, Some(Ok(Message::Binary(b))) if b.len() == 4),
            "{url}: no id"
        );
    }
    let rx2 = rx.clone();
    let hosts = tokio::task::spawn_blocking(move || {
        let a = connected(&rx2).0.info().remote.ip().to_string();
        let b = connected(&rx2).0.info().remote.ip().to_string();
        (a, b)
    })
    .await
    .unwrap();
    // IPv4 clients of the dual-stack socket are reported as plain IPv4, not ::ffff:127.0.0.1.
    assert_eq!(hosts, ("127.0.0.1".to_string(), "::1".to_string()));
    // A client given an IPv6 literal URL connects through our own connector too.
    let (ctx, crx) = crossbeam_channel::unbounded();
    let client = Client::connect(
        &rt(),
        WsUrl::parse(&format!("ws://[::1]:{port}")).unwrap(),
        PeerConfig::default(),
        ctx,
        None,
    );
    let id = tokio::task::spawn_blocking(move || connected(&crx).1)
        .await
        .unwrap();
    assert!(id >= 2);
    client.close();
    server.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_in_use_is_reported() {
    let (server, _rx, port) = start(PeerConfig::default());
    let (tx, _rx2) = crossbeam_channel::unbounded();
    let again = Server::start(
        &rt(),
        port,
        BindAddress::parse("127.0.0.1").unwrap(),
        PeerConfig::default(),
        tx,
        None,
    );
    assert!(matches!(
        again,
        Err(rwsmp_core::server::StartError::AddressInUse)
    ));
    // After close() returns the port is free again.
    server.close();
    let (tx, _rx3) = crossbeam_channel::unbounded();
    let reopened = Server::start(
        &rt(),
        port,
        BindAddress::parse("127.0.0.1").unwrap(),
        PeerConfig::default(),
        tx,
        None,
    );
    assert!(reopened.is_ok());
    reopened.unwrap().close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_size_message_does_not_stall_the_reader() {
    let (server, rx, port) = start(PeerConfig::default()); // inbound_buffer_size 65535
    let mut ws = raw_client(port).await;
    ws.next().await.unwrap().unwrap();
    ws.send(Message::binary(vec![1u8; 65535])).await.unwrap();
    ws.send(Message::binary(b"after".to_vec())).await.unwrap();
    let got = tokio::task::spawn_blocking(move || {
        let mut kept = Vec::new(); // The game keeps each payload, as Godot does until the next get_packet.
        for _ in 0..2 {
            let p = wait_for(&rx, |e| match e {
                Event::Packet(p) => Some(p),
                _ => None,
            });
            kept.push(p.take_data());
        }
        kept.iter().map(|b| b.len()).collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(got, vec![65535, 5]);
    server.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_started_by_either_side_ends_promptly() {
    // The client closes: our server must answer and drop TCP at once (RFC 6455 7.1.1).
    let (server, rx, port) = start(PeerConfig::default());
    let mut ws = raw_client(port).await;
    ws.next().await.unwrap().unwrap();
    let t0 = Instant::now();
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "server kept TCP open {:?}",
        t0.elapsed()
    );
    next_event(&rx, |e| {
        matches!(e, Event::Disconnected { .. }).then_some(())
    })
    .await;
    assert!(t0.elapsed() < Duration::from_millis(500));

    // The server closes: our client must report it at once.
    let (ctx, crx) = crossbeam_channel::unbounded();
    let client = Client::connect(
        &rt(),
        WsUrl::parse(&format!("ws://127.0.0.1:{port}")).unwrap(),
        PeerConfig::default(),
        ctx,
        None,
    );
    let (crx2, rx2) = (crx.clone(), rx.clone());
    let (sconn, _) = tokio::task::spawn_blocking(move || {
        connected(&crx2);
        connected(&rx2)
    })
    .await
    .unwrap();
    let t0 = Instant::now();
    sconn.close(1000, "");
    tokio::task::spawn_blocking(move || {
        wait_for(&crx, |e| {
            matches!(e, Event::Disconnected { id: 1 }).then_some(())
        })
    })
    .await
    .unwrap();
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "client noticed after {:?}",
        t0.elapsed()
    );
    client.close();
    server.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_drops_a_silent_peer_and_keeps_a_live_one() {
    let every = Duration::from_millis(200);
    let config = PeerConfig {
        heartbeat_interval: Some(every),
        ..PeerConfig::default()
    };
    let (server, rx, port) = start(config);
    // A live client: keeps reading, so tungstenite answers every ping.
    let mut live = raw_client(port).await;
    live.next().await.unwrap().unwrap();
    let (live_conn, live_id) = next_event(&rx, |e| match e {
        Event::Connected { conn, id } => Some((conn, id)),
        _ => None,
    })
    .await;
    let reader = tokio::spawn(async move { while let Some(Ok(_)) = live.next().await {} });
    // A dead client: handshake done, then it never reads again (as if frozen or cut off).
    let mut dead = raw_client(port).await;
    dead.next().await.unwrap().unwrap();
    let t0 = Instant::now();
    let gone = next_event(&rx, |e| match e {
        Event::Disconnected { id } => Some(id),
        _ => None,
    })
    .await;
    let waited = t0.elapsed();
    assert_ne!(gone, live_id, "the live peer was dropped");
    assert!(
        waited >= every && waited <= every * 3,
        "dead peer found after {waited:?}"
    );
    std::thread::sleep(every * 3);
    assert_eq!(live_conn.ready_state(), ReadyState::Open);
    let rtt = live_conn.rtt().expect("an RTT from answered pings");
    assert!(rtt < Duration::from_millis(100), "{rtt:?}");
    reader.abort();
    drop(dead);
    server.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_does_not_drop_a_peer_while_this_side_is_not_reading() {
    // The game stops taking packets for a while (a long frame, a level load). The reader then
    // pauses (backpressure) and cannot see the peer's pongs: that is no sign of a dead peer.
    let every = Duration::from_millis(150);
    let config = PeerConfig {
        heartbeat_interval: Some(every),
        max_queued_packets: 8,
        ..PeerConfig::default()
    };
    let (server, rx, port) = start(config);
    let mut ws = raw_client(port).await;
    ws.next().await.unwrap().unwrap();
    const N: u32 = 100;
    for i in 0..N {
        ws.feed(Message::binary(i.to_le_bytes().to_vec()))
            .await
            .unwrap();
    }
    ws.flush().await.unwrap();
    // The peer stays alive: it keeps reading, so tungstenite answers every ping.
    let reader = tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} });
    let (conn, packets, dropped) = tokio::task::spawn_blocking(move || {
        let (conn, _) = connected(&rx);
        std::thread::sleep(every * 7);
        let (mut packets, mut dropped) = (0u32, false);
        let end = Instant::now() + every * 4;
        while let Ok(e) = rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
            match e {
                Event::Packet(p) => {
                    assert_eq!(p.data(), packets.to_le_bytes());
                    packets += 1;
                }
                Event::Disconnected { .. } => dropped = true,
                _ => {}
            }
        }
        (conn, packets, dropped)
    })
    .await
    .unwrap();
    assert!(
        !dropped,
        "dropped after {packets} packets while the game held them"
    );
    assert_eq!(packets, N);
    assert_eq!(conn.ready_state(), ReadyState::Open);
    assert!(
        conn.rtt().is_some(),
        "no pong was seen after the reader resumed"
    );
    reader.abort();
    server.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    use rwsmp_core::proxy::TrustedProxy;
    for (trusted, expected) in [
        (vec!["127.0.0.1"], "203.0.113.7"),
        (vec![], "127.0.0.1"),
        (vec!["10.0.0.0/8"], "127.0.0.1"),
    ] {
        let config = PeerConfig {
            trusted_proxies: trusted
                .iter()
                .map(|t| TrustedProxy::parse(t).unwrap())
                .collect(),
            ..PeerConfig::default()
        };
        let (server, rx, port) = start(config);
        let mut req = format!("ws://127.0.0.1:{port}/")
            .into_client_request()
            .unwrap();
        req.headers_mut().insert(
            "x-forwarded-for",
            "198.51.100.1, 203.0.113.7".parse().unwrap(),
        );
        let (_ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("connect");
        let ip = next_event(&rx, |e| match e {
            Event::Connected { conn, .. } => Some(conn.info().remote.ip().to_string()),
            _ => None,
        })
        .await;
        assert_eq!(ip, expected, "trusted {trusted:?}");
        server.close();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_huge_headers_are_refused_at_once() {
    use tokio::io::AsyncWriteExt;
    let (server, _rx, port) = start(PeerConfig::default());
    async fn answer(port: u16, bytes: &[u8]) -> (String, Duration) {
        let t0 = Instant::now();
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let _ = s.write_all(bytes).await; // The server may close before all is written.
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        (String::from_utf8_lossy(&out).into_owned(), t0.elapsed())
    }
    let (garbage, took) = answer(port, b"\x16\x03\x01\x02\x00garbage that is not HTTP").await;
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage:?}");
    assert!(took < Duration::from_millis(500), "{took:?}");
    let mut huge = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    huge.extend(
        std::iter::repeat_n(
            b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
                .as_slice(),
            50,
        )
        .flatten(),
    );
    huge.extend(std::iter::repeat_n(b'a', 20_000));
    let (big, took) = answer(port, &huge).await;
    assert!(big.starts_with("HTTP/1.1 431"), "{big:?}");
    assert!(took < Duration::from_millis(500), "{took:?}");
    // The server still serves a real client.
    let mut ws = raw_client(port).await;
    assert!(matches!(ws.next().await, Some(Ok(Message::Binary(b))) if b.len() == 4));
    server.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_from_a_peer_that_does_not_read_gets_coalesced_pongs() {
    use tokio::io::AsyncWriteExt;
    let (server, _rx, port) = start(PeerConfig::default());
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(64 * 1024).unwrap(); // No autotuning: the pongs back up fast.
    let mut s = sock
        .connect(([127, 0, 0, 1], port).into())
        .await
        .expect("connect");
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    // The 101 head and the 6-byte id greeting.
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed during the handshake: {got:?}");
        got.extend_from_slice(&chunk[..n]);
        let end = got.windows(4).position(|w| w == b"\r\n\r\n");
        if end.is_some_and(|e| got.len() >= e + 4 + 6) {
            break;
        }
    }
    assert!(got.starts_with(b"HTTP/1.1 101"));
    // 200 000 pings of 125 bytes (26 MB of pongs if each got its own), sent without reading.
    const N: u32 = 200_000;
    let mut flood = Vec::with_capacity(N as usize * 131);
    for i in 0..N {
        flood.extend_from_slice(&[0x89, 0x80 | 125, 0, 0, 0, 0]); // Masked, with a zero key.
        flood.extend_from_slice(&i.to_be_bytes());
        flood.extend_from_slice(&[0; 121]);
    }
    s.write_all(&flood).await.unwrap();
    // Every pong echoes some ping; the last ping is answered; far fewer pongs than pings.
    let mut buf = got.split_off(got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4 + 6);
    let mut pongs = 0u32;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        while buf.len() < 127 {
            let n = tokio::time::timeout_at(deadline.into(), s.read(&mut chunk))
                .await
                .expect("the last ping was not answered in 20 s")
                .unwrap();
            assert!(n > 0, "closed after {pongs} pongs");
            buf.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(&buf[..2], &[0x8A, 125], "not a 125-byte pong");
        pongs += 1;
        let last = buf[2..6] == (N - 1).to_be_bytes();
        buf.drain(..127);
        if last {
            break;
        }
    }
    assert!(pongs < N / 2, "{pongs} pongs for {N} pings");
    server.close();
}

/// A server that sends its 101, the id, a message, a close frame and one more message in a
/// single write: the client gets the id and the first message (the fence kept them away from
/// tungstenite's handshake), answers the close, and drops what followed it.
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
    let (ctx, crx) = crossbeam_channel::unbounded();
    let client = Client::connect(
        &rt(),
        WsUrl::parse(&format!("ws://127.0.0.1:{port}/")).unwrap(),
        PeerConfig::default(),
        ctx,
        None,
    );
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
    let (ctx, crx) = crossbeam_channel::unbounded();
    let client = Client::connect(
        &rt(),
        WsUrl::parse(&format!("ws://127.0.0.1:{port}/")).unwrap(),
        PeerConfig::default(),
        ctx,
        None,
    );
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
