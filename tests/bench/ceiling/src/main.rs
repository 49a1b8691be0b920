//! Transport ceiling: one-way WebSocket throughput on 127.0.0.1 with tokio-tungstenite alone,
//! configured as the addon configures it (1 runtime worker on a 2-core machine, 8 KiB read
//! chunk, 64 KiB write batch, TCP_NODELAY), two processes like the Godot workload.
//!
//!   ceiling recv PORT WARMUP_S DURATION_S [plain|channel [SLEEP_US]]   prints READY, then JSON
//!   ceiling send PORT SIZE [plain|channel [SLEEP_US]]       sends until the receiver leaves
//!   ceiling echo PORT [plain|channel]                        echoes every message back
//!   ceiling ping PORT WARM COUNT [plain|channel]             32 B round trips, one JSON line
//!
//! `plain`: the receiving task counts the messages itself; the sending task feeds clones of
//! one payload and flushes per batch. No Godot, no queues: what the socket path can do.
//! `channel`: the addon's architecture without Godot. Receive: the reading task forwards each
//! message over a crossbeam channel to a spinning "main thread" that counts them (as poll() +
//! get_packet would). Send: a "main thread" copies each packet into a new buffer, pushes it on
//! a crossbeam channel and wakes the writing task with a `Notify` (as put_packet does; queue
//! limits raised as in the Godot run), and the writing task feeds everything queued and
//! flushes once. SLEEP_US (default 0) is slept by the "main threads" whenever they have
//! nothing to do, like a Godot frame with `low_processor_usage_mode_sleep_usec`; 0 = spin.
//! `echo`/`ping`: the round-trip workload; in `channel` mode each side's "main thread" (spinning)
//! sees a message only through the reader task's channel and answers through the writer task,
//! which is the addon's path: four thread hand-offs per round trip instead of none.

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

/// A client of `ws://127.0.0.1:port/`, with TCP_NODELAY as the addon sets it.
async fn connect(port: u16) -> tokio_tungstenite::WebSocketStream<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream.set_nodelay(true).ok();
    let url = format!("ws://127.0.0.1:{port}/");
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config()))
        .await
        .expect("handshake");
    ws
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

fn nap(sleep_us: u64) {
    if sleep_us == 0 {
        std::hint::spin_loop();
    } else {
        std::thread::sleep(Duration::from_micros(sleep_us));
    }
}

fn recv(port: u16, warmup: f64, duration: f64, mode: &str, sleep_us: u64) {
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
                    nap(sleep_us);
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

fn send(port: u16, size: usize, mode: &str, sleep_us: u64) {
    let rt = runtime();
    let payload = Bytes::from((0..size).map(|i| i as u8).collect::<Vec<u8>>());
    let ws = rt.block_on(connect(port));
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
            nap(sleep_us);
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

/// Reader and writer tasks for one connection, as the addon has: received messages come out of
/// the returned receiver; messages pushed on the returned sender are written after a wake.
fn spawn_io(
    rt: &tokio::runtime::Runtime,
    ws: tokio_tungstenite::WebSocketStream<TcpStream>,
) -> (
    crossbeam_channel::Sender<Bytes>,
    Arc<Notify>,
    crossbeam_channel::Receiver<Bytes>,
) {
    let (in_tx, in_rx) = crossbeam_channel::unbounded::<Bytes>();
    let (out_tx, out_rx) = crossbeam_channel::unbounded::<Bytes>();
    let wake = Arc::new(Notify::new());
    let w = wake.clone();
    let (mut sink, mut stream) = ws.split();
    rt.spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            if let Message::Binary(data) = msg {
                if in_tx.send(data).is_err() {
                    break;
                }
            }
        }
        std::process::exit(0);
    });
    rt.spawn(async move {
        loop {
            let mut count = 0;
            while let Ok(data) = out_rx.try_recv() {
                count += 1;
                if sink.feed(Message::Binary(data)).await.is_err() {
                    return;
                }
            }
            if count > 0 && sink.flush().await.is_err() {
                return;
            }
            if out_rx.is_empty() {
                w.notified().await;
            }
        }
    });
    (out_tx, wake, in_rx)
}

