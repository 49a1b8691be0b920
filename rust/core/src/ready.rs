//! The sockets that have input waiting, for `poll()` to read itself.
//!
//! A message that arrives while the runtime's worker waits for a CPU (two spinning main
//! threads on two cores), or while it is parked and takes a while to wake, would wait for it
//! before the game sees it. So each peer object keeps an edge-triggered epoll set of its
//! connections' sockets beside the runtime's own: `poll()` asks it, with a zero timeout,
//! which sockets received something, and reads them through the connection's protocol —
//! when the connection task is not using it at that moment (a `try_lock`: the game's thread
//! never waits for the runtime). For `wss://` the TLS session is `try_lock`ed as well
//! ([`crate::shared_tls`]).
//!
//! While the game polls fast and few sockets have input at a time, the main thread is the
//! only reader ("main-only", [`pace`] says when): the tasks drop their reactor interest in
//! input, so input wakes no runtime thread (on two cores that wake takes a CPU from a main
//! thread). The tasks read again when the game polls slower or stops (the watchdog: pings,
//! pongs and closes are still answered while the game is busy), when one poll finds more
//! sockets with input than it reads ([`CONNS_PER_POLL`]), and per connection when the main
//! thread hands its input over (its read budget ran out, or the game's queue is full).
//!
//! The cost of `poll()` grows with the sockets that received something since the last call,
//! capped at [`CONNS_PER_POLL`], never with idle ones. Linux only (elsewhere [`ReadySockets::new`]
//! returns `None` and the tasks read everything). Connections with permessage-deflate are
//! never here (inflating stays on the runtime's threads).

mod pace;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::driver::Shared;
use pace::Pace;

/// Connections whose input one `poll()` reads at most; more with input hand reading back to
/// their tasks.
pub const CONNS_PER_POLL: usize = 16;

/// One peer object's set of sockets with input waiting.
pub struct ReadySockets {
    #[cfg(target_os = "linux")]
    epoll: std::os::fd::OwnedFd,
    conns: Mutex<HashMap<u64, Weak<Shared>>>,
    next_key: AtomicU64,
    bytes_read: AtomicU64,
    /// Connections whose last read left input in the socket: read again at the next `poll()`
    /// (edge-triggered, the set will not report them again).
    again: Mutex<Vec<u64>>,
    /// The tasks leave reading to the main thread (see the module's doc), as [`Pace`] says.
    main_only: AtomicBool,
    /// The game's main thread spins ([`Pace::spinning`]).
    spinning: AtomicBool,
    pace: Mutex<Pace>,
    start: Instant,
    watchdog: AtomicBool,
    /// Times main-only reading ended because the game stopped polling or polled slower, and
    /// because too many sockets had input at once.
    stalls: AtomicU64,
    busy: AtomicU64,
}

impl std::fmt::Debug for ReadySockets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadySockets")
    }
}

