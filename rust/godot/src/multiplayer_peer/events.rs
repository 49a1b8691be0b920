//! `poll()` of a `RustWebSocketMultiplayerPeer`: drains what the runtime reported (packets
//! into the incoming queue, the rest into a list of actions), then acts and emits the signals
//! with no borrow held, since a signal handler may call back into the peer, close it, or drop
//! its last reference.

use godot::classes::multiplayer_peer::ConnectionStatus;
use godot::classes::IMultiplayerPeerExtension;
use godot::prelude::*;
use rust_websocket_core::admission::AdmissionTicket;
use rust_websocket_core::events::Event;
use rust_websocket_core::http::UpgradeRequest;

use super::{Mode, PeerEntry, RustWebSocketMultiplayerPeer};

/// What `poll()` does after it has drained the queue, in order, without holding borrows.
enum Action {
    Connected(i32),
    Disconnected(i32),
    CloseRequest(i32, i32, String),
    Admission(UpgradeRequest, AdmissionTicket),
    ConnectFailed,
    /// Raw mode: a message from this peer is in `incoming`.
    DataReceived(i32),
}

impl RustWebSocketMultiplayerPeer {
    /// `MultiplayerPeer.poll()`.
    pub(super) fn poll_events(&mut self) {
        let epoch = self.epoch;
        let actions = self.drain_events();
        if actions.is_empty() {
            return;
        }
        self.keep_alive_this_frame();
        for action in actions {
            // A signal handler may have closed or re-created this peer.
            if self.epoch != epoch {
                return;
            }
            match action {
                Action::Connected(id) => {
                    self.emit("peer_connected", &[id.to_variant()]);
                    if self.epoch == epoch && self.is_server() {
                        let protocol = self
                            .peers
                            .get(&id)
                            .map_or_else(GString::new, |e| GString::from(&e.conn.info().protocol));
                        self.emit(
                            "client_connected",
                            &[id.to_variant(), protocol.to_variant()],
                        );
                    }
                }
                Action::Disconnected(id) => {
                    let (clean, close) = self.peers.get(&id).map_or((false, None), |e| {
                        (
                            e.conn.was_clean(),
                            Some((e.conn.close_code(), e.conn.close_reason())),
                        )
                    });
                    // Emitted while the peer is still known, so handlers can read its close code.
                    self.emit("peer_disconnected", &[id.to_variant()]);
                    if self.epoch == epoch && self.is_server() {
                        self.emit(
                            "client_disconnected",
                            &[id.to_variant(), clean.to_variant()],
                        );
                    }
                    if self.epoch != epoch {
                        return;
                    }
                    self.forget_peer(id);
                    if self.is_client() {
                        self.reset();
                        self.last_close = close;
                    }
                }
                Action::CloseRequest(id, code, reason) => {
                    if self.is_server() {
                        let args = [
                            id.to_variant(),
                            code.to_variant(),
                            GString::from(&reason).to_variant(),
                        ];
                        self.emit("client_close_request", &args);
                    }
                }
                Action::Admission(request, ticket) => self.admit(request, ticket),
                Action::ConnectFailed => self.reset(),
                Action::DataReceived(id) => self.emit("data_received", &[id.to_variant()]),
            }
        }
    }

    /// Drains what the runtime reported into `incoming` and a list of actions.
    fn drain_events(&mut self) -> Vec<Action> {
        // Ends held back by the previous poll first: their packets have had a poll to be read.
        let mut actions: Vec<Action> = std::mem::take(&mut self.deferred_disconnects)
            .into_iter()
            .filter(|id| self.peers.contains_key(id))
            .map(Action::Disconnected)
            .collect();
        let Some(rx) = &self.events else {
            return actions;
        };
        // Only what is there now: a fast sender must not keep poll() busy forever.
        let pending = rx.len();
        for event in rx.try_iter().take(pending) {
            match event {
                Event::Packet(packet) => {
                    if self.peers.contains_key(&packet.from()) {
                        if self.raw_session {
                            actions.push(Action::DataReceived(packet.from()));
                        }
                        self.incoming.push_back(packet);
                    }
                }
                Event::Connected { conn, id } => {
                    let peer_id = if matches!(self.mode, Mode::Client(_)) {
                        if self.status != ConnectionStatus::CONNECTING {
                            continue;
                        }
                        self.unique_id = id;
                        self.status = ConnectionStatus::CONNECTED;
                        1
                    } else {
                        id
                    };
                    self.peers.insert(peer_id, PeerEntry { conn, handle: None });
                    actions.push(Action::Connected(peer_id));
                }
                Event::Disconnected { id } => {
                    if !self.peers.contains_key(&id) {
                        continue;
                    }
                    // Packets that came with the end would be dropped with the peer (a
                    // client's reset clears them; SceneMultiplayer ignores a gone peer's):
                    // report the end on the next poll, after the game has read them.
                    if self.incoming.iter().any(|p| p.from() == id) {
                        self.deferred_disconnects.push(id);
                    } else {
                        actions.push(Action::Disconnected(id));
                    }
                }
                Event::ConnectFailed { reason } => {
                    if self.status == ConnectionStatus::CONNECTING {
                        godot_error!("RustWebSocketMultiplayerPeer: connection failed: {reason}");
                        actions.push(Action::ConnectFailed);
                    }
                }
                Event::CloseRequest { id, code, reason } => {
                    if self.peers.contains_key(&id) {
                        actions.push(Action::CloseRequest(id, code, reason));
                    }
                }
                Event::Admission { request, ticket } => {
                    actions.push(Action::Admission(*request, ticket));
                }
                Event::Error { message } => godot_error!("RustWebSocketMultiplayerPeer: {message}"),
                Event::Warning { message } => {
                    godot_warn!("RustWebSocketMultiplayerPeer: {message}")
                }
            }
        }
        actions
    }

    /// Before emitting signals: a handler may drop the last reference to this peer (for
    /// example `multiplayer.multiplayer_peer = null`), which must not destroy it while the
    /// emitting call runs. Holds one reference until the engine's next deferred-call flush.
    pub(super) fn keep_alive_this_frame(&self) {
        let mut keep_alive = Some(self.to_gd());
        Callable::from_fn("RustWebSocketMultiplayerPeer.keep_alive", move |_| {
            keep_alive.take();
        })
        .call_deferred(&[]);
    }

    pub(super) fn emit(&mut self, signal: &str, args: &[Variant]) {
        self.base_mut().emit_signal(signal, args);
    }
}