fn echo(port: u16, mode: &str) {
    let rt = runtime();
    let ws = rt.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        println!("READY");
        let (stream, _) = listener.accept().await.expect("accept");
        stream.set_nodelay(true).ok();
        tokio_tungstenite::accept_async_with_config(stream, Some(ws_config()))
            .await
            .expect("handshake")
    });
    if mode == "plain" {
        rt.block_on(async move {
            let (mut sink, mut stream) = ws.split();
            while let Some(Ok(msg)) = stream.next().await {
                if msg.is_binary() && sink.send(msg).await.is_err() {
                    break;
                }
            }
        });
        return;
    }
    let (out, wake, input) = spawn_io(&rt, ws);
    loop {
        // The "main thread": poll, answer in the same frame.
        while let Ok(data) = input.try_recv() {
            let _ = out.send(data);
            wake.notify_one();
        }
        std::hint::spin_loop();
    }
}

fn ping(port: u16, warm: usize, count: usize, mode: &str) {
    let rt = runtime();
    let ws = rt.block_on(connect(port));
    let payload = Bytes::from(vec![0u8; 32]);
    let mut samples: Vec<u64> = Vec::with_capacity(count);
    if mode == "plain" {
        samples = rt.block_on(async move {
            let (mut sink, mut stream) = ws.split();
            for i in 0..warm + count {
                let t0 = Instant::now();
                sink.send(Message::Binary(payload.clone()))
                    .await
                    .expect("send");
                loop {
                    match stream.next().await {
                        Some(Ok(Message::Binary(_))) => break,
                        Some(Ok(_)) => continue,
                        _ => panic!("connection lost"),
                    }
                }
                if i >= warm {
                    samples.push(t0.elapsed().as_micros() as u64);
                }
            }
            samples
        });
    } else {
        let (out, wake, input) = spawn_io(&rt, ws);
        for i in 0..warm + count {
            let t0 = Instant::now();
            let _ = out.send(payload.clone());
            wake.notify_one();
            loop {
                if input.try_recv().is_ok() {
                    break;
                }
                std::hint::spin_loop();
            }
            if i >= warm {
                samples.push(t0.elapsed().as_micros() as u64);
            }
        }
    }
    samples.sort_unstable();
    let n = samples.len();
    println!(
        "{{\"mode\":\"{mode}\",\"n\":{n},\"p50_us\":{},\"p99_us\":{},\"max_us\":{}}}",
        samples[n / 2],
        samples[(n * 99 / 100).min(n - 1)],
        samples[n - 1]
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: ceiling recv PORT WARMUP DURATION [plain|channel [SLEEP_US]] | ceiling send PORT SIZE [plain|channel [SLEEP_US]] | ceiling echo PORT [plain|channel] | ceiling ping PORT WARM COUNT [plain|channel]";
    match args.get(1).map(String::as_str) {
        Some("recv") if args.len() >= 5 => recv(
            args[2].parse().expect("port"),
            args[3].parse().expect("warmup"),
            args[4].parse().expect("duration"),
            args.get(5).map_or("plain", String::as_str),
            args.get(6).map_or(0, |s| s.parse().expect("sleep_us")),
        ),
        Some("send") if args.len() >= 4 => send(
            args[2].parse().expect("port"),
            args[3].parse().expect("size"),
            args.get(4).map_or("plain", String::as_str),
            args.get(5).map_or(0, |s| s.parse().expect("sleep_us")),
        ),
        Some("echo") if args.len() >= 3 => echo(
            args[2].parse().expect("port"),
            args.get(3).map_or("plain", String::as_str),
        ),
        Some("ping") if args.len() >= 5 => ping(
            args[2].parse().expect("port"),
            args[3].parse().expect("warm"),
            args[4].parse().expect("count"),
            args.get(5).map_or("plain", String::as_str),
        ),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}
