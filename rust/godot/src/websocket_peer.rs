//! `RustWebSocketPeer`: what `get_peer(id)` returns, the counterpart of Godot's `WebSocketPeer`.

use std::sync::Arc;

use godot::global::{var_to_bytes, var_to_bytes_with_objects, Error};
use godot::prelude::*;
use rust_websocket_core::connection::{Connection, ReadyState};
use rust_websocket_core::Bytes;

use crate::send;

/// One WebSocket connection of a [RustWebSocketMultiplayerPeer], as returned by `get_peer(id)`.
///
/// What Godot's `WebSocketPeer` offers for a connection of its `WebSocketMultiplayerPeer`: the
/// accessors, `close()`, and sending to this one peer ([method send], [method send_text],
/// [method put_packet], [method put_var]) with the same limits and errors as
/// [method PacketPeer.put_packet] on the multiplayer peer. Reading stays with the multiplayer
/// peer, as in the built-in (whose `poll()` takes every packet off its peers): the reading
/// methods here find nothing. It stays valid after the connection ends, so close codes can
/// be read in `peer_disconnected` handlers; sending then returns [constant FAILED].
#[derive(GodotClass)]
#[class(tool, no_init, base = RefCounted)]
pub struct RustWebSocketPeer {
    conn: Arc<Connection>,
    /// What the last [method get_packet] reported, for [method get_packet_error].
    last_get_error: Error,
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
    /// [method send] sends a text frame (same value as `WebSocketPeer.WRITE_MODE_TEXT`).
    #[constant]
    pub const WRITE_MODE_TEXT: i32 = 0;
    /// [method send] sends a binary frame, the default (same value as
    /// `WebSocketPeer.WRITE_MODE_BINARY`).
    #[constant]
    pub const WRITE_MODE_BINARY: i32 = 1;

    pub(crate) fn new_gd(conn: Arc<Connection>) -> Gd<Self> {
        Gd::from_init_fn(|base| Self {
            conn,
            last_get_error: Error::OK,
            base,
        })
    }

    /// Sends `message` to this peer as one WebSocket message: a binary frame, or a text frame
    /// with `write_mode` [constant WRITE_MODE_TEXT]. An empty array sends an empty message.
    /// [constant OK] means it is queued and will be delivered in order, or the connection
    /// closes and `peer_disconnected` reports it. Errors, as for the built-in's
    /// `WebSocketPeer`: [constant FAILED] when the connection is not open (closing or closed;
    /// also once the multiplayer peer was closed, where the built-in leaves the connection
    /// open, unpolled, while a script holds its handle); [constant ERR_OUT_OF_MEMORY] when the
    /// message is larger than `outbound_buffer_size`, or this peer's queue already holds
    /// `max_queued_packets` messages or too many bytes (nothing is sent; retry later). Unlike
    /// the built-in, which sends invalid UTF-8 in a text frame that the other side must reject,
    /// a text message that is not valid UTF-8 returns [constant ERR_INVALID_DATA].
    /// With the Godot protocol the other side's multiplayer peer receives the message as a
    /// packet from this side, which its SceneMultiplayer will try to read as one of its own.
    #[func]
    fn send(&self, message: PackedByteArray, #[opt(default = 1)] write_mode: i32) -> Error {
        let text = write_mode == Self::WRITE_MODE_TEXT;
        let open = self.conn.ready_state() == ReadyState::Open;
        if open && text && std::str::from_utf8(message.as_slice()).is_err() {
            godot_error!("RustWebSocketPeer.send: WRITE_MODE_TEXT needs valid UTF-8 data");
            return Error::ERR_INVALID_DATA;
        }
        self.send_message("send", message.as_slice(), text)
    }

    /// Sends `text` (as UTF-8) in a text frame; [method send] tells the errors.
    #[func]
    fn send_text(&self, text: GString) -> Error {
        self.send_message("send_text", text.to_string().as_bytes(), true)
    }

    /// Sends `buffer` in a binary frame; [method send] tells the errors. As for every
    /// `PacketPeer`, an empty array returns [constant OK] and sends nothing (use [method send]
    /// for an empty message).
    #[func]
    fn put_packet(&self, buffer: PackedByteArray) -> Error {
        if buffer.is_empty() {
            return Error::OK;
        }
        self.send_message("put_packet", buffer.as_slice(), false)
    }

