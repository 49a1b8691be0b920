//! The properties of a `RustWebSocketMultiplayerPeer` as the core's `PeerConfig`, checked when
//! `create_server` / `create_client` runs (a bad value is an error message and
//! `ERR_INVALID_PARAMETER`, nothing starts).

use std::time::Duration;

use godot::global::Error;
use godot::prelude::*;
use rust_websocket_core::config::{parse_header_lines, Compression, PeerConfig};
use rust_websocket_core::proxy::TrustedProxy;

use super::RustWebSocketMultiplayerPeer;

impl RustWebSocketMultiplayerPeer {
    /// The configuration for a new session; `what` names the caller in error messages.
    pub(super) fn config(&self, what: &str) -> Result<PeerConfig, Error> {
        let headers: Vec<String> = self
            .handshake_headers
            .as_slice()
            .iter()
            .map(|h| h.to_string())
            .collect();
        let handshake_headers = parse_header_lines(&headers).map_err(|line| {
            godot_error!("{what}: invalid handshake header '{line}' (expected \"Name: value\")");
            Error::ERR_INVALID_PARAMETER
        })?;
        let health_path = http_path(what, "health_path", "/healthz", &self.health_path)?;
        let metrics_path = http_path(what, "metrics_path", "/metrics", &self.metrics_path)?;
        if metrics_path.is_some() && metrics_path == health_path {
            godot_error!(
                "{what}: metrics_path and health_path are both '{}': give them different paths",
                self.metrics_path
            );
            return Err(Error::ERR_INVALID_PARAMETER);
        }
        let addresses = |list: &PackedStringArray, name: &str| {
            list.as_slice()
                .iter()
                .map(|p| {
                    TrustedProxy::parse(&p.to_string()).map_err(|why| {
                        godot_error!("{what}: invalid {name} entry: {why}");
                        Error::ERR_INVALID_PARAMETER
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let positive = |v: i32, name: &str| {
            usize::try_from(v).ok().filter(|v| *v > 0).ok_or_else(|| {
                godot_error!("{what}: {name} must be positive, got {v}");
                Error::ERR_INVALID_PARAMETER
            })
        };
        Ok(PeerConfig {
            supported_protocols: self
                .supported_protocols
                .as_slice()
                .iter()
                .map(|p| p.to_string())
                .collect(),
            handshake_headers,
            handshake_timeout: Duration::from_secs_f64(self.handshake_timeout),
            inbound_buffer_size: positive(self.inbound_buffer_size, "inbound_buffer_size")?,
            outbound_buffer_size: positive(self.outbound_buffer_size, "outbound_buffer_size")?,
            max_queued_packets: positive(self.max_queued_packets, "max_queued_packets")?,
            godot_protocol: self.godot_protocol,
            trusted_proxies: addresses(&self.trusted_proxies, "trusted_proxies")?,
            forwarded_port: self.trust_forwarded_port,
            proxy_protocol: self.proxy_protocol,
            health_path,
            health_allow: addresses(&self.health_allow, "health_allow")?,
            metrics_path,
            metrics_allow: addresses(&self.metrics_allow, "metrics_allow")?,
            heartbeat_interval: (self.heartbeat_interval > 0.0)
                .then(|| Duration::from_secs_f64(self.heartbeat_interval)),
            // The setters keep the threshold and level in range.
            compression: self.compression_enabled.then(|| Compression {
                threshold: self.compression_threshold.max(0) as usize,
                level: self.compression_level.clamp(0, 9) as u32,
                no_context_takeover: self.compression_no_context_takeover,
            }),
            ready_sockets: None, // made per session, in create_*
        })
    }
}

/// A path property served over plain HTTP (`name`, e.g. "health_path"): `None` when empty,
/// else it must start with '/' and hold no query, fragment or spaces.
fn http_path(
    what: &str,
    name: &str,
    example: &str,
    value: &GString,
) -> Result<Option<String>, Error> {
    let path = value.to_string();
    match path.as_str() {
        "" => Ok(None),
        p if p.starts_with('/')
            && !p.contains(['?', '#'])
            && !p.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            Ok(Some(path))
        }
        _ => {
            godot_error!(
                "{what}: {name} must be empty (off) or a path such as \"{example}\" \
                 (starting with '/', no query or spaces), got '{path}'"
            );
            Err(Error::ERR_INVALID_PARAMETER)
        }
    }
}