impl ReadySockets {
    /// A new, empty set; `None` where the platform has no epoll (or it cannot be made), or
    /// with `RUST_WEBSOCKET_MAIN_READS=0` in the environment (the benchmark's A/B switch).
    pub fn new() -> Option<Arc<ReadySockets>> {
        if std::env::var("RUST_WEBSOCKET_MAIN_READS").as_deref() == Ok("0") {
            return None;
        }
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::FromRawFd;
            // SAFETY: plain system call; the descriptor is owned from here on.
            let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
            if fd < 0 {
                return None;
            }
            Some(Arc::new(ReadySockets {
                // SAFETY: `fd` is a new descriptor nobody else owns.
                epoll: unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) },
                conns: Mutex::new(HashMap::new()),
                next_key: AtomicU64::new(1),
                bytes_read: AtomicU64::new(0),
                again: Mutex::new(Vec::new()),
                main_only: AtomicBool::new(false),
                spinning: AtomicBool::new(false),
                pace: Mutex::new(Pace::default()),
                start: Instant::now(),
                watchdog: AtomicBool::new(false),
                stalls: AtomicU64::new(0),
                busy: AtomicU64::new(0),
            }))
        }
        #[cfg(not(target_os = "linux"))]
        None
    }

    /// Watches `tcp` for `conn` (its task calls this once the connection is open). Returns
    /// the key to [`ReadySockets::forget`] it with.
    pub(crate) fn add(
        self: &Arc<Self>,
        tcp: &crate::shared_tcp::Tcp,
        conn: &Arc<Shared>,
    ) -> Option<u64> {
        if !self.watchdog.swap(true, Ordering::AcqRel) {
            tokio::spawn(watch(Arc::downgrade(self)));
        }
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(key, Arc::downgrade(conn));
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let mut ev = libc::epoll_event {
                events: (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
                u64: key,
            };
            // SAFETY: both descriptors are open for the duration of the call; `ev` is valid.
            let rc = unsafe {
                libc::epoll_ctl(
                    self.epoll.as_raw_fd(),
                    libc::EPOLL_CTL_ADD,
                    tcp.as_raw_fd(),
                    &mut ev,
                )
            };
            if rc != 0 {
                self.lock().remove(&key);
                return None;
            }
        }
        Some(key)
    }

    /// Forgets a connection whose task has ended. Its socket, closed by then, has left the
    /// epoll set by itself.
    pub(crate) fn forget(&self, key: u64) {
        self.lock().remove(&key);
    }

    /// Whether the tasks leave reading to the main thread now.
    pub fn main_only(&self) -> bool {
        self.main_only.load(Ordering::Acquire)
    }

    /// Whether the game's main thread spins: it polls alone, far more often than a frame
    /// with any sleep in it would.
    pub fn spinning(&self) -> bool {
        self.spinning.load(Ordering::Acquire)
    }

    fn micros(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// Starts or ends main-only reading; every task then decides again whether it waits for
    /// input (a task the main thread always beats to the input is never woken by it).
    fn set_main_only(&self, on: bool) {
        self.main_only.store(on, Ordering::Release);
        if !on {
            self.spinning.store(false, Ordering::Release);
        }
        let conns: Vec<_> = self.lock().values().filter_map(Weak::upgrade).collect();
        for conn in conns {
            conn.replan();
        }
    }

    /// What [`Pace`] decided, if it changed anything.
    fn apply(&self, change: Option<bool>, busy: bool) {
        match change {
            Some(true) => self.set_main_only(true),
            Some(false) => {
                let count = if busy { &self.busy } else { &self.stalls };
                count.fetch_add(1, Ordering::Relaxed);
                self.set_main_only(false);
            }
            None => {}
        }
    }

    /// The main thread's part, from `poll()`: reads the input of up to [`CONNS_PER_POLL`]
    /// connections that received something, handing their messages to the game's queue.
    pub fn read_ready(&self) {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let mut keys =
                std::mem::take(&mut *self.again.lock().unwrap_or_else(|e| e.into_inner()));
            let mut busy = false;
            if keys.len() < CONNS_PER_POLL {
                let mut events = [libc::epoll_event { events: 0, u64: 0 }; CONNS_PER_POLL];
                let room = CONNS_PER_POLL - keys.len();
                // SAFETY: the buffer holds `room` events or more; a zero timeout never blocks.
                let n = unsafe {
                    libc::epoll_wait(self.epoll.as_raw_fd(), events.as_mut_ptr(), room as i32, 0)
                };
                let n = n.max(0) as usize;
                for ev in &events[..n] {
                    let key = ev.u64;
                    if !keys.contains(&key) {
                        keys.push(key);
                    }
                }
                // Perhaps more than one poll should read: the tasks share the work.
                busy = n == room;
            }
            // The watchdog holds the pace for an instant at most: then this poll is not counted.
            if let Ok(mut pace) = self.pace.try_lock() {
                let change = pace.poll(self.micros(), busy);
                self.spinning.store(pace.spinning(), Ordering::Release);
                drop(pace);
                self.apply(change, busy);
            }
            let mut again = Vec::new();
            for key in keys {
                // A task adding or removing its socket holds this for an instant: next time.
                let conn = match self.conns.try_lock() {
                    Ok(conns) => conns.get(&key).and_then(Weak::upgrade),
                    Err(_) => {
                        again.push(key);
                        continue;
                    }
                };
                let Some(shared) = conn else {
                    continue;
                };
                let read = crate::driver::read_on_main_thread(&shared);
                self.bytes_read
                    .fetch_add(read.bytes as u64, Ordering::Relaxed);
                if read.more {
                    again.push(key);
                }
            }
            *self.again.lock().unwrap_or_else(|e| e.into_inner()) = again;
        }
    }

    /// Times main-only reading has ended so far because the game stopped polling or polled
    /// slower.
    pub fn stalls(&self) -> u64 {
        self.stalls.load(Ordering::Relaxed)
    }

    /// Times main-only reading has ended so far because one poll found too many sockets with
    /// input.
    pub fn busy_polls(&self) -> u64 {
        self.busy.load(Ordering::Relaxed)
    }

    /// Bytes the main thread has read from these sockets so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Weak<Shared>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Hands reading back to the tasks when the game stops polling; ends with the peer object.
async fn watch(ready: Weak<ReadySockets>) {
    loop {
        tokio::time::sleep(Duration::from_micros(pace::STALL_US / 2)).await;
        let Some(ready) = ready.upgrade() else {
            return;
        };
        let change = match ready.pace.try_lock() {
            Ok(mut pace) => pace.check(ready.micros()),
            Err(_) => None,
        };
        ready.apply(change, false);
    }
}
