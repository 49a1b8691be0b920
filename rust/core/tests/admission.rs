//! Handshake-time admission decided by the "main thread" (here: the test's event loop).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rust_websocket_core::admission::Admission;
use rust_websocket_core::config::PeerConfig;
use rust_websocket_core::events::Event;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::start;

async fn http_get(port: u16, target: &str, extra: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let req = format!(
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("no answer")
        .unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn game_accepts_or_rejects_before_the_upgrade() {
    let config = PeerConfig {
        handshake_timeout: Duration::from_millis(600),
        ..PeerConfig::default()
    };
    let (server, rx, port) = start(None, config);
    server.set_admission(true);

    // The "main thread": accept token=good, reject anything else with 401; never answer /slow.
    let judge = {
        let rx = rx.clone();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut parked = Vec::new();
            while let Ok(ev) = rx.recv_timeout(Duration::from_millis(1500)) {
                if let Event::Admission { request, ticket } = ev {
                    seen.push((
                        request.path.clone(),
                        request.query.clone(),
                        request
                            .headers
                            .iter()
                            .any(|(k, v)| k == "authorization" && v == "Bearer t"),
                    ));
                    if request.path == "/slow" {
                        parked.push(ticket); // Never answered.
                    } else if request.query == "token=good" {
                        ticket.answer(Admission::Accept);
                    } else {
                        ticket.answer(Admission::Reject {
                            status: 401,
                            reason: "Unauthorized".into(),
                        });
                    }
                }
            }
            seen
        })
    };

    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/play?token=good"))
            .await
            .expect("accepted client");
    assert!(matches!(ws.next().await, Some(Ok(Message::Binary(b))) if b.len() == 4));

    let refused = http_get(port, "/play?token=bad", "Authorization: Bearer t\r\n").await;
    assert!(
        refused.starts_with("HTTP/1.1 401 Unauthorized"),
        "{refused}"
    );

    let t0 = Instant::now();
    let slow = http_get(port, "/slow", "").await;
    let waited = t0.elapsed();
    assert!(slow.is_empty(), "unanswered handshake got: {slow}");
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(2),
        "{waited:?}"
    );

    let seen = judge.join().unwrap();
    assert_eq!(
        seen,
        vec![
            ("/play".to_string(), "token=good".to_string(), false),
            ("/play".to_string(), "token=bad".to_string(), true),
            ("/slow".to_string(), String::new(), false),
        ]
    );
    drop(ws);
    server.close();
}
