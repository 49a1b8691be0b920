//! What the runtime reports to the game's main thread.

use std::sync::Arc;

use crate::connection::Connection;
use crate::Bytes;

/// One report from the runtime. Sent over an unbounded crossbeam channel per peer object;
/// its size is bounded by the per-connection inbound limits (a reader stops reading its
/// socket while its peer has too many undelivered packets).
pub enum Event {
    /// A connection is open and its id exchanged. Server side: a new client, `id` = its id.
    /// Client side: the server sent our id, `id` = our unique id, and `conn` is peer 1.
    Connected { conn: Arc<Connection>, id: i32 },
    /// A message from `packet.from()`.
    Packet(InboundPacket),
    /// Peer `id` sent a close frame (it started the closing handshake); `Disconnected`
    /// follows once the connection is down.
    CloseRequest { id: i32, code: i32, reason: String },
    /// The connection to peer `id` is closed (details in the [`Connection`]).
    Disconnected { id: i32 },
    /// Client only: the connection could not be established.
    ConnectFailed { reason: String },
    /// Server with an admission handler: a pending connection asks to be let in. Answer
    /// through the ticket before `handshake_timeout`, or it is dropped. (Boxed: rare and
    /// large, it would double the size of every event, packets included.)
    Admission {
        request: Box<crate::http::UpgradeRequest>,
        ticket: crate::admission::AdmissionTicket,
    },
    /// Something worth telling the developer (printed as a Godot error).
    Error { message: String },
    /// Something odd but harmless, ignored (printed as a Godot warning).
    Warning { message: String },
}

/// A received message. Holds a credit on its connection's inbound budget until dropped, so
/// the reader resumes once the game has consumed enough.
pub struct InboundPacket {
    conn: Arc<Connection>,
    data: Bytes,
    /// Credit held, in bytes (kept apart from `data`, which [`Self::take_data`] moves out).
    len: usize,
    text: bool,
}

impl InboundPacket {
    pub(crate) fn new(conn: Arc<Connection>, data: Bytes, text: bool) -> Self {
        let len = data.len();
        conn.inbound_acquire(len);
        Self {
            conn,
            data,
            len,
            text,
        }
    }

    /// Id of the peer that sent it.
    pub fn from(&self) -> i32 {
        self.conn.id()
    }

    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The payload, giving the credit back at once: the game has consumed the packet even if
    /// it keeps the bytes (Godot reads them after `get_packet` returns).
    pub fn take_data(mut self) -> Bytes {
        self.conn.set_last_was_text(self.text);
        std::mem::take(&mut self.data)
    }

    /// Whether it arrived as a text frame.
    pub fn was_text(&self) -> bool {
        self.text
    }
}

impl Drop for InboundPacket {
    fn drop(&mut self) {
        self.conn.inbound_release(self.len);
    }
}

#[cfg(test)]
mod tests {
    /// Every packet goes through the event channel: keep its slots small.
    #[test]
    fn events_stay_small() {
        assert!(std::mem::size_of::<super::Event>() <= 64);
    }
}
