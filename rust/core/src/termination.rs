//! SIGTERM and SIGINT as a request to drain (the Godot class's `shutdown_on_sigterm`).
//!
//! Godot 4 (measured with 4.6.3 headless on Linux) installs no handler for either, so an
//! orchestrator's SIGTERM ends the game at once. While at least one [`TerminationWatch`]
//! lives, a handler of ours catches both; it only bumps an atomic counter and resets the
//! signals to their default action (so a second one ends the process as before: Ctrl+C twice,
//! or an impatient orchestrator). Everything else happens on the main thread, in `poll()`,
//! which compares the counter with what its watch last saw. The handler is installed once per
//! process however many watches there are, and the signals' previous actions come back when
//! the last watch is dropped. A signal ignored when the first watch is made (a background job,
//! `nohup`) stays ignored.
//!
//! Built on `libc::sigaction` (already a dependency, for `ready`) rather than the
//! `signal-hook` crate: unregistering signal-hook's last action for a signal does not give
//! the signal its previous action back (a documented limitation of signal-hook-registry: the
//! process would then ignore SIGTERM), and both needs here, an atomic store and `SIG_DFL` from
//! within the handler, are async-signal-safe calls.

/// What [`TerminationWatch::new`] says where there is nothing to install.
#[cfg(not(unix))]
const UNSUPPORTED: &str = "SIGTERM and SIGINT are POSIX signals, which this platform does not \
                           send: call shutdown() yourself when the game is told to stop";

/// One holder of the process's SIGTERM/SIGINT handler, and what it has seen of it.
pub struct TerminationWatch {
    /// The count of caught signals when this watch last looked.
    #[cfg_attr(not(unix), allow(dead_code))]
    seen: usize,
}

#[cfg(unix)]
mod imp {
    use std::sync::atomic::{AtomicI32, AtomicU32, AtomicUsize, Ordering};
    use std::sync::{Mutex, PoisonError};

    /// The signals caught: SIGTERM (orchestrators, `docker stop`, `kill`) and SIGINT (Ctrl+C).
    pub(super) const SIGNALS: [libc::c_int; 2] = [libc::SIGTERM, libc::SIGINT];

    /// Signals caught since the process started: each watch compares it with its own count.
    pub(super) static CAUGHT: AtomicUsize = AtomicUsize::new(0);
    /// The number of the last signal caught.
    pub(super) static LAST: AtomicI32 = AtomicI32::new(0);
    /// Bit i set: `SIGNALS[i]` is ours (read by the handler, which may take no lock).
    static OURS: AtomicU32 = AtomicU32::new(0);

    /// How many watches live, and each installed signal's previous action.
    struct Installed {
        users: usize,
        previous: Vec<(libc::c_int, libc::sigaction)>,
    }

    static STATE: Mutex<Installed> = Mutex::new(Installed {
        users: 0,
        previous: Vec::new(),
    });

    /// The handler: async-signal-safe calls only (atomics, `signal`).
    extern "C" fn on_signal(sig: libc::c_int) {
        LAST.store(sig, Ordering::Relaxed);
        CAUGHT.fetch_add(1, Ordering::Release);
        let ours = OURS.load(Ordering::Relaxed);
        for (i, s) in SIGNALS.iter().enumerate() {
            if ours & (1 << i) != 0 {
                // SAFETY: signal() is async-signal-safe (POSIX.1-2008, 2.4.3).
                unsafe { libc::signal(*s, libc::SIG_DFL) };
            }
        }
    }

