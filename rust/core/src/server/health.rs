//! The health path (`health_path`, opt-in): a plain HTTP GET on it, with no upgrade, answered
//! by the runtime from the server's state, so a load balancer can check the game port without
//! a WebSocket and without the main thread: 200 while accepting, 503 while refusing new
//! connections (`refuse_new_connections`).

use std::sync::atomic::Ordering;

use super::Shared;
use crate::http::UpgradeRequest;

/// The answer to `request` if it is a health check: (status, reason, body).
pub(super) fn answer(
    request: &UpgradeRequest,
    shared: &Shared,
) -> Option<(u16, &'static str, &'static str)> {
    let path = shared.config.health_path.as_deref()?;
    let upgrade = request
        .header_values("upgrade")
        .any(|v| v.to_ascii_lowercase().contains("websocket"));
    if request.path != path || upgrade || !matches!(request.method.as_str(), "GET" | "HEAD") {
        return None;
    }
    Some(if shared.refusing.load(Ordering::Acquire) {
        (503, "Service Unavailable", "refusing new connections\n")
    } else {
        (200, "OK", "ok\n")
    })
}
