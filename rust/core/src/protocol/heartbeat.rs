//! The heartbeat's rules as plain state, without I/O or a clock (times are passed in, in µs):
//! when to ping, which pong answers the ping (RFC 6455 §5.5.3: the same payload), and when a
//! peer is dead. The connection task drives it from its interval timer and its frame reader.

/// What a heartbeat tick asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Tick {
    /// Send a ping with this token (8 bytes, little-endian, as its payload).
    Ping(u64),
    /// The previous ping is still unanswered: the peer, or the path to it, is dead.
    Dead,
    /// No verdict: this side could not read for part of the interval, so a missing pong
    /// proves nothing.
    Wait,
}

#[derive(Debug, Default)]
pub(crate) struct Heartbeat {
    /// The unanswered ping's token: when it was sent (µs, never 0).
    outstanding: Option<u64>,
}

impl Heartbeat {
    /// A tick at `now_us` (> 0). `blind`: this side's reader was paused for backpressure
    /// during the interval.
    pub(crate) fn tick(&mut self, now_us: u64, blind: bool) -> Tick {
        match self.outstanding {
            Some(_) if blind => Tick::Wait,
            Some(_) => Tick::Dead,
            None => {
                self.outstanding = Some(now_us);
                Tick::Ping(now_us)
            }
        }
    }

    /// A pong arrived at `now_us`: the round-trip time in µs if it answers the outstanding
    /// ping; any other pong (unsolicited, or for an older ping) changes nothing.
    pub(crate) fn pong(&mut self, payload: &[u8], now_us: u64) -> Option<u64> {
        let sent = self.outstanding?;
        if payload != sent.to_le_bytes() {
            return None;
        }
        self.outstanding = None;
        Some(now_us.saturating_sub(sent).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ping_answered_in_time_keeps_the_peer() {
        let mut h = Heartbeat::default();
        assert_eq!(h.tick(1000, false), Tick::Ping(1000));
        assert_eq!(h.pong(&1000u64.to_le_bytes(), 1250), Some(250));
        assert_eq!(h.tick(2000, false), Tick::Ping(2000));
    }

    #[test]
    fn an_unanswered_ping_means_dead_at_the_next_tick() {
        let mut h = Heartbeat::default();
        assert_eq!(h.tick(1000, false), Tick::Ping(1000));
        assert_eq!(h.tick(2000, false), Tick::Dead);
    }

    #[test]
    fn unsolicited_or_wrong_pongs_do_not_count() {
        let mut h = Heartbeat::default();
        assert_eq!(h.pong(b"alive", 500), None); // nothing outstanding
        assert_eq!(h.tick(1000, false), Tick::Ping(1000));
        assert_eq!(h.pong(b"alive", 1100), None);
        assert_eq!(h.pong(&999u64.to_le_bytes(), 1100), None);
        assert_eq!(h.pong(&[], 1100), None);
        assert_eq!(h.tick(2000, false), Tick::Dead);
    }

    #[test]
    fn no_verdict_while_this_side_could_not_read() {
        let mut h = Heartbeat::default();
        assert_eq!(h.tick(1000, false), Tick::Ping(1000));
        assert_eq!(h.tick(2000, true), Tick::Wait);
        // The pong of the first ping still counts once read.
        assert_eq!(h.pong(&1000u64.to_le_bytes(), 2100), Some(1100));
        assert_eq!(h.tick(3000, false), Tick::Ping(3000));
    }

    #[test]
    fn a_pong_counts_once() {
        let mut h = Heartbeat::default();
        assert_eq!(h.tick(1000, false), Tick::Ping(1000));
        assert_eq!(h.pong(&1000u64.to_le_bytes(), 1100), Some(100));
        assert_eq!(h.pong(&1000u64.to_le_bytes(), 1200), None);
    }
}
