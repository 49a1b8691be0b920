//! Sending one message on one connection: the checks and error reports shared by
//! `RustWebSocketMultiplayerPeer` (`put_packet`, `send_text`, `send_bytes`) and the sending
//! methods of `RustWebSocketPeer`, so both give the same errors for the same limits.

use godot::global::Error;
use godot::prelude::*;
use rust_websocket_core::connection::{Connection, SendError};
use rust_websocket_core::Bytes;

/// `Err(ERR_OUT_OF_MEMORY)`, with a message naming the caller `what`, for a message of `len`
/// bytes that can never fit an outbound queue of `limit` bytes (`outbound_buffer_size`).
pub(crate) fn check_size(len: usize, limit: usize, what: &str) -> Result<(), Error> {
    if len > limit {
        godot_error!("{what}: packet of {len} bytes exceeds outbound_buffer_size ({limit})");
        return Err(Error::ERR_OUT_OF_MEMORY);
    }
    Ok(())
}

/// Queues one message for `conn`: `OK`, or `ERR_OUT_OF_MEMORY` with a message naming the
/// caller `what` when its queue is at `max_queued_packets` or `outbound_buffer_size`.
pub(crate) fn queue(conn: &Connection, data: Bytes, text: bool, what: &str) -> Error {
    match conn.send(data, text) {
        Ok(()) => Error::OK,
        Err(SendError::Full | SendError::TooSlow) => {
            godot_error!(
                "{what}: outbound queue to peer {} is full ({} packets, {} bytes queued)",
                conn.id(),
                conn.outbound_queued(),
                conn.outbound_buffered()
            );
            Error::ERR_OUT_OF_MEMORY
        }
    }
}
