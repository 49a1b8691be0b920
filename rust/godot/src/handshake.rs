//! `RustWebSocketHandshake`: a pending connection, as the handshake handler sees it.

use std::cell::RefCell;

use godot::prelude::*;
use rust_websocket_core::admission::{Admission, AdmissionTicket};
use rust_websocket_core::http::UpgradeRequest;

use crate::websocket_peer::godot_ip_string;

/// A connection waiting to be admitted, passed to the callable given to
/// [method RustWebSocketMultiplayerPeer.set_handshake_handler].
///
/// Call [method accept] or [method reject], at once or later (for example after checking a
/// token with a web service); an answer that never comes drops the connection when the
/// server's `handshake_timeout` runs out. The client sees a rejection as an HTTP status.
#[derive(GodotClass)]
#[class(tool, no_init, base = RefCounted)]
pub struct RustWebSocketHandshake {
    request: UpgradeRequest,
    ticket: RefCell<Option<AdmissionTicket>>,
    base: Base<RefCounted>,
}

#[godot_api]
impl RustWebSocketHandshake {
    pub(crate) fn new_gd(request: UpgradeRequest, ticket: AdmissionTicket) -> Gd<Self> {
        Gd::from_init_fn(|base| Self {
            request,
            ticket: RefCell::new(Some(ticket)),
            base,
        })
    }

    /// The request path without the query, e.g. `/game`.
    #[func]
    fn get_path(&self) -> GString {
        GString::from(&self.request.path)
    }

    /// The query string without `?`, e.g. `token=abc&room=2`.
    #[func]
    fn get_query(&self) -> GString {
        GString::from(&self.request.query)
    }

    /// The request headers, names lowercased (a repeated header keeps its last value).
    #[func]
    fn get_headers(&self) -> VarDictionary {
        let mut d = VarDictionary::new();
        for (name, value) in &self.request.headers {
            d.set(&name.to_variant(), &value.to_variant());
        }
        d
    }

    /// The value of header `name` (case-insensitive), or an empty string.
    #[func]
    fn get_header(&self, name: GString) -> GString {
        let name = name.to_string().to_ascii_lowercase();
        self.request
            .headers
            .iter()
            .rev()
            .find(|(k, _)| *k == name)
            .map_or_else(GString::new, |(_, v)| GString::from(v))
    }

    /// The client's IP address, as `get_peer_address()` would give it.
    #[func]
    fn get_remote_address(&self) -> GString {
        GString::from(&godot_ip_string(self.request.remote.ip()))
    }

    /// The client's TCP port.
    #[func]
    fn get_remote_port(&self) -> i32 {
        i32::from(self.request.remote.port())
    }

    /// Lets the connection in: the upgrade completes and `peer_connected` follows.
    #[func]
    pub(crate) fn accept(&self) {
        self.answer(Admission::Accept, "accept");
    }

    /// Refuses the connection with an HTTP `status` (400-599) and `reason`, e.g.
    /// `reject(401, "Unauthorized")` or `reject(503, "Server full")`.
    #[func]
    pub(crate) fn reject(
        &self,
        #[opt(default = 403)] status: i32,
        #[opt(default = "Forbidden")] reason: GString,
    ) {
        let Ok(status @ 400..=599) = u16::try_from(status) else {
            godot_error!("RustWebSocketHandshake.reject: status must be 400-599, got {status}");
            return;
        };
        let reason = reason.to_string();
        self.answer(Admission::Reject { status, reason }, "reject");
    }

    /// Whether accept() or reject() was called.
    #[func]
    pub(crate) fn is_answered(&self) -> bool {
        self.ticket.borrow().is_none()
    }

    fn answer(&self, admission: Admission, what: &str) {
        match self.ticket.borrow_mut().take() {
            Some(ticket) => ticket.answer(admission),
            None => {
                godot_error!("RustWebSocketHandshake.{what}: this handshake was already answered")
            }
        }
    }
}
