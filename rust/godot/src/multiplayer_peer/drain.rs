//! `shutdown()`: the graceful drain of a `RustWebSocketMultiplayerPeer`. With a
//! `shutdown_delay`, the server first only turns its health path to 503 (so a load balancer
//! stops sending clients here) and `poll()` starts the rest once the delay is over. Then the
//! listener closes; each peer gets what is already queued for it, then a close frame; `poll()`
//! reports each departure as usual and, once every peer is gone or the timeout has passed (the
//! rest then cut), emits `shutdown_completed` and leaves the peer DISCONNECTED.

use std::time::{Duration, Instant};

use godot::classes::multiplayer_peer::ConnectionStatus;
use godot::classes::IMultiplayerPeerExtension;
use godot::global::Error;
use godot::prelude::*;

use super::{Mode, RustWebSocketMultiplayerPeer};
use crate::websocket_peer::is_sendable_close_code;

/// A shutdown in progress.
pub(super) struct Drain {
    /// While set: the announced phase (health 503, all else as before) lasts until then,
    /// and the timeout counts from there.
    notice_until: Option<(Instant, Duration)>,
    deadline: Instant,
    code: u16,
    reason: String,
}

impl RustWebSocketMultiplayerPeer {
    /// `shutdown(timeout, code, reason)`.
    pub(super) fn start_drain(&mut self, timeout: f64, code: i32, reason: &str) -> Error {
        if self.status == ConnectionStatus::DISCONNECTED || self.drain.is_some() {
            godot_error!("shutdown: the peer is not active, or already shutting down");
            return Error::ERR_UNCONFIGURED;
        }
        if !(timeout >= 0.0 && timeout.is_finite()) {
            godot_error!(
                "shutdown: timeout must be 0 or a positive number of seconds, got {timeout}"
            );
            return Error::ERR_INVALID_PARAMETER;
        }
        let code = match u16::try_from(code) {
            Ok(c) if is_sendable_close_code(c) => c,
            _ => {
                godot_error!(
                    "shutdown: invalid close code {code} (use 1000-1003, 1007-1014 or 3000-4999)"
                );
                return Error::ERR_INVALID_PARAMETER;
            }
        };
        let timeout = Duration::from_secs_f64(timeout.min(1e6));
        let now = Instant::now();
        let notice_until = match &self.mode {
            Mode::Server(server) if self.shutdown_delay > 0.0 => {
                server.set_unready(true);
                Some((
                    now + Duration::from_secs_f64(self.shutdown_delay.min(1e6)),
                    timeout,
                ))
            }
            _ => None,
        };
        self.drain = Some(Drain {
            notice_until,
            deadline: now + timeout,
            code,
            reason: reason.to_string(),
        });
        if notice_until.is_none() {
            self.stop_listening_and_close_all();
        }
        Error::OK
    }

    /// The drain proper: the listener closes, every peer gets its close frame.
    fn stop_listening_and_close_all(&self) {
        if let Mode::Server(server) = &self.mode {
            server.stop_listening();
        }
        self.close_all_for_drain();
    }

    /// Whether the listener still accepts: no shutdown, or one still in its `shutdown_delay`.
    pub(super) fn listener_open(&self) -> bool {
        self.drain
            .as_ref()
            .is_none_or(|drain| drain.notice_until.is_some())
    }

    /// Sends the close frame (after what is queued) to every peer still open, including one
    /// whose handshake was finishing when the shutdown began.
    fn close_all_for_drain(&self) {
        if let Some(drain) = &self.drain {
            for entry in self.peers.values() {
                entry.conn.close(drain.code, &drain.reason);
            }
        }
    }

    /// Whether a peer is still open, or a connection the runtime has opened whose arrival
    /// `poll()` has not reported yet (its handshake ended just as the shutdown began: it gets
    /// its close frame once it is a peer, at the next `poll()`).
    fn connections_left(&self) -> bool {
        !self.peers.is_empty()
            || matches!(&self.mode, Mode::Server(server) if server.open_connections() > 0)
    }

    /// From `poll()`, after the events: ends the shutdown once every peer is gone or the
    /// deadline has passed (the peers left are cut and reported), then emits the signal.
    pub(super) fn advance_drain(&mut self) {
        let Some(drain) = &mut self.drain else {
            return;
        };
        if let Some((until, timeout)) = drain.notice_until {
            let now = Instant::now();
            if now < until {
                return;
            }
            drain.notice_until = None;
            drain.deadline = now + timeout;
            self.stop_listening_and_close_all();
            return;
        }
        let expired = Instant::now() >= drain.deadline;
        if !expired && self.connections_left() {
            self.close_all_for_drain();
            return;
        }
        self.keep_alive_this_frame();
        let epoch = self.epoch;
        let mut left: Vec<i32> = self.peers.keys().copied().collect();
        left.sort_unstable();
        let forced = left.len() as i64;
        let server = self.is_server();
        for id in left {
            self.emit("peer_disconnected", &[id.to_variant()]);
            if self.epoch != epoch {
                return; // A handler closed or re-created this peer.
            }
            if server {
                self.emit(
                    "client_disconnected",
                    &[id.to_variant(), false.to_variant()],
                );
                if self.epoch != epoch {
                    return;
                }
            }
            self.forget_peer(id);
        }
        self.drain = None;
        self.reset();
        self.emit("shutdown_completed", &[forced.to_variant()]);
    }
}
