//! Transport ceiling: one-way WebSocket throughput on 127.0.0.1 with tokio-tungstenite alone,
//! configured as the addon configures it (1 runtime worker on a 2-core machine, 8 KiB read
//! chunk, 64 KiB write batch, TCP_NODELAY), two processes like the Godot workload.
//!
//!   ceiling recv PORT WARMUP_S DURATION_S [plain|channel]   prints READY, then one JSON line
//!   ceiling send PORT SIZE [plain|channel]                   sends until the receiver leaves
//!
//! `plain`: the receiving task counts the messages itself; the sending task feeds clones of
//! one payload and flushes per batch. No Godot, no queues: what the socket path can do.
//! `channel`: the addon's architecture without Godot. Receive: the reading task forwards each
//! message over a crossbeam channel to a spinning "main thread" that counts them (as poll() +
//! get_packet would). Send: a "main thread" copies each packet into a new buffer, pushes it on
//! a crossbeam channel and wakes the writing task with a `Notify` (as put_packet does, with
//! the same 4096-packet / 64 KiB... limits raised like the Godot run's), and the writing task
//! feeds everything queued and flushes once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Message};

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(64 * 1024)
        .max_message_size(Some(8 << 20))
        .max_frame_size(Some(8 << 20))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

struct Counter {
    warmup: Duration,
    duration: Duration,
    first: Option<Instant>,
    start: Option<Instant>,
    n: u64,
    b: u64,
    n0: u64,
    b0: u64,
}

impl Counter {
    fn new(warmup: f64, duration: f64) -> Self {
        Counter {
            warmup: Duration::from_secs_f64(warmup),
            duration: Duration::from_secs_f64(duration),
            first: None,
            start: None,
            n: 0,
            b: 0,
            n0: 0,
            b0: 0,
        }
    }

    /// Counts one message; returns true once the window is over (and prints the result).
    fn add(&mut self, len: usize, mode: &str) -> bool {
        self.n += 1;
        self.b += len as u64;
        if self.n & 63 != 0 {
            return false;
        }
        self.check(mode)
    }

    fn check(&mut self, mode: &str) -> bool {
        let now = Instant::now();
        let first = *self.first.get_or_insert(now);
        match self.start {
            None => {
                if now - first >= self.warmup {
                    self.start = Some(now);
                    self.n0 = self.n;
                    self.b0 = self.b;
                }
                false
            }
            Some(start) if now - start >= self.duration => {
                let secs = (now - start).as_secs_f64();
                let (n, b) = (self.n - self.n0, self.b - self.b0);
                println!(
                    "{{\"mode\":\"{mode}\",\"packets\":{n},\"bytes\":{b},\"seconds\":{secs},\"pps\":{},\"mbps\":{}}}",
                    n as f64 / secs,
                    b as f64 / secs / 1e6
                );
                true
            }
            Some(_) => false,
        }
    }
}

fn recv(port: u16, warmup: f64, duration: f64, mode: &str) {
    let rt = runtime();
    let mode = mode.to_string();
    rt.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        println!("READY");
        let (stream, _) = listener.accept().await.expect("accept");
        stream.set_nodelay(true).ok();
        let ws = tokio_tungstenite::accept_async_with_config(stream, Some(ws_config()))
            .await
            .expect("handshake");
        let (_sink, mut stream) = ws.split();
        let mut counter = Counter::new(warmup, duration);
        if mode == "plain" {
            while let Some(Ok(msg)) = stream.next().await {
                if let Message::Binary(data) = msg {
                    if counter.add(data.len(), &mode) {
                        std::process::exit(0);
                    }
                }
            }
        } else {
            let (tx, rx) = crossbeam_channel::unbounded::<Bytes>();
            let main = std::thread::spawn(move || loop {
                // One "poll()": take what is queued now, then hand each packet over.
                let pending = rx.len();
                for data in rx.try_iter().take(pending) {
                    counter.n += 1;
                    counter.b += data.len() as u64;
                }
                if counter.check("channel") {
                    std::process::exit(0);
                }
                if pending == 0 {
                    std::hint::spin_loop();
                }
            });
            while let Some(Ok(msg)) = stream.next().await {
                if let Message::Binary(data) = msg {
                    if tx.send(data).is_err() {
                        break;
                    }
                }
            }
            let _ = main.join();
        }
        eprintln!("receiver: stream ended before the window was over");
        std::process::exit(1);
    });
}

fn send(port: u16, size: usize, mode: &str) {
    let rt = runtime();
    let payload = Bytes::from((0..size).map(|i| i as u8).collect::<Vec<u8>>());
    let ws = rt.block_on(async move {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        stream.set_nodelay(true).ok();
        let url = format!("ws://127.0.0.1:{port}/");
        let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config()))
            .await
            .expect("handshake");
        ws
    });
    if mode == "plain" {
        rt.block_on(async move {
            let (mut sink, _stream) = ws.split();
            let batch = (64 * 1024 / size).max(1);
            loop {
                for _ in 0..batch {
                    if sink.feed(Message::Binary(payload.clone())).await.is_err() {
                        return;
                    }
                }
                if sink.flush().await.is_err() {
                    return;
                }
            }
        });
        return;
    }
    // channel: the addon's put_packet path.
    let (tx, rx) = crossbeam_channel::unbounded::<Bytes>();
    let queued = Arc::new(AtomicUsize::new(0));
    let wake = Arc::new(Notify::new());
    let (q, w) = (queued.clone(), wake.clone());
    let writer = rt.spawn(async move {
        let (mut sink, _stream) = ws.split();
        loop {
            let mut count = 0;
            let mut bytes = 0;
            while let Ok(data) = rx.try_recv() {
                bytes += data.len();
                count += 1;
                if sink.feed(Message::Binary(data)).await.is_err() {
                    return;
                }
                if bytes >= 256 * 1024 {
                    break;
                }
            }
            if count > 0 {
                if sink.flush().await.is_err() {
                    return;
                }
                q.fetch_sub(count, Ordering::AcqRel);
            }
            if rx.is_empty() {
                w.notified().await;
            }
        }
    });
    let limit = 131072usize.min((8 << 20) / size).max(1);
    while !writer.is_finished() {
        if queued.load(Ordering::Acquire) >= limit {
            std::thread::yield_now();
            continue;
        }
        let data = Bytes::copy_from_slice(&payload);
        queued.fetch_add(1, Ordering::AcqRel);
        if tx.send(data).is_err() {
            break;
        }
        wake.notify_one();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: ceiling recv PORT WARMUP DURATION [plain|channel] | ceiling send PORT SIZE [plain|channel]";
    match args.get(1).map(String::as_str) {
        Some("recv") if args.len() >= 5 => recv(
            args[2].parse().expect("port"),
            args[3].parse().expect("warmup"),
            args[4].parse().expect("duration"),
            args.get(5).map_or("plain", String::as_str),
        ),
        Some("send") if args.len() >= 4 => send(
            args[2].parse().expect("port"),
            args[3].parse().expect("size"),
            args.get(4).map_or("plain", String::as_str),
        ),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}
