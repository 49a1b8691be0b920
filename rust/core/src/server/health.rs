//! The health path (`health_path`, opt-in): a plain HTTP GET on it, with no upgrade, answered
//! by the runtime from the server's state, so a load balancer can check the game port without
//! a WebSocket and without the main thread: 200 while accepting, 503 while refusing new
//! connections (`refuse_new_connections`) and once a shutdown is announced (`set_unready`).
//! With `health_allow`, only to those addresses: any other gets what a request on any other
//! path gets, as if there were no health path.

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use super::Shared;
use crate::http::UpgradeRequest;

/// The answer to `request` if it is a health check: (status, reason, body). `client`: the TCP
/// peer, or the client a trusted balancer's PROXY header names (never `X-Forwarded-For`), as
/// for `metrics_allow`.
pub(super) fn answer(
    request: &UpgradeRequest,
    client: IpAddr,
    shared: &Shared,
) -> Option<(u16, &'static str, &'static str)> {
    let path = shared.config.health_path.as_deref()?;
    let upgrade = request
        .header_values("upgrade")
        .any(|v| v.to_ascii_lowercase().contains("websocket"));
    if request.path != path || upgrade || !matches!(request.method.as_str(), "GET" | "HEAD") {
        return None;
    }
    let allow = &shared.config.health_allow;
    if !allow.is_empty() && !allow.iter().any(|a| a.contains(client)) {
        return None; // Not told apart from any other plain request.
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
        with_allow(&[])
    }

    fn with_allow(allow: &[&str]) -> Shared {
        let config = PeerConfig {
            health_path: Some("/healthz".into()),
            health_allow: allow
                .iter()
                .map(|a| crate::proxy::TrustedProxy::parse(a).unwrap())
                .collect(),
            ..PeerConfig::default()
        };
        Shared::new(config, crossbeam_channel::unbounded().0, None)
    }

    fn get_from(shared: &Shared, head: &str, client: &str) -> Option<u16> {
        let request = crate::http::parse_head(head.as_bytes(), ([127, 0, 0, 1], 9).into()).ok()?;
        answer(&request, client.parse().unwrap(), shared).map(|(status, _, _)| status)
    }

    fn get(shared: &Shared, head: &str) -> Option<u16> {
        get_from(shared, head, "127.0.0.1")
    }

    #[test]
    fn only_allowed_addresses_are_answered() {
        let check = "GET /healthz HTTP/1.0\r\n\r\n";
        // Empty: everyone (a balancer's checks may come from anywhere).
        assert_eq!(get_from(&shared(), check, "198.51.100.1"), Some(200));
        let s = with_allow(&["10.0.0.0/8", "::1"]);
        assert_eq!(get_from(&s, check, "10.1.2.3"), Some(200));
        assert_eq!(get_from(&s, check, "::ffff:10.1.2.3"), Some(200));
        assert_eq!(get_from(&s, check, "::1"), Some(200));
        // Others: left to the upgrade, as a request on any other path is.
        assert_eq!(get_from(&s, check, "127.0.0.1"), None);
        assert_eq!(get_from(&s, check, "198.51.100.1"), None);
        s.refusing.store(true, Ordering::Release);
        assert_eq!(get_from(&s, check, "10.1.2.3"), Some(503));
        assert_eq!(get_from(&s, check, "127.0.0.1"), None);
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
