//! Starting a session of a `RustWebSocketMultiplayerPeer`: what `create_server` and
//! `create_client` check (state, port, bind address, URL, the kind of TLSOptions, the
//! properties), then the core's `Server` or `Client` on the shared runtime.

use godot::classes::multiplayer_peer::ConnectionStatus;
use godot::global::Error;
use godot::prelude::*;
use rust_websocket_core::client::Client;
use rust_websocket_core::runtime;
use rust_websocket_core::server::{BindAddress, Server, StartError};
use rust_websocket_core::url::WsUrl;

use super::{Mode, RustWebSocketMultiplayerPeer};
use crate::tls_options::{client_tls, default_client_tls, server_tls, OptTls};

impl RustWebSocketMultiplayerPeer {
    /// `create_server(port, bind_address, tls_server_options)`.
    pub(super) fn start_server(
        &mut self,
        port: i32,
        bind_address: &GString,
        tls_server_options: &OptTls,
    ) -> Error {
        if self.status != ConnectionStatus::DISCONNECTED {
            godot_error!("create_server: this peer is already active; call close() first");
            return Error::ERR_ALREADY_IN_USE;
        }
        let tls = match &tls_server_options.0 {
            None => None,
            Some(tls) if !tls.is_server() => {
                godot_error!(
                    "create_server: tls_server_options must come from TLSOptions.server()"
                );
                return Error::ERR_INVALID_PARAMETER;
            }
            Some(tls) => match server_tls(tls) {
                Ok(tls) => Some(tls),
                Err(why) => {
                    godot_error!("create_server: invalid tls_server_options: {why}");
                    return Error::ERR_INVALID_PARAMETER;
                }
            },
        };
        let Ok(port) = u16::try_from(port) else {
            godot_error!("create_server: invalid port {port}");
            return Error::ERR_INVALID_PARAMETER;
        };
        let Some(bind) = BindAddress::parse(&bind_address.to_string()) else {
            godot_error!(
                "create_server: invalid bind address '{bind_address}' (use \"*\" or an IP address)"
            );
            return Error::ERR_INVALID_PARAMETER;
        };
        let mut config = match self.config("create_server") {
            Ok(config) => config,
            Err(e) => return e,
        };
        if config.proxy_protocol && config.trusted_proxies.is_empty() {
            godot_warn!(
                "create_server: proxy_protocol is on but trusted_proxies is empty: every PROXY \
                 header will be refused (list the load balancer's addresses)"
            );
        }
        let rt = match runtime::handle() {
            Ok(rt) => rt,
            Err(e) => {
                godot_error!("create_server: cannot start the network runtime: {e}");
                return Error::ERR_CANT_CREATE;
            }
        };
        self.start_session();
        config.ready_sockets = rust_websocket_core::ready::ReadySockets::new();
        self.ready = config.ready_sockets.clone();
        let (tx, rx) = crossbeam_channel::unbounded();
        let server = match Server::start(&rt, port, bind, config, tx, tls) {
            Ok(server) => server,
            Err(e) => {
                godot_error!("create_server: port {port} on '{bind_address}': {e}");
                return match e {
                    StartError::AddressInUse => Error::ERR_ALREADY_IN_USE,
                    StartError::AddressUnavailable => Error::ERR_UNAVAILABLE,
                    StartError::Io(_) => Error::ERR_CANT_CREATE,
                };
            }
        };
        server.set_refusing(self.refusing);
        server.set_admission(self.handshake_handler.is_some());
        self.mode = Mode::Server(server);
        self.events = Some(rx);
        self.status = ConnectionStatus::CONNECTED;
        self.update_termination_watch();
        self.unique_id = 1;
        Error::OK
    }

    /// `create_client(url, tls_client_options)`.
    pub(super) fn start_client(&mut self, url: &GString, tls_client_options: &OptTls) -> Error {
        if self.status != ConnectionStatus::DISCONNECTED {
            godot_error!("create_client: this peer is already active; call close() first");
            return Error::ERR_ALREADY_IN_USE;
        }
        if let Some(tls) = &tls_client_options.0 {
            if tls.is_server() {
                godot_error!("create_client: tls_client_options must come from TLSOptions.client() or client_unsafe()");
                return Error::ERR_INVALID_PARAMETER;
            }
        }
        let parsed = match WsUrl::parse(&url.to_string()) {
            Ok(parsed) => parsed,
            Err(why) => {
                godot_error!("create_client: invalid URL '{url}': {why}");
                return Error::ERR_INVALID_PARAMETER;
            }
        };
        // Client options with a ws:// URL are accepted and unused, as in the built-in.
        let tls = match &tls_client_options.0 {
            Some(tls) if parsed.secure => match client_tls(tls) {
                Ok(tls) => Some(tls),
                Err(why) => {
                    godot_error!("create_client: invalid tls_client_options: {why}");
                    return Error::ERR_INVALID_PARAMETER;
                }
            },
            None if parsed.secure => match default_client_tls() {
                Ok(tls) => tls,
                Err(why) => {
                    godot_error!("create_client: {why}");
                    return Error::ERR_INVALID_PARAMETER;
                }
            },
            _ => None,
        };
        let mut config = match self.config("create_client") {
            Ok(config) => config,
            Err(e) => return e,
        };
        let rt = match runtime::handle() {
            Ok(rt) => rt,
            Err(e) => {
                godot_error!("create_client: cannot start the network runtime: {e}");
                return Error::ERR_CANT_CREATE;
            }
        };
        self.start_session();
        config.ready_sockets = rust_websocket_core::ready::ReadySockets::new();
        self.ready = config.ready_sockets.clone();
        let (tx, rx) = crossbeam_channel::unbounded();
        self.mode = Mode::Client(Client::connect(&rt, parsed, config, tx, tls));
        self.events = Some(rx);
        self.status = ConnectionStatus::CONNECTING;
        self.update_termination_watch();
        Error::OK
    }
}
