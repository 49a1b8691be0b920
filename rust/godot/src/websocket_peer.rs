//! `RustWebSocketPeer`: what `get_peer(id)` returns, the counterpart of Godot's `WebSocketPeer`.

use std::sync::Arc;

use godot::prelude::*;
use rwsmp_core::connection::Connection;

/// One WebSocket connection of a [RustWebSocketMultiplayerPeer], as returned by `get_peer(id)`.
///
/// Mirrors the read-only accessors of Godot's `WebSocketPeer`, plus `close()`. It stays valid
/// after the connection ends, so close codes can be read in `peer_disconnected` handlers.
#[derive(GodotClass)]
#[class(tool, no_init, base = RefCounted)]
pub struct RustWebSocketPeer {
    conn: Arc<Connection>,
    base: Base<RefCounted>,
}

#[godot_api]
impl RustWebSocketPeer {
    /// The connection is being established.
    #[constant]
    pub const STATE_CONNECTING: i32 = 0;
    /// The connection is open: packets flow.
    #[constant]
    pub const STATE_OPEN: i32 = 1;
    /// A close frame was sent or received; waiting for the other side.
    #[constant]
    pub const STATE_CLOSING: i32 = 2;
    /// The connection is closed.
    #[constant]
    pub const STATE_CLOSED: i32 = 3;

    pub(crate) fn new_gd(conn: Arc<Connection>) -> Gd<Self> {
        Gd::from_init_fn(|base| Self { conn, base })
    }

    /// The connection's state, one of the `STATE_*` constants (same values as `WebSocketPeer.State`).
    #[func]
    fn get_ready_state(&self) -> i32 {
        self.conn.ready_state() as i32
    }

    /// IP address of the other side.
    #[func]
    fn get_connected_host(&self) -> GString {
        GString::from(&godot_ip_string(self.conn.info().remote.ip()))
    }

    /// TCP port of the other side.
    #[func]
    fn get_connected_port(&self) -> i32 {
        i32::from(self.conn.info().remote.port())
    }

    /// The sub-protocol agreed in the handshake, or an empty string.
    #[func]
    fn get_selected_protocol(&self) -> GString {
        GString::from(&self.conn.info().protocol)
    }

    /// Client side: the URL given to `create_client`. Server side: `ws://` + Host header + path.
    #[func]
    fn get_requested_url(&self) -> GString {
        GString::from(&self.conn.info().requested_url)
    }

    /// The close code received (or sent, when this side closed first); -1 if the connection is
    /// open or was not closed cleanly.
    #[func]
    fn get_close_code(&self) -> i32 {
        self.conn.close_code()
    }

    /// The close reason that came with [method get_close_code].
    #[func]
    fn get_close_reason(&self) -> GString {
        GString::from(&self.conn.close_reason())
    }

    /// Whether the last packet the game took from this peer arrived as a text frame.
    #[func]
    fn was_string_packet(&self) -> bool {
        self.conn.last_was_text()
    }

    /// Bytes queued for this peer and not yet written to its socket.
    #[func]
    fn get_current_outbound_buffered_amount(&self) -> i32 {
        i32::try_from(self.conn.outbound_buffered()).unwrap_or(i32::MAX)
    }

    /// Closes the connection with `code` (1000–4999) and `reason` after the packets already
    /// queued; the other side sees both. Code -1 drops the connection without a close frame.
    #[func]
    fn close(&self, #[opt(default = 1000)] code: i32, #[opt(default = "")] reason: GString) {
        if code == -1 {
            self.conn.drop_now();
            return;
        }
        match u16::try_from(code) {
            Ok(c) if is_sendable_close_code(c) => self.conn.close(c, &reason.to_string()),
            _ => godot_error!(
                "RustWebSocketPeer.close: invalid close code {code} (use 1000-1003, 1007-1014 or 3000-4999)"
            ),
        }
    }
}

pub(crate) fn is_sendable_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// An IP address as Godot's `IPAddress` prints it: IPv4 dotted, IPv6 as eight uncompressed
/// hex groups (`0:0:0:0:0:0:0:1`, not `::1`), so scripts comparing addresses behave the same
/// as with the built-in peer.
pub(crate) fn godot_ip_string(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => v6
            .segments()
            .iter()
            .map(|g| format!("{g:x}"))
            .collect::<Vec<_>>()
            .join(":"),
    }
}
