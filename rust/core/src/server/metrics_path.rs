//! The metrics path (`metrics_path`, opt-in): a plain HTTP GET on it, with no upgrade, answered
//! by the runtime with the server's counters in the Prometheus text format, to the addresses
//! `metrics_allow` names (loopback only when empty) and 403 to any other.

use std::net::IpAddr;

use super::Shared;
use crate::http::UpgradeRequest;
use crate::metrics;

/// The answer to `request` if it asks for the metrics: (status, reason, body). `client`: the
/// TCP peer, or the client a trusted balancer's PROXY header names (never `X-Forwarded-For`,
/// which anyone can write).
pub(super) fn answer(
    request: &UpgradeRequest,
    client: IpAddr,
    shared: &Shared,
) -> Option<(u16, &'static str, String)> {
    let path = shared.config.metrics_path.as_deref()?;
    let upgrade = request
        .header_values("upgrade")
        .any(|v| v.to_ascii_lowercase().contains("websocket"));
    if request.path != path || upgrade || !matches!(request.method.as_str(), "GET" | "HEAD") {
        return None;
    }
    if !allowed(client, &shared.config.metrics_allow) {
        return Some((403, "Forbidden", "forbidden\n".into()));
    }
    // Under the live lock: a connection that ends meanwhile is counted once (see `server`).
    let live = super::lock_live(&shared.live);
    let snapshot = shared.metrics.snapshot(
        live.values()
            .map(|c| (c.stats(), c.outbound_buffered() as u64)),
    );
    drop(live);
    Some((200, "OK", metrics::render(&snapshot)))
}

fn allowed(client: IpAddr, allow: &[crate::proxy::TrustedProxy]) -> bool {
    let client = match client {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
        v4 => v4,
    };
    if allow.is_empty() {
        client.is_loopback()
    } else {
        allow.iter().any(|a| a.contains(client))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::TrustedProxy;

    #[test]
    fn who_may_read() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(allowed(ip("127.0.0.1"), &[]));
        assert!(allowed(ip("::1"), &[]));
        assert!(allowed(ip("::ffff:127.0.0.1"), &[]));
        assert!(!allowed(ip("10.0.0.5"), &[]));
        let allow = [TrustedProxy::parse("10.0.0.0/8").unwrap()];
        assert!(allowed(ip("10.0.0.5"), &allow));
        assert!(!allowed(ip("127.0.0.1"), &allow));
    }
}
