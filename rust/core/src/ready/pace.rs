//! When `poll()` is the only reader of its sockets: a plain rule over the times of the game's
//! polls, with no clock or I/O of its own (times are µs from any fixed start).
//!
//! The main thread reads alone only while the game polls fast (it spins, or sleeps a fraction
//! of a millisecond per frame): then a packet waits for the next `poll()` no longer than it
//! would take to wake a runtime thread. A game polling at 60 Hz keeps the tasks reading, so
//! pongs and close answers do not wait for its frames.

/// Polls at most this far apart count as fast.
pub(crate) const FAST_POLL_US: u64 = 500;
/// Consecutive fast polls before the main thread reads alone.
pub(crate) const FAST_STREAK: u32 = 32;
/// Consecutive slower polls that give reading back to the tasks (one long frame does not).
pub(crate) const SLOW_STREAK: u32 = 4;
/// No poll for this long gives reading back to the tasks (the watchdog's verdict).
pub(crate) const STALL_US: u64 = 50_000;
/// After a poll found more sockets with input than it reads, the tasks read for this long.
pub(crate) const CALM_US: u64 = 1_000_000;
/// Polls this close together on average mean the game's frames are uncapped: its main thread
/// spins, so a system call there costs the game nothing a frame would have used, while a
/// runtime thread it wakes would have to win a CPU from the spinning thread first.
pub(crate) const SPIN_POLL_US: u64 = 50;
/// The average gap between polls weighs the newest gap this much (1/8).
const GAP_WEIGHT_SHIFT: u32 = 3;

#[derive(Debug, Default)]
pub(crate) struct Pace {
    last_poll: Option<u64>,
    fast: u32,
    slow: u32,
    last_busy: Option<u64>,
    main_only: bool,
    /// Moving average of the gaps between polls, in µs << `GAP_WEIGHT_SHIFT`.
    gap_avg: u64,
}

impl Pace {
    /// A poll at `now`; `busy`: it found more sockets with input than it reads. Returns
    /// whether the main thread reads alone from now on, when that changes.
    pub(crate) fn poll(&mut self, now: u64, busy: bool) -> Option<bool> {
        if let Some(last) = self.last_poll {
            let gap = now.saturating_sub(last).min(STALL_US);
            self.gap_avg = self.gap_avg - (self.gap_avg >> GAP_WEIGHT_SHIFT) + gap;
            if gap <= FAST_POLL_US {
                self.fast = self.fast.saturating_add(1);
                self.slow = 0;
            } else {
                self.slow = self.slow.saturating_add(1);
                self.fast = 0;
            }
        }
        self.last_poll = Some(now);
        if busy {
            self.last_busy = Some(now);
        }
        let want = if self.main_only {
            !busy && self.slow < SLOW_STREAK
        } else {
            let calm = self
                .last_busy
                .is_none_or(|b| now.saturating_sub(b) >= CALM_US);
            calm && self.fast >= FAST_STREAK
        };
        self.switch(want)
    }

    /// Whether the game's main thread spins: it reads alone and its polls come on average
    /// less than [`SPIN_POLL_US`] apart.
    pub(crate) fn spinning(&self) -> bool {
        self.main_only && self.gap_avg >> GAP_WEIGHT_SHIFT < SPIN_POLL_US
    }

    /// The watchdog's look at `now`: a game that stopped polling gives reading back.
    pub(crate) fn check(&mut self, now: u64) -> Option<bool> {
        let stalled = self
            .last_poll
            .is_none_or(|l| now.saturating_sub(l) >= STALL_US);
        if !(self.main_only && stalled) {
            return None;
        }
        self.fast = 0;
        self.switch(false)
    }

    fn switch(&mut self, on: bool) -> Option<bool> {
        (self.main_only != on).then(|| {
            self.main_only = on;
            on
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls `n` times, `gap` µs apart from `*t`; the last change reported.
    fn polls(pace: &mut Pace, t: &mut u64, n: u32, gap: u64) -> Option<bool> {
        let mut last = None;
        for _ in 0..n {
            *t += gap;
            last = pace.poll(*t, false).or(last);
        }
        last
    }

    fn reading_alone(t: &mut u64) -> Pace {
        let mut pace = Pace::default();
        assert_eq!(polls(&mut pace, t, FAST_STREAK + 1, 100), Some(true));
        pace
    }

    #[test]
    fn a_spinning_game_reads_alone_after_a_streak_of_fast_polls() {
        let (mut pace, mut t) = (Pace::default(), 0);
        assert_eq!(polls(&mut pace, &mut t, FAST_STREAK, 100), None);
        assert_eq!(pace.poll(t + 100, false), Some(true));
    }

    #[test]
    fn a_game_polling_every_millisecond_or_slower_never_reads_alone() {
        let (mut pace, mut t) = (Pace::default(), 0);
        assert_eq!(polls(&mut pace, &mut t, 1000, 1000), None);
        assert_eq!(polls(&mut pace, &mut t, 100, 16_667), None);
    }

    #[test]
    fn one_long_frame_keeps_it_a_few_slow_ones_end_it() {
        let mut t = 0;
        let mut pace = reading_alone(&mut t);
        t += 20_000;
        assert_eq!(pace.poll(t, false), None);
        assert_eq!(polls(&mut pace, &mut t, 10, 100), None);
        assert_eq!(polls(&mut pace, &mut t, SLOW_STREAK - 1, 2000), None);
        assert_eq!(pace.poll(t + 2000, false), Some(false));
    }

    #[test]
    fn a_busy_poll_ends_it_until_calm() {
        let mut t = 0;
        let mut pace = reading_alone(&mut t);
        t += 100;
        assert_eq!(pace.poll(t, true), Some(false));
        let busy_at = t;
        while t + 100 < busy_at + CALM_US {
            t += 100;
            assert_eq!(pace.poll(t, false), None, "at {}", t - busy_at);
        }
        assert_eq!(pace.poll(busy_at + CALM_US, false), Some(true));
    }

    #[test]
    fn the_watchdog_ends_it_when_polls_stop_and_a_new_streak_restarts_it() {
        let mut t = 0;
        let mut pace = reading_alone(&mut t);
        assert_eq!(pace.check(t + STALL_US - 1), None);
        assert_eq!(pace.check(t + STALL_US), Some(false));
        assert_eq!(pace.check(t + 2 * STALL_US), None);
        t += 2 * STALL_US;
        assert_eq!(polls(&mut pace, &mut t, FAST_STREAK, 100), None);
        assert_eq!(pace.poll(t + 100, false), Some(true));
    }

    #[test]
    fn uncapped_frames_spin_frames_with_a_sleep_do_not() {
        let mut t = 0;
        let mut pace = reading_alone(&mut t);
        assert!(!pace.spinning(), "the average still remembers the start");
        polls(&mut pace, &mut t, 100, 20);
        assert!(pace.spinning());
        // A frame of 100 µs sleep: still reading alone, no longer spinning.
        assert_eq!(polls(&mut pace, &mut t, 100, 120), None);
        assert!(!pace.spinning());
        polls(&mut pace, &mut t, 100, 20);
        assert!(pace.spinning());
        // One long frame among uncapped ones is not enough to stop.
        polls(&mut pace, &mut t, 1, 200);
        assert!(pace.spinning());
        assert_eq!(polls(&mut pace, &mut t, SLOW_STREAK, 2000), Some(false));
        assert!(!pace.spinning());
    }

    #[test]
    fn the_watchdog_leaves_task_reading_alone() {
        let mut pace = Pace::default();
        assert_eq!(pace.check(10 * STALL_US), None);
    }
}