    /// The current action for `sig`.
    pub(super) fn action(sig: libc::c_int) -> Result<libc::sigaction, String> {
        // SAFETY: a zeroed sigaction is a valid out-parameter; a null new action only reads.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                return Err(std::io::Error::last_os_error().to_string());
            }
            Ok(old)
        }
    }

    pub(super) fn acquire() -> Result<(), String> {
        let mut state = STATE.lock().unwrap_or_else(PoisonError::into_inner);
        if state.users == 0 {
            let mut previous = Vec::new();
            let mut ours = 0;
            for (i, &sig) in SIGNALS.iter().enumerate() {
                let old = action(sig)?;
                if old.sa_sigaction == libc::SIG_IGN {
                    continue; // Ignored by whoever started us (nohup, a background job).
                }
                // SAFETY: `new` is fully initialised; `on_signal` has the handler signature.
                let installed = unsafe {
                    let mut new: libc::sigaction = std::mem::zeroed();
                    new.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
                    new.sa_flags = libc::SA_RESTART;
                    libc::sigemptyset(&mut new.sa_mask);
                    libc::sigaction(sig, &new, std::ptr::null_mut()) == 0
                };
                if !installed {
                    let why = std::io::Error::last_os_error();
                    restore(&previous);
                    return Err(format!("cannot install a handler for signal {sig}: {why}"));
                }
                previous.push((sig, old));
                ours |= 1 << i;
            }
            OURS.store(ours, Ordering::Relaxed);
            state.previous = previous;
        }
        state.users += 1;
        Ok(())
    }

    pub(super) fn release() {
        let mut state = STATE.lock().unwrap_or_else(PoisonError::into_inner);
        state.users -= 1;
        if state.users == 0 {
            OURS.store(0, Ordering::Relaxed);
            restore(&state.previous);
            state.previous.clear();
        }
    }

    fn restore(previous: &[(libc::c_int, libc::sigaction)]) {
        for (sig, old) in previous {
            // SAFETY: `old` is what sigaction() returned for this signal.
            unsafe { libc::sigaction(*sig, old, std::ptr::null_mut()) };
        }
    }
}

impl TerminationWatch {
    /// Catches SIGTERM and SIGINT from now until the last watch is dropped. Err on a
    /// platform without them (Windows), or if the system refuses the handler.
    #[cfg(unix)]
    pub fn new() -> Result<TerminationWatch, String> {
        imp::acquire()?;
        Ok(TerminationWatch {
            seen: imp::CAUGHT.load(std::sync::atomic::Ordering::Acquire),
        })
    }

    #[cfg(not(unix))]
    pub fn new() -> Result<TerminationWatch, String> {
        Err(UNSUPPORTED.to_string())
    }

    /// The signal number (15 SIGTERM, 2 SIGINT) if one was caught since the last call (or
    /// since this watch was made), else `None`.
    #[cfg(unix)]
    pub fn take(&mut self) -> Option<i32> {
        use std::sync::atomic::Ordering;
        let caught = imp::CAUGHT.load(Ordering::Acquire);
        if caught == self.seen {
            return None;
        }
        self.seen = caught;
        Some(imp::LAST.load(Ordering::Relaxed))
    }

    #[cfg(not(unix))]
    pub fn take(&mut self) -> Option<i32> {
        None
    }
}

#[cfg(unix)]
impl Drop for TerminationWatch {
    fn drop(&mut self) {
        imp::release();
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn default_action(sig: libc::c_int) -> bool {
        imp::action(sig).unwrap().sa_sigaction == libc::SIG_DFL
    }

    // One test: the handler is process-wide state.
    #[test]
    fn caught_once_seen_by_every_watch_then_the_default_comes_back() {
        assert!(
            default_action(libc::SIGTERM),
            "cargo test starts with SIGTERM's default"
        );
        let mut a = TerminationWatch::new().unwrap();
        let mut b = TerminationWatch::new().unwrap();
        assert!(!default_action(libc::SIGTERM));
        assert_eq!(a.take(), None);
        // SAFETY: raise() runs our handler on this thread before it returns.
        unsafe { libc::raise(libc::SIGTERM) };
        assert_eq!(a.take(), Some(libc::SIGTERM));
        assert_eq!(a.take(), None);
        assert_eq!(b.take(), Some(libc::SIGTERM));
        // A second SIGTERM would end the process, as without the handler.
        assert!(default_action(libc::SIGTERM));
        drop(a);
        drop(b);
        assert!(default_action(libc::SIGTERM));
        // Installed again (once for two watches), then dropped without a signal: restored.
        let c = TerminationWatch::new().unwrap();
        let mut d = TerminationWatch::new().unwrap();
        assert!(!default_action(libc::SIGTERM));
        assert_eq!(
            d.take(),
            None,
            "a signal from before the watch is not its own"
        );
        drop(c);
        assert!(!default_action(libc::SIGTERM), "d still holds the handler");
        drop(d);
        assert!(default_action(libc::SIGTERM));
    }
}
