//! The server's side of the HTTP upgrade: sub-protocol choice, the handshake timeout, what a
//! trusted proxy's X-Forwarded-For changes, and requests that are not HTTP or too large.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rust_websocket_core::config::PeerConfig;
use rust_websocket_core::events::Event;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::{greeted_client, next_event, raw_client, start_plain as start};

/// An upgrade request for `ws://127.0.0.1:port/` with the header `name: value` added.
fn request_with(port: u16, name: &'static str, value: &str) -> Request {
    let mut req = format!("ws://127.0.0.1:{port}/")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(name, value.parse().unwrap());
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subprotocol_mismatch_is_refused_and_match_is_selected() {
    let config = PeerConfig {
        supported_protocols: vec!["game-v2".into(), "game-v1".into()],
        ..PeerConfig::default()
    };
    let (server, _rx, port) = start(config);
    let req = request_with(port, "sec-websocket-protocol", "chat");
    assert!(tokio_tungstenite::connect_async(req).await.is_err());
    // No protocol at all while the server requires one: refused too.
    assert!(
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/"))
            .await
            .is_err()
    );
    let req = request_with(port, "sec-websocket-protocol", "game-v1, game-v2");
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
    let _ws = greeted_client(port).await.0;
    assert!(t0.elapsed() < Duration::from_millis(400));
    common::expect_dropped_at_handshake_timeout(&mut silent, t0).await;
    drop(rx);
    server.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    use rust_websocket_core::proxy::TrustedProxy;
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
        let req = request_with(port, "x-forwarded-for", "198.51.100.1, 203.0.113.7");
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

/// Bytes sent, then everything the server answers until it closes.
async fn exchange(port: u16, bytes: &[u8]) -> String {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_header_names_the_client_from_trusted_proxies_only() {
    use rust_websocket_core::proxy::TrustedProxy;
    use tokio::io::AsyncWriteExt;
    let config = |trusted: &str| PeerConfig {
        trusted_proxies: vec![TrustedProxy::parse(trusted).unwrap()],
        proxy_protocol: true,
        ..PeerConfig::default()
    };
    let (server, rx, port) = start(config("127.0.0.1"));
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tcp.write_all(b"PROXY TCP4 203.0.113.7 127.0.0.1 51234 9080\r\n")
        .await
        .unwrap();
    let (_ws, _) = tokio_tungstenite::client_async(format!("ws://127.0.0.1:{port}/"), tcp)
        .await
        .expect("upgrade after the header");
    let remote = next_event(&rx, |e| match e {
        Event::Connected { conn, .. } => Some(conn.info().remote.to_string()),
        _ => None,
    })
    .await;
    assert_eq!(remote, "203.0.113.7:51234");
    // No header from a trusted proxy: closed, with a message, no answer.
    let plain = exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(plain, "");
    let why = common::next_error(&rx).await;
    assert!(why.contains("no PROXY protocol header"), "{why}");
    server.close();

    // A header from an address that is not trusted.
    let (server, rx, port) = start(config("10.0.0.1"));
    let answer = exchange(port, b"PROXY TCP4 203.0.113.7 127.0.0.1 51234 9080\r\n").await;
    assert_eq!(answer, "");
    let why = common::next_error(&rx).await;
    assert!(why.contains("not in trusted_proxies"), "{why}");
    // ... while a client without one is served.
    let (_ws, id) = greeted_client(port).await;
    assert!(id >= 2);
    server.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_path_answers_from_the_runtime() {
    let config = PeerConfig {
        health_path: Some("/healthz".into()),
        ..PeerConfig::default()
    };
    let (server, _rx, port) = start(config);
    let get = b"GET /healthz HTTP/1.0\r\n\r\n";
    let ok = exchange(port, get).await;
    assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok:?}");
    assert!(ok.ends_with("\r\n\r\nok\n"), "{ok:?}");
    let head = exchange(port, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(head.contains("Content-Length: 3\r\n") && head.ends_with("\r\n\r\n"));
    let other = exchange(port, b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(other.starts_with("HTTP/1.1 400"), "{other:?}");
    server.set_refusing(true);
    let refusing = exchange(port, get).await;
    assert!(refusing.starts_with("HTTP/1.1 503"), "{refusing:?}");
    let upgrade = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/")).await;
    assert!(upgrade.is_err(), "an upgrade while refusing");
    server.set_refusing(false);
    assert!(exchange(port, get).await.starts_with("HTTP/1.1 200"));
    let (_ws, id) = greeted_client(port).await;
    assert!(id >= 2);
    server.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_port_is_read_only_when_asked() {
    use rust_websocket_core::proxy::TrustedProxy;
    // AWS ALB and Traefik send the port the client reached them on: ignored by default.
    for (forwarded_port, client_port) in [(false, None), (true, Some(40123))] {
        let config = PeerConfig {
            trusted_proxies: vec![TrustedProxy::parse("127.0.0.1").unwrap()],
            forwarded_port,
            ..PeerConfig::default()
        };
        let (server, rx, port) = start(config);
        let mut req = request_with(port, "x-forwarded-for", "203.0.113.7");
        req.headers_mut()
            .insert("x-forwarded-port", "40123".parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("connect");
        let own = match ws.get_ref() {
            tokio_tungstenite::MaybeTlsStream::Plain(s) => s.local_addr().unwrap().port(),
            _ => unreachable!("a plain ws:// connection"),
        };
        let remote = next_event(&rx, |e| match e {
            Event::Connected { conn, .. } => Some(conn.info().remote),
            _ => None,
        })
        .await;
        assert_eq!(remote.ip().to_string(), "203.0.113.7");
        assert_eq!(
            remote.port(),
            client_port.unwrap_or(own),
            "forwarded_port {forwarded_port}"
        );
        server.close();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_allow_answers_only_the_addresses_listed() {
    use rust_websocket_core::proxy::TrustedProxy;
    let get = b"GET /healthz HTTP/1.0\r\n\r\n";
    for (allow, allowed) in [("10.0.0.0/8", false), ("127.0.0.1", true)] {
        let config = PeerConfig {
            health_path: Some("/healthz".into()),
            health_allow: vec![TrustedProxy::parse(allow).unwrap()],
            ..PeerConfig::default()
        };
        let (server, _rx, port) = start(config);
        let answer = exchange(port, get).await;
        let plain = exchange(port, b"GET /other HTTP/1.0\r\n\r\n").await;
        if allowed {
            assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer:?}");
        } else {
            // As if there were no health path: what any other plain request gets.
            assert_eq!(answer, plain, "allow {allow}");
            assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
        }
        server.close();
    }
}
