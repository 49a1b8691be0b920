//! The first step of a connection behind a TCP balancer: its PROXY protocol header (see
//! `proxy_protocol`), read before TLS and HTTP, only from a trusted proxy and only with
//! `proxy_protocol` on. Anything else that sends one is refused with a message, as is a
//! trusted proxy that sends none, a broken one, or half of one by the handshake deadline.

use std::net::SocketAddr;

use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{normalize, Shared};
use crate::events::Event;
use crate::metrics::ProxyFailure;
use crate::proxy_protocol::{self, ProxyError, ReadError};

/// Who the connection is from: `remote` (the TCP peer), or the client a trusted balancer's
/// header names. `None`: the connection is to be closed (and the game was told why).
pub(super) async fn client_of(
    stream: &mut TcpStream,
    remote: SocketAddr,
    shared: &Shared,
    deadline: Instant,
) -> Option<SocketAddr> {
    let config = &shared.config;
    if !(config.proxy_protocol && config.is_trusted_proxy(remote.ip())) {
        if sends_a_header(stream).await {
            let why = if config.proxy_protocol {
                "which is not in trusted_proxies"
            } else {
                "but proxy_protocol is off (turn it on and list the balancer in trusted_proxies)"
            };
            report(
                shared,
                ProxyFailure::Untrusted,
                format!(
                    "PROXY protocol header from {}, {why}: connection closed",
                    remote.ip()
                ),
            );
            return None;
        }
        return Some(remote);
    }
    let (cause, why) = match tokio::time::timeout_at(deadline, proxy_protocol::read(stream)).await {
        Ok(Ok(header)) => return Some(header.source.map_or(remote, normalize)),
        Ok(Err(ReadError::Closed)) => return None, // A TCP probe: nothing to say.
        Ok(Err(ReadError::Proxy(ProxyError::Missing))) => (
            ProxyFailure::Missing,
            "no PROXY protocol header (proxy_protocol is on: the balancer must send one, e.g. \
             HAProxy `send-proxy-v2`)"
                .to_string(),
        ),
        Ok(Err(e)) => (ProxyFailure::Malformed, e.to_string()),
        Err(_) => (
            ProxyFailure::Timeout,
            format!(
                "no complete PROXY protocol header within handshake_timeout ({} s)",
                config.handshake_timeout.as_secs_f64()
            ),
        ),
    };
    report(
        shared,
        cause,
        format!("connection from trusted proxy {remote} closed: {why}"),
    );
    None
}

/// Whether the first bytes look like a PROXY header. Judged only on enough bytes to tell
/// (`PROXY ` or the v2 signature); fewer, or an error, go on to the normal handshake, which
/// refuses what is not TLS or HTTP anyway.
async fn sends_a_header(stream: &TcpStream) -> bool {
    let mut first = [0u8; 12];
    match stream.peek(&mut first).await {
        Ok(n) if n >= 6 => {
            first[..6] == *b"PROXY " || (n == 12 && first == *proxy_protocol::V2_SIGNATURE)
        }
        _ => false,
    }
}

/// Counts the refusal and tells the game why.
fn report(shared: &Shared, cause: ProxyFailure, message: String) {
    shared.metrics.count_proxy_failure(cause);
    let _ = shared.events.send(Event::Error { message });
}
