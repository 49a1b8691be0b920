//! Outgoing packets of a `RustWebSocketMultiplayerPeer`: the send arena their payloads are
//! copied into, and the routing of one message to a peer, to the server, or to everyone
//! (broadcasts never wait for a slow peer). The checks and errors for one connection are
//! `crate::send`'s, shared with `RustWebSocketPeer`.

use std::time::Duration;

use bytes::BytesMut;
use godot::global::Error;
use godot::prelude::*;
use rust_websocket_core::connection::HeldWakes;
use rust_websocket_core::Bytes;

use super::RustWebSocketMultiplayerPeer;
use crate::send;

/// Size of one send arena chunk; payloads over a quarter of it get their own allocation.
/// A chunk is freed once every packet in it is written; one peer object keeps at most one
/// chunk with room in it (see [`SendArena::stage`] for which payloads go there).
const SEND_ARENA: usize = 256 * 1024;

/// Where outgoing payloads are copied: one allocation per `SEND_ARENA` bytes of small
/// packets instead of one per packet.
#[derive(Default)]
pub(super) struct SendArena(BytesMut);

impl SendArena {
    /// Copies an outgoing payload out of Godot's memory. Small payloads share arena chunks,
    /// which saves a `malloc` on this thread and a cross-thread `free` on the runtime's for
    /// each packet; a chunk is freed once every packet in it has been written. Only payloads
    /// every peer gets share chunks (`to_everyone`: a client's, whose one peer is the server,
    /// and a server's broadcasts): a peer that stops reading then pins little more than its
    /// own queued packets. Mixing one peer's packets with others' would let it pin a whole
    /// chunk per queued packet.
    pub(super) fn stage(&mut self, data: &[u8], to_everyone: bool) -> Bytes {
        if !to_everyone || data.len() > SEND_ARENA / 4 {
            return Bytes::copy_from_slice(data);
        }
        let arena = &mut self.0;
        if arena.capacity() - arena.len() < data.len() {
            *arena = BytesMut::with_capacity(SEND_ARENA);
        }
        arena.extend_from_slice(data);
        arena.split().freeze()
    }
}

impl RustWebSocketMultiplayerPeer {
    /// [`SendArena::stage`] for a message to `target`.
    pub(super) fn stage(&mut self, data: &[u8], target: i32) -> Bytes {
        let to_everyone = target <= 0 || self.is_client();
        self.send_arena.stage(data, to_everyone)
    }

    /// Sends one message to `target` (server: a peer, 0 = all, -id = all but id; a client
    /// always sends to the server), with `put_packet`'s errors.
    pub(super) fn send(&mut self, target: i32, data: Bytes, text: bool) -> Error {
        let limit = usize::try_from(self.outbound_buffer_size).unwrap_or(0);
        if let Err(e) = send::check_size(data.len(), limit, "put_packet") {
            return e;
        }
        if self.is_client() {
            return match self.peers.get(&1) {
                Some(entry) => send::queue(&entry.conn, data, text, "put_packet"),
                None => Error::ERR_UNCONFIGURED,
            };
        }
        if target > 0 {
            return match self.peers.get(&target) {
                Some(entry) => send::queue(&entry.conn, data, text, "put_packet"),
                None => {
                    godot_error!("put_packet: peer {target} not found");
                    Error::ERR_INVALID_PARAMETER
                }
            };
        }
        // Broadcast: a peer too slow for it is closed and reported rather than holding back
        // the others (see slow_peer_timeout).
        let excluded = -target;
        let patience = Duration::from_secs_f64(self.slow_peer_timeout);
        let mut held = HeldWakes::default();
        for (id, entry) in self.peers.iter().filter(|(id, _)| **id != excluded) {
            if entry
                .conn
                .send_broadcast(data.clone(), text, patience, &mut held)
                .is_err()
            {
                godot_warn!(
                    "put_packet: peer {id} is closed (1008): its outbound queue stayed full \
                     ({} packets, {} bytes queued) for more than slow_peer_timeout ({} s)",
                    entry.conn.outbound_queued(),
                    entry.conn.outbound_buffered(),
                    self.slow_peer_timeout
                );
            }
        }
        Error::OK
    }
}
