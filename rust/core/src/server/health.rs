//! The health path (`health_path`, opt-in): a plain HTTP GET on it, with no upgrade, answered
//! by the runtime from the server's state, so a load balancer can check the game port without
//! a WebSocket and without the main thread: 200 while accepting, 503 while refusing new
//! connections (`refuse_new_connections`) and once a shutdown is announced (`set_unready`).

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
    Some(if shared.unready.load(Ordering::Acquire) {
        (503, "Service Unavailable", "shutting down\n")
    } else if shared.refusing.load(Ordering::Acquire) {
        (503, "Service Unavailable", "refusing new connections\n")
    } else {
        (200, "OK", "ok\n")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PeerConfig;

    fn shared() -> Shared {
        let config = PeerConfig {
            health_path: Some("/healthz".into()),
            ..PeerConfig::default()
        };
        Shared::new(config, crossbeam_channel::unbounded().0, None)
    }

    fn get(shared: &Shared, head: &str) -> Option<u16> {
        let request = crate::http::parse_head(head.as_bytes(), ([127, 0, 0, 1], 9).into()).ok()?;
        answer(&request, shared).map(|(status, _, _)| status)
    }

    #[test]
    fn unready_and_refusing_answer_503() {
        let s = shared();
        let check = "GET /healthz HTTP/1.0\r\n\r\n";
        assert_eq!(get(&s, check), Some(200));
        s.unready.store(true, Ordering::Release);
        assert_eq!(get(&s, check), Some(503));
        s.unready.store(false, Ordering::Release);
        s.refusing.store(true, Ordering::Release);
        assert_eq!(get(&s, check), Some(503));
        // Not a health check: left to the upgrade.
        assert_eq!(get(&s, "GET /other HTTP/1.1\r\n\r\n"), None);
    }
}
