//! The addon's version, visible to games and in the editor's help (F1).
//!
//! A secondary `#[godot_api]` block of `RustWebSocketMultiplayerPeer`, kept apart from the
//! class's main file. The version is the workspace's (`Cargo.toml`, `[workspace.package]`),
//! the one place it is written.

use godot::prelude::*;

use crate::multiplayer_peer::RustWebSocketMultiplayerPeer;

#[godot_api(secondary)]
impl RustWebSocketMultiplayerPeer {
    /// The version of the rust_websocket addon, e.g. `"0.1.0"`: the release tag without its
    /// `v` (see the addon's CHANGELOG). Static:
    /// `RustWebSocketMultiplayerPeer.get_version()`.
    #[func]
    fn get_version() -> GString {
        GString::from(env!("CARGO_PKG_VERSION"))
    }
}
