//! The one tokio runtime shared by every peer object in the process.
//!
//! Started on first use (Godot instantiates tool classes in the editor, so creating a peer
//! object must stay cheap) and shut down when the extension unloads, so no runtime thread
//! outlives the engine.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::runtime::{Handle, Runtime};

static RUNTIME: Mutex<Option<Runtime>> = Mutex::new(None);
static WORKER_THREADS: AtomicUsize = AtomicUsize::new(0);

/// Sets how many worker threads the runtime uses once it starts (0 = automatic: half the
/// cores, 1 to 4, so the engine keeps its own). Has no effect on a running runtime; returns
/// whether it will apply.
pub fn set_worker_threads(n: usize) -> bool {
    WORKER_THREADS.store(n, Ordering::Relaxed);
    lock().is_none()
}

/// Worker threads the runtime has or will start with.
pub fn worker_threads() -> usize {
    match WORKER_THREADS.load(Ordering::Relaxed) {
        0 => std::env::var("RUST_WEBSOCKET_WORKER_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| *n > 0)
            .unwrap_or_else(|| {
                let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
                (cores / 2).clamp(1, 4)
            }),
        n => n,
    }
}

fn lock() -> std::sync::MutexGuard<'static, Option<Runtime>> {
    // A poisoned lock only means a panic happened while it was held; the runtime is fine.
    RUNTIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A handle to the shared runtime, starting it if needed.
pub fn handle() -> std::io::Result<Handle> {
    let mut guard = lock();
    if let Some(rt) = guard.as_ref() {
        return Ok(rt.handle().clone());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads())
        .thread_name("rust-websocket")
        .enable_all()
        .build()?;
    let handle = rt.handle().clone();
    *guard = Some(rt);
    Ok(handle)
}

/// A handle to the runtime if it is running; never starts it.
pub(crate) fn running() -> Option<Handle> {
    lock().as_ref().map(|rt| rt.handle().clone())
}

/// Stops the runtime: every connection task is dropped (sockets closed) and its threads are
/// joined for at most a second. Called when the extension unloads.
pub fn shutdown() {
    let rt = lock().take();
    if let Some(rt) = rt {
        rt.shutdown_timeout(Duration::from_secs(1));
    }
}

/// Spawns a connection-level task on the current runtime. A panic inside it ends only that
/// task (its socket is dropped with it) and is reported; with `peer` set, the main thread is
/// also told that this peer is gone (client side: the attempt failed).
///
/// A combinator, not an `async` block: a block would hold `fut` twice (as its capture and
/// inside the `catch_unwind` it awaits), doubling the memory of every connection's task.
pub(crate) fn spawn_guarded<F>(
    events: crossbeam_channel::Sender<crate::events::Event>,
    peer: Option<i32>,
    fut: F,
) where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    use futures_util::FutureExt;
    let guarded = std::panic::AssertUnwindSafe(fut)
        .catch_unwind()
        .map(move |res| {
            if let Err(panic) = res {
                report_panic(&events, peer, panic.as_ref());
            }
        });
    tokio::spawn(guarded);
}

/// Tells the main thread that a connection task panicked (and, with `peer`, that the
/// connection attempt failed).
fn report_panic(
    events: &crossbeam_channel::Sender<crate::events::Event>,
    peer: Option<i32>,
    panic: &(dyn std::any::Any + Send),
) {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    let _ = events.send(crate::events::Event::Error {
        message: format!("internal error in a connection task (connection closed): {what}"),
    });
    if peer.is_some() {
        let _ = events.send(crate::events::Event::ConnectFailed {
            reason: "internal error".into(),
        });
    }
}
