//! GDExtension entry point: registers `RustWebSocketMultiplayerPeer`, `RustWebSocketPeer` and
//! `RustWebSocketHandshake`.
//!
//! This crate is the thin Godot layer: it converts Godot types and errors and drains the
//! core's event queue on the main thread. All networking lives in `rust_websocket_core`.

use godot::init::{gdextension, ExtensionLibrary, InitStage};

mod handshake;
mod multiplayer_peer;
mod send;
mod tls_options;
mod version;
mod websocket_peer;

struct RustWebSocket;

#[gdextension]
unsafe impl ExtensionLibrary for RustWebSocket {
    fn on_stage_deinit(stage: InitStage) {
        // Join the runtime's threads before the engine goes away, so none blocks exit.
        if stage == InitStage::Scene {
            rust_websocket_core::runtime::shutdown();
        }
    }
}
