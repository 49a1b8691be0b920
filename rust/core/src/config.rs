//! Per-peer settings, mirroring the properties of Godot's `WebSocketMultiplayerPeer`.

use std::time::Duration;

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// The settings a server or client is created with (a snapshot of the Godot properties).
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// Sub-protocols offered (client) or accepted (server).
    pub supported_protocols: Vec<String>,
    /// Extra HTTP header lines (`Name: value`) for the upgrade request or response.
    pub handshake_headers: Vec<(String, String)>,
    /// Bound on everything from TCP accept/connect to an open WebSocket (and, for a client,
    /// the server's id message).
    pub handshake_timeout: Duration,
    /// Largest message accepted from the other side; larger ones close with 1009. Also the
    /// per-peer cap, in bytes, on received packets waiting for the game to read them.
    pub inbound_buffer_size: usize,
    /// Cap, in bytes, on packets queued towards one peer and not yet written to its socket.
    pub outbound_buffer_size: usize,
    /// Cap on packets queued per peer, in each direction.
    pub max_queued_packets: usize,
    /// Ping each open connection this often; one whose pong has not come back by the next
    /// ping is dropped as dead. `None` = off.
    pub heartbeat_interval: Option<Duration>,
    /// Godot's protocol: the server greets each client with its 4-byte id and the client
    /// waits for it. `false` = plain WebSocket, for browsers, bots and other non-Godot peers.
    pub godot_protocol: bool,
    /// Server behind a reverse proxy: connections from these addresses report the client
    /// address from `X-Forwarded-For`. Empty = the header is ignored.
    pub trusted_proxies: Vec<crate::proxy::TrustedProxy>,
    /// With `trusted_proxies`: a trusted proxy's `X-Forwarded-Port` is the client's own
    /// (source) port, as nginx sends it with `$remote_port`. `false` (the default): ignored,
    /// since most balancers (AWS ALB, Traefik) put the port the client reached them on there.
    pub forwarded_port: bool,
    /// Server behind a TCP balancer: connections from `trusted_proxies` start with a PROXY
    /// protocol header (v1 or v2) naming the client, and are closed without one.
    pub proxy_protocol: bool,
    /// Server: a plain `GET` on this path (no upgrade) is answered by the runtime with 200
    /// while accepting, 503 while refusing new connections. `None` = off.
    pub health_path: Option<String>,
    /// Addresses whose requests on `health_path` are answered (the TCP peer, or the client a
    /// PROXY header names); others get what any other plain request gets. Empty = everyone.
    pub health_allow: Vec<crate::proxy::TrustedProxy>,
    /// The peer object's set of plain sockets with input waiting, which its `poll()` reads
    /// itself ([`crate::ready`]). `None`: the connection tasks read everything.
    pub ready_sockets: Option<std::sync::Arc<crate::ready::ReadySockets>>,
    /// Server: a plain `GET` on this path (no upgrade) is answered by the runtime with the
    /// server's counters in the Prometheus text format (`metrics`). `None` = off.
    pub metrics_path: Option<String>,
    /// Addresses allowed to read `metrics_path`; empty = loopback only.
    pub metrics_allow: Vec<crate::proxy::TrustedProxy>,
    /// permessage-deflate (RFC 7692): a client offers it, a server accepts an offer. `None`
    /// (the default) = plain frames, as the built-in peer sends.
    pub compression: Option<Compression>,
}

/// How this side uses permessage-deflate once the other side agrees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compression {
    /// Messages shorter than this many bytes are sent uncompressed (RSV1 clear).
    pub threshold: usize,
    /// zlib level, 0 (stored) to 9 (smallest).
    pub level: u32,
    /// Ask for no context takeover both ways: every message is compressed on its own (a
    /// little larger), and a connection holds no compression state between messages.
    pub no_context_takeover: bool,
}

impl Default for Compression {
    fn default() -> Self {
        Self {
            threshold: 1024,
            level: 6,
            no_context_takeover: false,
        }
    }
}

impl Default for PeerConfig {
    fn default() -> Self {
        Self {
            supported_protocols: Vec::new(),
            handshake_headers: Vec::new(),
            handshake_timeout: Duration::from_secs(3),
            inbound_buffer_size: 65535,
            outbound_buffer_size: 65535,
            max_queued_packets: 4096,
            heartbeat_interval: None,
            godot_protocol: true,
            trusted_proxies: Vec::new(),
            forwarded_port: false,
            proxy_protocol: false,
            health_path: None,
            health_allow: Vec::new(),
            compression: None,
            metrics_path: None,
            metrics_allow: Vec::new(),
            ready_sockets: None,
        }
    }
}

/// tungstenite only does the HTTP upgrade (frames are read and written by `frame`), so its
/// buffers live for the handshake only: keep them small.
const HANDSHAKE_BUFFER: usize = 4 * 1024;

impl PeerConfig {
    pub(crate) fn ws_config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(HANDSHAKE_BUFFER)
            .write_buffer_size(HANDSHAKE_BUFFER)
    }

    /// Whether `ip` is one of `trusted_proxies`.
    pub(crate) fn is_trusted_proxy(&self, ip: std::net::IpAddr) -> bool {
        self.trusted_proxies.iter().any(|p| p.contains(ip))
    }

    /// Largest message accepted (`inbound_buffer_size`; at least a Godot id message).
    pub(crate) fn max_message(&self) -> usize {
        self.inbound_buffer_size.max(4)
    }
}

/// Parses `Name: value` header lines. Returns the offending line on error.
pub fn parse_header_lines<S: AsRef<str>>(lines: &[S]) -> Result<Vec<(String, String)>, String> {
    lines
        .iter()
        .map(|line| {
            let line = line.as_ref();
            match line.split_once(':') {
                Some((name, value)) if is_token(name.trim()) => {
                    Ok((name.trim().to_string(), value.trim().to_string()))
                }
                _ => Err(line.to_string()),
            }
        })
        .collect()
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lines() {
        let ok = parse_header_lines(&["X-Token: abc", "Accept-Language:en"]).unwrap();
        assert_eq!(ok[0], ("X-Token".into(), "abc".into()));
        assert_eq!(ok[1], ("Accept-Language".into(), "en".into()));
        assert_eq!(parse_header_lines(&["no colon"]), Err("no colon".into()));
        assert_eq!(
            parse_header_lines(&["bad name: x"]),
            Err("bad name: x".into())
        );
    }
}
