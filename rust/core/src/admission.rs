//! Handshake-time admission: the game decides, on its main thread, whether a pending
//! connection may become a peer (tokens in the URL or an `Authorization` header, a full-server
//! 503), before the WebSocket upgrade is answered.
//!
//! tungstenite's handshake callback is synchronous, and waiting in it for the main thread would
//! block a runtime worker. So the server reads the request itself (`http`), sends it to the
//! main thread as an [`Event::Admission`](crate::events::Event::Admission) with a ticket, and
//! awaits the answer: then it hands the connection to tungstenite, or answers with the HTTP
//! status.

use tokio::sync::oneshot;

/// The game's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    Accept,
    Reject { status: u16, reason: String },
}

/// Where the answer goes. Dropping it unanswered refuses the connection (503).
pub struct AdmissionTicket(oneshot::Sender<Admission>);

impl AdmissionTicket {
    pub(crate) fn new() -> (Self, oneshot::Receiver<Admission>) {
        let (tx, rx) = oneshot::channel();
        (Self(tx), rx)
    }

    pub fn answer(self, admission: Admission) {
        let _ = self.0.send(admission);
    }
}