    /// Sends `var` encoded as [method @GlobalScope.var_to_bytes] does (with `full_objects`,
    /// as [method @GlobalScope.var_to_bytes_with_objects]: objects with their scripts, which is
    /// unsafe to decode from an untrusted peer) in a binary frame; [method send] tells the
    /// errors.
    #[func]
    fn put_var(&self, var: Variant, #[opt(default = false)] full_objects: bool) -> Error {
        let bytes = if full_objects {
            var_to_bytes_with_objects(&var)
        } else {
            var_to_bytes(&var)
        };
        if bytes.is_empty() {
            return Error::OK;
        }
        self.send_message("put_var", bytes.as_slice(), false)
    }

    /// Always 0: the multiplayer peer takes every packet off this connection when it polls,
    /// as the built-in does. Read them with [method PacketPeer.get_packet] on the multiplayer
    /// peer ([method MultiplayerPeer.get_packet_peer] tells the sender).
    #[func]
    fn get_available_packet_count(&self) -> i32 {
        0
    }

    /// Always an empty array: packets are read through the multiplayer peer (see
    /// [method get_available_packet_count]). [method get_packet_error] then says
    /// [constant ERR_UNAVAILABLE] while the connection is open, [constant FAILED] once it is
    /// not, as with the built-in.
    #[func]
    fn get_packet(&mut self) -> PackedByteArray {
        self.last_get_error = if self.conn.ready_state() == ReadyState::Open {
            Error::ERR_UNAVAILABLE
        } else {
            godot_error!(
                "RustWebSocketPeer.get_packet: the connection to peer {} is not open",
                self.conn.id()
            );
            Error::FAILED
        };
        PackedByteArray::new()
    }

    /// What the last [method get_packet] call reported ([constant OK] before any).
    #[func]
    fn get_packet_error(&self) -> Error {
        self.last_get_error
    }

    /// Always null, with an error message: there is never a packet to decode here, packets
    /// are read through the multiplayer peer (see [method get_available_packet_count]).
    /// `allow_objects` is accepted for compatibility.
    #[func]
    fn get_var(&self, #[opt(default = false)] allow_objects: bool) -> Variant {
        let _ = allow_objects;
        godot_error!(
            "RustWebSocketPeer.get_var: no packet: packets from peer {} are read through the multiplayer peer",
            self.conn.id()
        );
        Variant::nil()
    }

    /// Accepted for compatibility with `WebSocketPeer`. TCP_NODELAY (Nagle's algorithm off) is
    /// always on for every connection of this addon, as the built-in turns it on for every
    /// connection it makes or accepts: small packets go out at once. `false` is not supported:
    /// it prints a warning and changes nothing.
    #[func]
    fn set_no_delay(&self, enabled: bool) {
        if !enabled {
            godot_warn!(
                "RustWebSocketPeer.set_no_delay(false): TCP_NODELAY stays on (not supported)"
            );
        }
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

    /// The extensions agreed in the handshake (the `Sec-WebSocket-Extensions` answer), e.g.
    /// `"permessage-deflate"` when compression is on for this connection; empty for plain frames.
    #[func]
    fn get_negotiated_extensions(&self) -> GString {
        GString::from(&self.conn.info().extensions)
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
            self.conn.abort();
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

impl RustWebSocketPeer {
    /// Whether the connection is open; prints why not, naming the method `what`.
    fn is_open(&self, what: &str) -> bool {
        let state = self.conn.ready_state();
        if state == ReadyState::Open {
            return true;
        }
        let why = if state == ReadyState::Closing {
            "closing"
        } else {
            "closed"
        };
        godot_error!(
            "RustWebSocketPeer.{what}: the connection to peer {} is {why}",
            self.conn.id()
        );
        false
    }

    /// The send path of every sending method: the built-in's checks in its order (open, then
    /// the limits), then the queue `put_packet` uses.
    fn send_message(&self, what: &str, data: &[u8], text: bool) -> Error {
        if !self.is_open(what) {
            return Error::FAILED;
        }
        let what = format!("RustWebSocketPeer.{what}");
        if let Err(e) = send::check_size(data.len(), self.conn.outbound_limit(), &what) {
            return e;
        }
        send::queue(&self.conn, Bytes::copy_from_slice(data), text, &what)
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
