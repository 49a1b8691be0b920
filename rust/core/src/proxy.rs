//! Behind a reverse proxy: the client's address from `X-Forwarded-For` and its port from
//! `X-Forwarded-Port`, believed only when the TCP connection comes from a proxy the game
//! trusts (the port only when the game also says its proxy writes the client's own port
//! there: `forwarded_port`; the caller then passes the header's values).

use std::net::{IpAddr, SocketAddr};

/// A trusted proxy: one address, or a CIDR range (`10.0.0.0/8`, `fd00::/8`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrustedProxy {
    net: IpAddr,
    prefix: u8,
}

impl TrustedProxy {
    /// Parses `addr` or `addr/prefix`. A range with host bits set (`10.9.9.9/0`) is refused
    /// rather than read as its network: such a typo would trust far more than was meant.
    pub fn parse(s: &str) -> Result<TrustedProxy, String> {
        let s = s.trim();
        let malformed = || format!("'{s}' is not an IP address or a CIDR range");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| malformed())?)),
            None => (s, None),
        };
        let net: IpAddr = addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| malformed())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(format!("'{s}': a prefix is at most /{max}"));
        }
        // An IPv4-mapped entry (`::ffff:10.0.0.1`, as a dual-stack socket reports a peer) is
        // its IPv4 range: `contains` compares IPv4 peers as IPv4, so as IPv6 it would never
        // match. A mapped address under a prefix below /96 has host bits set (refused below).
        let (net, prefix) = match net {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix - 96),
                None => (net, prefix),
            },
            _ => (net, prefix),
        };
        let proxy = TrustedProxy { net, prefix };
        let network = proxy.network();
        if network != net {
            return Err(format!(
                "'{s}' has host bits set; the network is {network}/{prefix} (write that if it \
                 is meant: it trusts {} addresses)",
                if prefix == 0 {
                    "all".to_string()
                } else {
                    format!("2^{}", max - prefix)
                }
            ));
        }
        Ok(proxy)
    }

    /// The range's first address (host bits cleared).
    fn network(&self) -> IpAddr {
        match self.net {
            IpAddr::V4(n) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(n) & mask).into())
            }
            IpAddr::V6(n) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(n) & mask).into())
            }
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = unmap(ip);
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                masked(u32::from(n).into(), u32::from(a).into(), self.prefix, 32)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                masked(u128::from(n), u128::from(a), self.prefix, 128)
            }
            _ => false,
        }
    }
}

fn masked(net: u128, addr: u128, prefix: u8, bits: u32) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = bits - u32::from(prefix);
    (net >> shift) == (addr >> shift)
}

fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client's address: `remote` itself, unless `remote` is a trusted proxy that sent
/// `X-Forwarded-For`; then the rightmost entry that is not a trusted proxy (entries further
/// left were written by the client itself and cannot be believed), with its port from
/// `X-Forwarded-Port` (see [`port_of_hop`]). The second value is a warning for the
/// developer: a port that is not one, ignored.
pub fn client_address(
    remote: SocketAddr,
    forwarded_for: &[&str],
    forwarded_port: &[&str],
    trusted: &[TrustedProxy],
) -> (SocketAddr, Option<String>) {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|t| t.contains(ip));
    if !is_trusted(remote.ip()) {
        return (remote, None);
    }
    let hops = forwarded_for
        .iter()
        .flat_map(|h| h.split(','))
        .map(str::trim)
        .rev();
    for (from_right, hop) in hops.enumerate() {
        let Ok(ip) = hop
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        else {
            return (remote, None); // Garbage in the chain: believe nothing.
        };
        if !is_trusted(ip) {
            let (port, warning) = port_of_hop(remote, forwarded_port, from_right);
            return (SocketAddr::new(unmap(ip), port), warning);
        }
    }
    (remote, None)
}

