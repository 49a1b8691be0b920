//! Behind a reverse proxy (proxy.rs): the game's trusted_proxies entries (addresses and CIDR
//! ranges) and the X-Forwarded-For values a client may forge. Checked: no panic; an accepted
//! range contains its own network address and, when narrower than /0, not the address just
//! past it; the client address is the TCP peer's unless the peer is trusted, and otherwise
//! one written in the headers that is not trusted itself; the port is the peer's unless the
//! address came from the headers, and then the peer's or one written in X-Forwarded-Port (the
//! peer's whenever a warning says the value was not a port).
//!
//! Input: lines; the first is the TCP peer's address, then `trusted_proxies` entries up to an
//! empty line, then header values: X-Forwarded-Port for lines starting with `port `,
//! X-Forwarded-For for the others.

#![no_main]

use std::net::{IpAddr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use rust_websocket_core::proxy::{client_address, TrustedProxy};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let remote = lines
        .next()
        .and_then(|l| l.trim().parse::<IpAddr>().ok())
        .unwrap_or([127, 0, 0, 1].into());
    let remote = SocketAddr::new(remote, 4433);
    let mut trusted = Vec::new();
    for line in lines.by_ref() {
        if line.is_empty() {
            break;
        }
        if let Ok(t) = TrustedProxy::parse(line) {
            check_range(line, &t);
            trusted.push(t);
        }
    }
    let (ports, headers): (Vec<&str>, Vec<&str>) = lines.partition(|l| l.starts_with("port "));
    let ports: Vec<&str> = ports.iter().map(|l| &l["port ".len()..]).collect();
    let (client, warning) = client_address(remote, &headers, &ports, &trusted);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|t| t.contains(ip));
    if client == remote {
        return;
    }
    if warning.is_some() {
        assert_eq!(
            client.port(),
            remote.port(),
            "a port that is not one was used"
        );
    }
    let port_written = ports
        .iter()
        .flat_map(|h| h.split(','))
        .any(|p| p.trim().parse::<u16>() == Ok(client.port()));
    assert!(
        client.port() == remote.port() || port_written,
        "port {} is neither the peer's nor in the headers",
        client.port()
    );
    assert!(
        is_trusted(remote.ip()),
        "an untrusted peer's headers were believed"
    );
    assert!(
        !is_trusted(client.ip()),
        "a trusted proxy reported as the client"
    );
    let written = headers
        .iter()
        .flat_map(|h| h.split(','))
        .filter_map(|h| {
            h.trim()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .ok()
        })
        .any(|ip| ip.to_canonical() == client.ip());
    assert!(written, "{client} is not in the headers");
});

fn check_range(line: &str, t: &TrustedProxy) {
    let s = line.trim();
    let (addr, prefix) = s.split_once('/').unwrap_or((s, ""));
    let net: IpAddr = addr
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .unwrap();
    assert!(t.contains(net), "{s} does not contain its own network");
    let prefix: u32 = prefix
        .parse()
        .unwrap_or(if net.is_ipv4() { 32 } else { 128 });
    let past = match net {
        IpAddr::V4(v4) if prefix > 0 => u32::from(v4)
            .checked_add(1u32 << (32 - prefix))
            .map(|n| IpAddr::from(n.to_be_bytes())),
        IpAddr::V6(v6) if prefix > 0 => u128::from(v6)
            .checked_add(1u128 << (128 - prefix))
            .map(|n| IpAddr::from(n.to_be_bytes())),
        _ => None,
    };
    if let Some(past) = past {
        assert!(!t.contains(past), "{s} contains {past}");
    }
}
