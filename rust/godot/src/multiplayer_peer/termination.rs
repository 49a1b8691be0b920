//! `shutdown_on_sigterm`: the peer holds the process's SIGTERM/SIGINT handler (core
//! `termination`) while the property is on and the peer is active, and `poll()` turns a caught
//! signal into `termination_requested` and, unless the game's handler started it itself, a
//! `shutdown()`.

use godot::classes::multiplayer_peer::ConnectionStatus;
use godot::prelude::*;
use rust_websocket_core::termination::TerminationWatch;

use super::RustWebSocketMultiplayerPeer;

/// The close code and reason of the shutdown a signal starts.
const CODE: i32 = 1001;
const REASON: &str = "server shutting down";

impl RustWebSocketMultiplayerPeer {
    /// Takes or lets go of the handler as `shutdown_on_sigterm` and the peer's state say:
    /// from create_server/create_client until the peer is closed (or its shutdown is over).
    pub(super) fn update_termination_watch(&mut self) {
        let wanted = self.shutdown_on_sigterm && self.status != ConnectionStatus::DISCONNECTED;
        if wanted == self.termination.is_some() {
            return;
        }
        if !wanted {
            self.termination = None; // The last one restores the signals' previous actions.
            return;
        }
        match TerminationWatch::new() {
            Ok(watch) => self.termination = Some(watch),
            Err(why) => godot_warn!("shutdown_on_sigterm: {why}"),
        }
    }

    /// From `poll()`: a signal caught since the last poll becomes `termination_requested`,
    /// then `shutdown(shutdown_timeout, 1001, "server shutting down")` unless a handler
    /// already started one or closed the peer.
    pub(super) fn check_termination(&mut self) {
        let Some(signal) = self.termination.as_mut().and_then(|w| w.take()) else {
            return;
        };
        let epoch = self.epoch;
        self.emit("termination_requested", &[signal.to_variant()]);
        if self.epoch != epoch
            || self.drain.is_some()
            || self.status == ConnectionStatus::DISCONNECTED
        {
            return;
        }
        let timeout = self.shutdown_timeout;
        self.start_drain(timeout, CODE, REASON);
    }
}
