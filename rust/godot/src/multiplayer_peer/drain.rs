//! `shutdown()`: the graceful drain of a `RustWebSocketMultiplayerPeer`. The listener closes
//! at once; each peer gets what is already queued for it, then a close frame; `poll()` reports
//! each departure as usual and, once every peer is gone or the timeout has passed (the rest
//! then cut), emits `shutdown_completed` and leaves the peer DISCONNECTED.

use std::time::{Duration, Instant};

use godot::classes::multiplayer_peer::ConnectionStatus;
use godot::classes::IMultiplayerPeerExtension;
use godot::global::Error;
use godot::prelude::*;

use super::{Mode, RustWebSocketMultiplayerPeer};
use crate::websocket_peer::is_sendable_close_code;

/// A shutdown in progress.
pub(super) struct Drain {
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
        if let Mode::Server(server) = &self.mode {
            server.stop_listening();
        }
        self.drain = Some(Drain {
            deadline: Instant::now() + Duration::from_secs_f64(timeout.min(1e6)),
            code,
            reason: reason.to_string(),
        });
        self.close_all_for_drain();
        Error::OK
    }

    /// Whether a shutdown is in progress.
    pub(super) fn draining(&self) -> bool {
        self.drain.is_some()
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

    /// From `poll()`, after the events: ends the shutdown once every peer is gone or the
    /// deadline has passed (the peers left are cut and reported), then emits the signal.
    pub(super) fn advance_drain(&mut self) {
        let Some(drain) = &self.drain else {
            return;
        };
        let expired = Instant::now() >= drain.deadline;
        if !expired && !self.peers.is_empty() {
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