/// The port of the `X-Forwarded-For` entry `from_right` places from the right: the
/// `X-Forwarded-Port` entry at the same place (each proxy that appends to one appends to the
/// other; nginx: `proxy_set_header X-Forwarded-Port $remote_port`). None there: the TCP
/// connection's port. Not a port (1-65535): the same, with a warning.
fn port_of_hop(
    remote: SocketAddr,
    forwarded_port: &[&str],
    from_right: usize,
) -> (u16, Option<String>) {
    let Some(entry) = forwarded_port
        .iter()
        .flat_map(|h| h.split(','))
        .map(str::trim)
        .rev()
        .nth(from_right)
    else {
        return (remote.port(), None);
    };
    match entry.parse::<u16>() {
        Ok(port) if port > 0 && entry.bytes().all(|b| b.is_ascii_digit()) => (port, None),
        _ => {
            let shown: String = entry.chars().take(40).filter(|c| !c.is_control()).collect();
            let warning = format!(
                "X-Forwarded-Port '{shown}' from trusted proxy {} is not a port (1-65535): \
                 ignored, the peer's port is the connection's own ({})",
                remote.ip(),
                remote.port()
            );
            (remote.port(), Some(warning))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> TrustedProxy {
        TrustedProxy::parse(s).unwrap()
    }

    #[test]
    fn parse_and_match() {
        assert!(t("127.0.0.1").contains("127.0.0.1".parse().unwrap()));
        assert!(!t("127.0.0.1").contains("127.0.0.2".parse().unwrap()));
        assert!(t("10.0.0.0/8").contains("10.200.3.4".parse().unwrap()));
        assert!(t("10.0.0.0/8").contains("::ffff:10.1.1.1".parse().unwrap()));
        assert!(t("fd00::/8").contains("fd12::1".parse().unwrap()));
        assert!(!t("fd00::/8").contains("fe80::1".parse().unwrap()));
        assert!(TrustedProxy::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxy::parse("nope").is_err());
        assert!(TrustedProxy::parse("10.0.0.0/x").is_err());
        assert!(t("0.0.0.0/0").contains("8.8.8.8".parse().unwrap()));
        assert!(t("::/0").contains("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn an_ipv4_mapped_entry_matches_its_ipv4_peers() {
        // Found by the proxy_headers fuzz target: it was kept as IPv6 and matched nothing.
        assert!(t("::ffff:10.1.1.1").contains("10.1.1.1".parse().unwrap()));
        assert!(t("::ffff:10.1.1.1").contains("::ffff:10.1.1.1".parse().unwrap()));
        assert!(!t("::ffff:10.1.1.1").contains("10.1.1.2".parse().unwrap()));
        assert!(t("[::ffff:10.0.0.0]/104").contains("10.200.3.4".parse().unwrap()));
        assert!(!t("::ffff:0.0.0.0/96").contains("2001:db8::1".parse().unwrap()));
        assert!(TrustedProxy::parse("::ffff:10.1.1.1/95").is_err());
    }

    #[test]
    fn host_bits_are_refused_naming_the_network() {
        let err = TrustedProxy::parse("10.9.9.9/0").unwrap_err();
        assert!(err.contains("0.0.0.0/0") && err.contains("all"), "{err}");
        let err = TrustedProxy::parse("192.168.1.77/24").unwrap_err();
        assert!(err.contains("192.168.1.0/24"), "{err}");
        let err = TrustedProxy::parse("fd00::1/8").unwrap_err();
        assert!(err.contains("fd00::/8"), "{err}");
        assert!(TrustedProxy::parse("192.168.1.0/24").is_ok());
        assert!(TrustedProxy::parse("10.9.9.9/32").is_ok());
    }

    #[test]
    fn forwarded_address() {
        let proxy: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let trusted = [t("127.0.0.1"), t("10.0.0.0/8")];
        let ip = |xff: &[&str]| client_address(proxy, xff, &[], &trusted).0.ip().to_string();
        assert_eq!(ip(&["203.0.113.7"]), "203.0.113.7");
        // The client forged the left entry; the right one was written by our proxy chain.
        assert_eq!(ip(&["1.2.3.4, 203.0.113.7, 10.0.0.5"]), "203.0.113.7");
        assert_eq!(ip(&["1.2.3.4", "203.0.113.7"]), "203.0.113.7");
        assert_eq!(ip(&[]), "127.0.0.1");
        assert_eq!(ip(&["garbage"]), "127.0.0.1");
        // Bytes a client forged to the left (decoded lossily) are never reached.
        assert_eq!(ip(&["6.6.6.6\u{FFFD}, 203.0.113.9"]), "203.0.113.9");
        assert_eq!(
            client_address(proxy, &["203.0.113.7"], &[], &[])
                .0
                .ip()
                .to_string(),
            "127.0.0.1"
        );
        assert_eq!(
            client_address(proxy, &["203.0.113.7"], &[], &trusted)
                .0
                .port(),
            5000
        );
    }

    #[test]
    fn forwarded_port() {
        let proxy: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let trusted = [t("127.0.0.1"), t("10.0.0.0/8")];
        let at = |xff: &[&str], xfp: &[&str]| {
            let (addr, warning) = client_address(proxy, xff, xfp, &trusted);
            (addr.to_string(), warning.is_some())
        };
        let ok = |s: &str| (s.to_string(), false);
        assert_eq!(at(&["203.0.113.7"], &["40123"]), ok("203.0.113.7:40123"));
        assert_eq!(at(&["203.0.113.7"], &[" 65535 "]), ok("203.0.113.7:65535"));
        // No port header: the connection's own.
        assert_eq!(at(&["203.0.113.7"], &[]), ok("203.0.113.7:5000"));
        // Paired from the right: the port of the hop that was chosen.
        assert_eq!(
            at(&["1.2.3.4, 203.0.113.7, 10.0.0.5"], &["1, 2, 3"]),
            ok("203.0.113.7:2")
        );
        assert_eq!(
            at(&["203.0.113.7", "10.0.0.5"], &["7000", "8000"]),
            ok("203.0.113.7:7000")
        );
        // The chosen hop has no port of its own (only the nearest proxy wrote one).
        assert_eq!(
            at(&["203.0.113.7, 10.0.0.5"], &["8000"]),
            ok("203.0.113.7:5000")
        );
        // Not a port: ignored, with a warning.
        for bad in [
            "0", "65536", "99999", "-1", "+80", "80a", "", "0x50", "80 80",
        ] {
            assert_eq!(
                at(&["203.0.113.7"], &[bad]),
                ("203.0.113.7:5000".to_string(), true),
                "{bad:?}"
            );
        }
        let (_, warning) = client_address(proxy, &["203.0.113.7"], &["http"], &trusted);
        let warning = warning.unwrap();
        assert!(
            warning.contains("'http'") && warning.contains("127.0.0.1"),
            "{warning}"
        );
        // Without a forwarded address the port header means nothing, and from an untrusted
        // peer neither is believed.
        assert_eq!(at(&[], &["40123"]), ok("127.0.0.1:5000"));
        assert_eq!(
            client_address(proxy, &["203.0.113.7"], &["40123"], &[]),
            (proxy, None)
        );
    }
}
