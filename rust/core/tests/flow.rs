//! Flow control: a game that does not read pauses the socket reader instead of losing packets,
//! and a peer that floods pings without reading gets coalesced pongs, not unbounded memory.

use std::time::{Duration, Instant};

use rust_websocket_core::config::PeerConfig;
use tokio::io::AsyncReadExt;

mod common;
use common::start_plain as start;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_backpressure_loses_nothing() {
    common::a_game_that_does_not_read_pauses_reading(PeerConfig::default()).await
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
