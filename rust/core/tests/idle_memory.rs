//! Memory per idle connection, server side: the heap a `ws://` connection holds once it is
//! open and quiet (its task, `Connection`, protocol, registrations, queues), counted by a
//! global allocator that wraps the system's, with main-thread reads on (as in Godot).
//!
//! The clients are plain blocking sockets on a thread of their own, sending a fixed upgrade
//! request from the stack: they allocate nothing per connection, so every byte counted is the
//! server's. `RWSMP_MEMORY_REPORT=1` prints the live allocations by size (the table in
//! BENCHMARKS.md "Memory per idle connection"). Linux only: main-thread reads need epoll, and
//! the chunk sizes are glibc's.
#![cfg(target_os = "linux")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use rust_websocket_core::config::PeerConfig;
use rust_websocket_core::events::Event;

mod common;
use common::{start_plain, Poller};

/// Live allocations by size, in 16-byte classes up to `CLASSES * 16` bytes (the last class
/// counts everything larger).
const CLASSES: usize = 4096;
static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static LIVE_BLOCKS: AtomicI64 = AtomicI64::new(0);
static BY_CLASS: [AtomicI64; CLASSES] = [const { AtomicI64::new(0) }; CLASSES];
static BYTES_BY_CLASS: [AtomicI64; CLASSES] = [const { AtomicI64::new(0) }; CLASSES];

struct Counting;

fn count(size: usize, sign: i64) {
    let class = (size / 16).min(CLASSES - 1);
    LIVE_BYTES.fetch_add(sign * size as i64, Ordering::Relaxed);
    LIVE_BLOCKS.fetch_add(sign, Ordering::Relaxed);
    BY_CLASS[class].fetch_add(sign, Ordering::Relaxed);
    BYTES_BY_CLASS[class].fetch_add(sign * size as i64, Ordering::Relaxed);
}

// SAFETY: every call is passed on to the system allocator unchanged; only counters are kept.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 1);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 1);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(layout.size(), -1);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(layout.size(), -1);
        count(new_size, 1);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

struct Snapshot {
    bytes: i64,
    blocks: i64,
    classes: Vec<(i64, i64)>,
}

fn snapshot() -> Snapshot {
    Snapshot {
        bytes: LIVE_BYTES.load(Ordering::Relaxed),
        blocks: LIVE_BLOCKS.load(Ordering::Relaxed),
        classes: (0..CLASSES)
            .map(|c| {
                (
                    BY_CLASS[c].load(Ordering::Relaxed),
                    BYTES_BY_CLASS[c].load(Ordering::Relaxed),
                )
            })
            .collect(),
    }
}

/// Heap bytes glibc's malloc holds for a block of `size` bytes: its 8-byte header, rounded
/// up to 16, at least 32.
fn chunk(size: usize) -> usize {
    (size + 8).div_ceil(16).max(2) * 16
}

/// Opens `n` clients to `port`, each through the upgrade and the server's id greeting, into
/// `into` (which has room for them: no allocation here).
fn connect(port: u16, n: usize, into: &mut Vec<TcpStream>) {
    const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";
    assert!(into.capacity() - into.len() >= n);
    for _ in 0..n {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut sock = TcpStream::connect(addr).expect("connect");
        sock.write_all(REQUEST).unwrap();
        // The 101 answer, then the id greeting: a 6-byte binary frame.
        let mut buf = [0u8; 512];
        let mut got = 0;
        loop {
            let n = sock.read(&mut buf[got..]).unwrap();
            assert!(n > 0, "closed during the upgrade");
            got += n;
            if let Some(end) = buf[..got].windows(4).position(|w| w == b"\r\n\r\n") {
                if got >= end + 4 + 6 {
                    assert_eq!(buf[end + 4], 0x82);
                    break;
                }
            }
        }
        into.push(sock);
    }
}

/// Waits until `n` more connections are open, keeping their handles as the game does.
fn take_connected(
    rx: &crossbeam_channel::Receiver<Event>,
    n: usize,
    into: &mut Vec<std::sync::Arc<rust_websocket_core::connection::Connection>>,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let want = into.len() + n;
    while into.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left).expect("connections did not open") {
            Event::Connected { conn, .. } => into.push(conn),
            Event::Error { message } => panic!("{message}"),
            _ => {}
        }
    }
}

/// Raises the soft limit on open files towards `want` (two per connection here), as far as the
/// hard limit allows. Returns the soft limit.
fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

/// Heap bytes per idle `ws://` connection on a server with main-thread reads, and the
/// breakdown by allocation size with `RWSMP_MEMORY_REPORT=1`.
#[test]
fn an_idle_connection_holds_little_heap() {
    const WARM: usize = 50;
    // 1000 connections, fewer if the open-file limit cannot be raised that far.
    let limit = raise_nofile(2 * (WARM + 1000) as u64 + 256);
    let n = ((limit.saturating_sub(256) / 2) as usize)
        .saturating_sub(WARM)
        .min(1000);
    assert!(n >= 200, "open-file limit {limit}: too low to measure");
    let poller = Poller::every(Duration::from_millis(5));
    let (server, rx, port) = start_plain(poller.config(PeerConfig::default()));
    let mut socks = Vec::with_capacity(WARM + n);
    let mut conns = Vec::with_capacity(WARM + n);
    // Lazily made state (runtime threads' caches, the epoll watchdog) before the baseline.
    connect(port, WARM, &mut socks);
    take_connected(&rx, WARM, &mut conns);
    std::thread::sleep(Duration::from_millis(300));
    let before = snapshot();
    connect(port, n, &mut socks);
    take_connected(&rx, n, &mut conns);
    // Quiet long enough for every task to have gone idle (buffers given back).
    std::thread::sleep(Duration::from_millis(500));
    let after = snapshot();
    let per_conn = (after.bytes - before.bytes) as f64 / n as f64;
    let blocks = (after.blocks - before.blocks) as f64 / n as f64;
    let mut chunks = 0.0;
    let mut rows = Vec::new();
    for (c, (a, b)) in after.classes.iter().zip(&before.classes).enumerate() {
        let (dn, dbytes) = (a.0 - b.0, a.1 - b.1);
        if dn == 0 {
            continue;
        }
        let avg = dbytes as f64 / dn as f64;
        chunks += dn as f64 * chunk(avg.round().max(0.0) as usize) as f64 / n as f64;
        rows.push((c, dn, dbytes));
    }
    println!(
        "idle ws:// connection: {per_conn:.0} B requested in {blocks:.1} blocks, \
         {chunks:.0} B as glibc malloc chunks"
    );
    if std::env::var("RWSMP_MEMORY_REPORT").as_deref() == Ok("1") {
        rows.sort_by_key(|r| -r.2);
        println!("{:>10} {:>10} {:>12}", "size", "blocks/conn", "bytes/conn");
        for (c, dn, dbytes) in rows {
            println!(
                "{:>10} {:>10.2} {:>12.1}",
                if c == CLASSES - 1 {
                    format!(">{}", c * 16)
                } else {
                    format!("{}..{}", c * 16, c * 16 + 15)
                },
                dn as f64 / n as f64,
                dbytes as f64 / n as f64
            );
        }
    }
    drop(socks);
    drop(conns);
    server.close();
    drop(poller);
    assert!(
        chunks <= 5.0 * 1024.0,
        "an idle connection holds {chunks:.0} B of heap (budget 5 KiB)"
    );
}
