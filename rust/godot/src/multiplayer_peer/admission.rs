//! The handshake handler's glue: hands a pending connection to the game's callable (see
//! `set_handshake_handler`) as a `RustWebSocketHandshake`, and turns what the callable returns
//! into an answer.

use godot::prelude::*;
use rust_websocket_core::admission::{Admission, AdmissionTicket};
use rust_websocket_core::http::{reason_phrase, UpgradeRequest};

use super::RustWebSocketMultiplayerPeer;
use crate::handshake::RustWebSocketHandshake;

impl RustWebSocketMultiplayerPeer {
    /// Hands a pending connection to the handshake handler. A bool or an HTTP status returned
    /// by the handler answers at once; otherwise the handler answers through the object.
    pub(super) fn admit(&mut self, request: UpgradeRequest, ticket: AdmissionTicket) {
        let Some(handler) = self.handshake_handler.clone() else {
            ticket.answer(Admission::Accept); // The handler was removed meanwhile.
            return;
        };
        let handshake = RustWebSocketHandshake::new_gd(request, ticket);
        // Through base_mut(): the handler may call back into this peer (e.g. get_peer_ids()).
        let verdict = {
            let _reentrant = self.base_mut();
            handler.call(&[handshake.to_variant()])
        };
        if handshake.bind().is_answered() {
            return;
        }
        match verdict.get_type() {
            VariantType::BOOL if verdict.to::<bool>() => handshake.bind().accept(),
            VariantType::BOOL => handshake.bind().reject(403, "Forbidden".into()),
            VariantType::INT => {
                // reject() reports a status outside 400-599; never panic on odd values.
                let status = verdict.try_to::<i64>().unwrap_or(0);
                let status = i32::try_from(status).unwrap_or(0);
                let phrase = u16::try_from(status).map_or("Rejected", reason_phrase);
                handshake.bind().reject(status, GString::from(phrase));
            }
            _ => {} // Answered later through the handshake object, or at the timeout.
        }
    }
}
