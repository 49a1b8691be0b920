//! `RustWebSocketMultiplayerPeer`: the Godot-facing object. It owns no socket; it drains the
//! runtime's event queue in `poll()` and pushes outgoing packets onto per-peer queues.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use crossbeam_channel::Receiver;
use godot::classes::multiplayer_peer::{ConnectionStatus, TransferMode};
use godot::classes::{IMultiplayerPeerExtension, MultiplayerPeerExtension, Performance};
use godot::global::Error;
use godot::meta::conv::RawPtr;
use godot::prelude::*;
use rwsmp_core::admission::{reason_phrase, Admission, AdmissionRequest, AdmissionTicket};
use rwsmp_core::client::Client;
use rwsmp_core::config::{parse_header_lines, PeerConfig};
use rwsmp_core::connection::Connection;
use rwsmp_core::events::{Event, InboundPacket};
use rwsmp_core::proxy::TrustedProxy;
use rwsmp_core::server::{BindAddress, Server, StartError};
use rwsmp_core::url::WsUrl;
use rwsmp_core::{runtime, Bytes};

use crate::handshake::RustWebSocketHandshake;
use crate::send;
use crate::tls_options::{client_tls, default_client_tls, server_tls, OptTls};
use crate::websocket_peer::{godot_ip_string, is_sendable_close_code, RustWebSocketPeer};

/// Bytes of the built-in peer's protocol overhead that `get_max_packet_size` subtracts.
const PROTO_SIZE: i32 = 9;

#[derive(Default)]
enum Mode {
    #[default]
    Idle,
    Server(Server),
    Client(Client),
}

struct PeerEntry {
    conn: Arc<Connection>,
    handle: Option<Gd<RustWebSocketPeer>>,
}

/// What `poll()` does after it has drained the queue, in order, without holding borrows.
enum Action {
    Connected(i32),
    Disconnected(i32),
    CloseRequest(i32, i32, String),
    Admission(AdmissionRequest, AdmissionTicket),
    ConnectFailed,
    /// Raw mode: a message from this peer is in `incoming`.
    DataReceived(i32),
}

/// A drop-in replacement for Godot's [WebSocketMultiplayerPeer] whose networking runs on a
/// background tokio runtime.
///
/// Same properties, methods, defaults, error codes and signals as the built-in class, and
/// wire-compatible with it: a built-in peer can be the server or a client on the other end.
/// The main thread never touches a socket; [method MultiplayerPeer.poll] only drains what the
/// runtime received, so its cost does not grow with idle peers.
/// [codeblock]
/// var peer := RustWebSocketMultiplayerPeer.new()
/// peer.create_server(9080)          # or peer.create_client("ws://127.0.0.1:9080")
/// multiplayer.multiplayer_peer = peer
/// [/codeblock]
#[derive(GodotClass)]
#[class(tool, init, base = MultiplayerPeerExtension)]
pub struct RustWebSocketMultiplayerPeer {
    /// Sub-protocols the client offers or the server accepts. Either side having some and no
    /// match means the connection is refused.
    #[var]
    supported_protocols: PackedStringArray,
    /// Extra HTTP headers (`"Name: value"` lines) sent with the upgrade request or response.
    #[var]
    handshake_headers: PackedStringArray,
    /// Seconds allowed from TCP connect/accept to an open WebSocket (client: until the peer
    /// id arrives). A pending peer that exceeds it is dropped.
    #[var(set = set_handshake_timeout)]
    #[init(val = 3.0)]
    handshake_timeout: f64,
    /// Largest message accepted, in bytes; a larger one closes that connection with 1009.
    /// Also the cap on one peer's received bytes waiting for [method PacketPeer.get_packet]:
    /// beyond it that socket is not read until the game catches up.
    #[var]
    #[init(val = 65535)]
    inbound_buffer_size: i32,
    /// Cap on the bytes queued towards one peer and not yet written to its socket;
    /// [method PacketPeer.put_packet] returns [constant ERR_OUT_OF_MEMORY] beyond it.
    #[var]
    #[init(val = 65535)]
    outbound_buffer_size: i32,
    /// Cap on packets queued per peer in each direction.
    #[var]
    #[init(val = 4096)]
    max_queued_packets: i32,
    /// Seconds between heartbeat pings on every connection (0 = off, the default). A peer
    /// whose pong has not arrived by the next ping is dropped and reported with
    /// `peer_disconnected` (on a client: the server is gone), so dead peers and cut links are
    /// found within two intervals. Only a pong that answers the outstanding ping counts. Taken
    /// when create_server/create_client runs.
    #[var(set = set_heartbeat_interval)]
    heartbeat_interval: f64,
    /// Server broadcasts (`put_packet` to target 0 or -id) and a peer that does not keep up:
    /// its queue may grow to twice `outbound_buffer_size` / `max_queued_packets` while it
    /// catches up, so one slow peer never holds back the others. A peer that has stayed over
    /// its limits for longer than this many seconds (default 3.0; 0 = at once), or would go
    /// past twice them, is closed with code 1008 "too slow: outbound queue full" and reported
    /// with `peer_disconnected`; the broadcast still returns OK for the others. A `put_packet`
    /// to one peer keeps returning `ERR_OUT_OF_MEMORY` at the limits.
    #[var(set = set_slow_peer_timeout)]
    #[init(val = 3.0)]
    slow_peer_timeout: f64,
    /// `true` (default): Godot's multiplayer protocol, wire-compatible with
    /// [WebSocketMultiplayerPeer] (the server sends each client its id first). `false`: plain
    /// WebSocket for non-Godot peers (browsers, bots, dashboards): no greeting; the server
    /// still assigns ids, packets still flow through get_packet/put_packet, text frames are
    /// flagged by [method was_string_packet] and sent with [method send_text]. Applies to
    /// the next create_server/create_client.
    #[var]
    #[init(val = true)]
    godot_protocol: bool,
    /// Server behind a reverse proxy (nginx, a load balancer): connections coming from these
    /// addresses (IPs or CIDR ranges such as `"10.0.0.0/8"`) report the client's address from
    /// `X-Forwarded-For` in `get_peer_address()`, `get_peer(id).get_connected_host()` and the
    /// handshake handler (the rightmost entry that is not itself a trusted proxy; the port
    /// stays the proxy connection's). Empty (default): the header is ignored, as it can be
    /// forged. Applies to the next create_server.
    #[var]
    trusted_proxies: PackedStringArray,

    mode: Mode,
    #[init(val = ConnectionStatus::DISCONNECTED)]
    status: ConnectionStatus,
    unique_id: i32,
    target_peer: i32,
    #[init(val = TransferMode::RELIABLE)]
    transfer_mode: TransferMode,
    transfer_channel: i32,
    refusing: bool,
    peers: HashMap<i32, PeerEntry>,
    incoming: VecDeque<InboundPacket>,
    /// The payload last returned by `get_packet`; Godot reads it through our pointer.
    current: Option<Bytes>,
    /// Where outgoing payloads are copied: one allocation per `SEND_ARENA` bytes of small
    /// packets instead of one per packet (see [`Self::stage`]).
    send_arena: BytesMut,
    events: Option<Receiver<Event>>,
    /// Bumped by every reset, so `poll()` notices when a signal handler closed the peer.
    epoch: u64,
    /// Whether the last packet returned by get_packet was a text frame.
    current_was_text: bool,
    /// The current session runs without the Godot protocol (`godot_protocol` when create_* ran).
    raw_session: bool,
    /// Traffic of peers already gone, for get_stats().
    closed_totals: rwsmp_core::connection::ConnectionStats,
    /// Client: close code and reason of the connection to the server, once it ended.
    last_close: Option<(i32, String)>,
    /// Called with a RustWebSocketHandshake for each pending connection, if set.
    handshake_handler: Option<Callable>,
    /// Performance monitor ids registered by add_performance_monitors().
    monitors: Vec<StringName>,
    /// Last (time, counter) seen per rate monitor, to turn totals into per-second rates.
    monitor_samples: HashMap<String, (std::time::Instant, u64)>,
    base: Base<MultiplayerPeerExtension>,
}

#[godot_api]
impl RustWebSocketMultiplayerPeer {
    /// Starts a server listening on `port` (0 = any free port) and `bind_address` (`"*"` for
    /// every IPv4 and IPv6 interface, or an IP literal). Status becomes CONNECTED with
    /// unique id 1 at once. Returns [constant ERR_ALREADY_IN_USE] if the port is taken or
    /// this peer is already active. With `tls_server_options` from [method TLSOptions.server]
    /// it serves `wss://`; a key that does not match the certificate is refused with
    /// [constant ERR_INVALID_PARAMETER].
    #[func]
    fn create_server(
        &mut self,
        port: i32,
        #[opt(default = "*")] bind_address: GString,
        #[opt(default = godot::meta::owned_into_arg(OptTls(None)))] tls_server_options: OptTls,
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
        let config = match self.config("create_server") {
            Ok(config) => config,
            Err(e) => return e,
        };
        let rt = match runtime::handle() {
            Ok(rt) => rt,
            Err(e) => {
                godot_error!("create_server: cannot start the network runtime: {e}");
                return Error::ERR_CANT_CREATE;
            }
        };
        self.start_session();
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
        self.unique_id = 1;
        Error::OK
    }

    /// Connects to a `ws://` or `wss://` server (no scheme means `ws://`). For `wss://`,
    /// `tls_client_options` from [method TLSOptions.client] or [method TLSOptions.client_unsafe]
    /// choose what is trusted; null trusts the usual public CAs. Status is CONNECTING until
    /// the server sends this peer's id, then CONNECTED; on failure it returns to
    /// DISCONNECTED and SceneMultiplayer emits `connection_failed`.
    #[func]
    fn create_client(
        &mut self,
        url: GString,
        #[opt(default = godot::meta::owned_into_arg(OptTls(None)))] tls_client_options: OptTls,
    ) -> Error {
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
        let config = match self.config("create_client") {
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
        let (tx, rx) = crossbeam_channel::unbounded();
        self.mode = Mode::Client(Client::connect(&rt, parsed, config, tx, tls));
        self.events = Some(rx);
        self.status = ConnectionStatus::CONNECTING;
        Error::OK
    }

    /// The connection to peer `peer_id` (server: a client's id; client: 1), or null.
    #[func]
    fn get_peer(&mut self, peer_id: i32) -> Option<Gd<RustWebSocketPeer>> {
        let Some(entry) = self.peers.get_mut(&peer_id) else {
            godot_error!("get_peer: peer {peer_id} not found");
            return None;
        };
        let handle = entry
            .handle
            .get_or_insert_with(|| RustWebSocketPeer::new_gd(entry.conn.clone()));
        Some(handle.clone())
    }

    /// IP address of peer `id`, or an empty string if unknown.
    #[func]
    fn get_peer_address(&self, id: i32) -> GString {
        match self.peers.get(&id) {
            Some(entry) => GString::from(&godot_ip_string(entry.conn.info().remote.ip())),
            None => {
                godot_error!("get_peer_address: peer {id} not found");
                GString::new()
            }
        }
    }

    /// TCP port of peer `id`, or 0 if unknown.
    #[func]
    fn get_peer_port(&self, id: i32) -> i32 {
        match self.peers.get(&id) {
            Some(entry) => i32::from(entry.conn.info().remote.port()),
            None => {
                godot_error!("get_peer_port: peer {id} not found");
                0
            }
        }
    }

    /// Server (Godot 3 `WebSocketServer`): a client completed the handshake, with the
    /// sub-protocol it agreed. Emitted after `peer_connected`.
    #[signal]
    fn client_connected(id: i64, protocol: GString);

    /// Server: a client's connection ended; `was_clean_close` tells whether it ended with a
    /// close handshake. Emitted after `peer_disconnected`.
    #[signal]
    fn client_disconnected(id: i64, was_clean_close: bool);

    /// Server: a client sent a close frame with `code` and `reason` (it is leaving);
    /// `peer_disconnected` follows once the connection is down.
    #[signal]
    fn client_close_request(id: i64, code: i64, reason: GString);

    /// Raw mode only ([member godot_protocol] off), as Godot 3's `WebSocketServer` had it: a
    /// message from peer `id` (a client's id on the server, 1 on a client) has arrived and
    /// can be read with [method PacketPeer.get_packet]. Emitted once per message, in
    /// [method MultiplayerPeer.poll], once every message that poll received is readable, so
    /// the front packet may be an earlier one the game has not read yet
    /// ([method MultiplayerPeer.get_packet_peer] names its sender). Never emitted with the
    /// Godot protocol, where SceneMultiplayer reads the packets.
    #[signal]
    fn data_received(id: i64);

    /// Godot 3 `WebSocketServer.stop()`: an alias of [method MultiplayerPeer.close]. It stops
    /// listening and drops every connection at once, without close frames or signals
    /// (`disconnect_peer_with_code` first for a close the clients can read); status becomes
    /// DISCONNECTED. On a client it is [method MultiplayerPeer.close] as well.
    #[func]
    fn stop(&mut self) {
        IMultiplayerPeerExtension::close(self);
    }

    /// Closes the connection to peer `id` after the packets already queued, with a close
    /// `code` (1000-1003, 1007-1014, 3000-4999) and `reason` the other side can read.
    /// `peer_disconnected` follows on a later poll.
    #[func]
    fn disconnect_peer_with_code(
        &mut self,
        id: i32,
        #[opt(default = 1000)] code: i32,
        #[opt(default = "")] reason: GString,
    ) {
        let Some(entry) = self.peers.get(&id) else {
            godot_error!("disconnect_peer_with_code: peer {id} not found");
            return;
        };
        match u16::try_from(code) {
            Ok(c) if is_sendable_close_code(c) => entry.conn.close(c, &reason.to_string()),
            _ => godot_error!(
                "disconnect_peer_with_code: invalid close code {code} (use 1000-1003, 1007-1014 or 3000-4999)"
            ),
        }
    }

    /// Whether peer `id` is connected (server: a client's id; client: 1).
    #[func]
    fn has_peer(&self, id: i32) -> bool {
        self.peers.contains_key(&id)
    }

    /// Whether this peer is a server listening for connections.
    #[func]
    fn is_listening(&self) -> bool {
        matches!(self.mode, Mode::Server(_))
    }

    /// The ids of the connected peers (server: the clients; client: `[1]` once connected).
    #[func]
    fn get_peer_ids(&self) -> PackedInt32Array {
        let mut ids: Vec<i32> = self.peers.keys().copied().collect();
        ids.sort_unstable();
        PackedInt32Array::from(ids.as_slice())
    }

    /// Sends `text` as a WebSocket text frame to peer `id` (server: 0 = everyone, -id =
    /// everyone but id; a client always sends to the server). For non-Godot peers in
    /// raw mode ([member godot_protocol] off); returns the same errors as `put_packet`.
    #[func]
    fn send_text(&mut self, id: i32, text: GString) -> Error {
        if self.status != ConnectionStatus::CONNECTED {
            godot_error!("send_text: the peer is not connected");
            return Error::ERR_UNCONFIGURED;
        }
        self.send(id, Bytes::from(text.to_string()), true)
    }

    /// Sends `data` to peer `id` as one WebSocket message (server: 0 = everyone, -id = everyone
    /// but id; a client always sends to the server), as a text frame when `text` is true (it
    /// must then be valid UTF-8, else [constant ERR_INVALID_DATA]). Unlike `put_packet`, which
    /// the engine turns into a no-op for an empty array, this can send an empty message, and a
    /// text frame from raw bytes (a `String` cannot hold NUL). Same errors as `put_packet`.
    #[func]
    fn send_bytes(
        &mut self,
        id: i32,
        data: PackedByteArray,
        #[opt(default = false)] text: bool,
    ) -> Error {
        if self.status != ConnectionStatus::CONNECTED {
            godot_error!("send_bytes: the peer is not connected");
            return Error::ERR_UNCONFIGURED;
        }
        if text && std::str::from_utf8(data.as_slice()).is_err() {
            godot_error!("send_bytes: text = true needs valid UTF-8 data");
            return Error::ERR_INVALID_DATA;
        }
        let data = self.stage(data.as_slice(), id);
        self.send(id, data, text)
    }

    /// Whether the packet last returned by `get_packet` arrived as a text frame.
    #[func]
    fn was_string_packet(&self) -> bool {
        self.current_was_text
    }

    /// Client: the close code the connection to the server ended with (-1 while open or if
    /// it was not closed cleanly). Readable after `server_disconnected`.
    #[func]
    fn get_close_code(&self) -> i32 {
        match (self.peers.get(&1), &self.last_close) {
            (Some(entry), _) if self.is_client() => entry.conn.close_code(),
            (_, Some((code, _))) => *code,
            _ => -1,
        }
    }

    /// Client: the close reason that came with [method get_close_code].
    #[func]
    fn get_close_reason(&self) -> GString {
        match (self.peers.get(&1), &self.last_close) {
            (Some(entry), _) if self.is_client() => GString::from(&entry.conn.close_reason()),
            (_, Some((_, reason))) => GString::from(reason),
            _ => GString::new(),
        }
    }

    /// Traffic of peer `id`: `bytes_in`, `bytes_out`, `packets_in`, `packets_out` (payload,
    /// without WebSocket framing), `queued_packets_out`, `queued_bytes_out`, `rtt_ms` (from
    /// heartbeat pings, -1 until measured) and `connected_since_unix_ms`. Empty if unknown.
    #[func]
    fn get_peer_stats(&self, id: i32) -> VarDictionary {
        let mut d = VarDictionary::new();
        let Some(entry) = self.peers.get(&id) else {
            godot_error!("get_peer_stats: peer {id} not found");
            return d;
        };
        let conn = &entry.conn;
        let s = conn.stats();
        put(&mut d, "bytes_in", s.bytes_in as i64);
        put(&mut d, "bytes_out", s.bytes_out as i64);
        put(&mut d, "packets_in", s.packets_in as i64);
        put(&mut d, "packets_out", s.packets_out as i64);
        put(&mut d, "queued_packets_out", conn.outbound_queued() as i64);
        put(&mut d, "queued_bytes_out", conn.outbound_buffered() as i64);
        put(
            &mut d,
            "rtt_ms",
            conn.rtt().map_or(-1.0, |r| r.as_secs_f64() * 1000.0),
        );
        put(&mut d, "connected_since_unix_ms", s.opened_unix_ms as i64);
        d
    }

    /// Totals since create_server/create_client: `peer_count` and, over current and departed
    /// peers, `bytes_in`, `bytes_out`, `packets_in`, `packets_out`, plus the current
    /// `queued_packets_out` and `queued_bytes_out`.
    #[func]
    fn get_stats(&self) -> VarDictionary {
        let (t, queued_packets, queued_bytes) = self.totals();
        let mut d = VarDictionary::new();
        put(&mut d, "peer_count", self.peers.len() as i64);
        put(&mut d, "bytes_in", t.bytes_in as i64);
        put(&mut d, "bytes_out", t.bytes_out as i64);
        put(&mut d, "packets_in", t.packets_in as i64);
        put(&mut d, "packets_out", t.packets_out as i64);
        put(&mut d, "queued_packets_out", queued_packets as i64);
        put(&mut d, "queued_bytes_out", queued_bytes as i64);
        d
    }

    /// Adds Godot [Performance] custom monitors for this peer under `category`, so they plot
    /// in the editor's Debugger > Monitors while the game runs: `peers`, `bytes_in_per_s`,
    /// `bytes_out_per_s`, `packets_in_per_s`, `packets_out_per_s`, `queued_bytes_out` and
    /// `rtt_ms` (mean over peers with a heartbeat RTT). Removed by
    /// [method remove_performance_monitors] or when this peer is freed; calling it again with
    /// another category moves them. Returns
    /// [constant ERR_ALREADY_IN_USE] if monitors with these ids exist.
    #[func]
    fn add_performance_monitors(
        &mut self,
        #[opt(default = "RustWebSocket")] category: GString,
    ) -> Error {
        let mut perf = Performance::singleton();
        let ids: Vec<(StringName, &str)> = MONITORS
            .iter()
            .map(|name| (StringName::from(&format!("{category}/{name}")), *name))
            .collect();
        if let Some((taken, _)) = ids.iter().find(|(id, _)| perf.has_custom_monitor(id)) {
            godot_error!("add_performance_monitors: a monitor '{taken}' already exists");
            return Error::ERR_ALREADY_IN_USE;
        }
        self.remove_performance_monitors();
        let callable = Callable::from_object_method(&self.to_gd(), "get_monitor");
        for (id, name) in ids {
            let args = varray![name];
            perf.add_custom_monitor_ex(&id, &callable)
                .arguments(&args)
                .done();
            self.monitors.push(id);
        }
        Error::OK
    }

    /// Removes the monitors added by [method add_performance_monitors].
    #[func]
    fn remove_performance_monitors(&mut self) {
        if self.monitors.is_empty() {
            return;
        }
        let mut perf = Performance::singleton();
        for id in self.monitors.drain(..) {
            if perf.has_custom_monitor(&id) {
                perf.remove_custom_monitor(&id);
            }
        }
    }

    /// The value behind monitor `name` (see [method add_performance_monitors]); rates are
    /// per second since the previous call for the same name.
    #[func]
    fn get_monitor(&mut self, name: GString) -> f64 {
        let name = name.to_string();
        let (totals, _, queued_bytes) = self.totals();
        let counter = match name.as_str() {
            "peers" => return self.peers.len() as f64,
            "queued_bytes_out" => return queued_bytes as f64,
            "rtt_ms" => {
                let rtts: Vec<f64> = self
                    .peers
                    .values()
                    .filter_map(|e| e.conn.rtt())
                    .map(|r| r.as_secs_f64() * 1000.0)
                    .collect();
                return if rtts.is_empty() {
                    0.0
                } else {
                    rtts.iter().sum::<f64>() / rtts.len() as f64
                };
            }
            "bytes_in_per_s" => totals.bytes_in,
            "bytes_out_per_s" => totals.bytes_out,
            "packets_in_per_s" => totals.packets_in,
            "packets_out_per_s" => totals.packets_out,
            _ => {
                godot_error!("get_monitor: unknown monitor '{name}'");
                return 0.0;
            }
        };
        let now = std::time::Instant::now();
        let previous = self.monitor_samples.insert(name, (now, counter));
        match previous {
            Some((then, before)) if now > then && counter >= before => {
                (counter - before) as f64 / (now - then).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    /// Server: `handler` is called on the main thread with a [RustWebSocketHandshake] for
    /// each pending connection, before the WebSocket upgrade is answered: path, query,
    /// headers and remote address, to check a token or refuse when full. The handler answers
    /// with `handshake.accept()` / `handshake.reject(status, reason)` now or later, or by
    /// returning `true` (accept), `false` (403) or an HTTP status. No answer within
    /// `handshake_timeout` drops the connection; a handler that neither answers nor keeps
    /// the handshake object refuses it at once with 503. An empty Callable removes the handler.
    /// [codeblock]
    /// peer.set_handshake_handler(func(h: RustWebSocketHandshake):
    ///     if h.get_query() != "token=" + secret:
    ///         h.reject(401, "Unauthorized")
    ///     elif peer.get_peer_ids().size() >= 64:
    ///         h.reject(503, "Server full")
    ///     else:
    ///         h.accept())
    /// [/codeblock]
    #[func]
    fn set_handshake_handler(&mut self, handler: Callable) {
        self.handshake_handler = handler.is_valid().then_some(handler);
        if let Mode::Server(server) = &self.mode {
            server.set_admission(self.handshake_handler.is_some());
        }
    }

    #[func]
    fn set_slow_peer_timeout(&mut self, seconds: f64) {
        if !(seconds >= 0.0 && seconds.is_finite()) {
            godot_error!(
                "slow_peer_timeout must be 0 or a positive number of seconds, got {seconds}"
            );
            return;
        }
        self.slow_peer_timeout = seconds;
    }

    #[func]
    fn set_heartbeat_interval(&mut self, interval: f64) {
        if !(interval >= 0.0 && interval.is_finite()) {
            godot_error!("heartbeat_interval must be 0 (off) or a positive number of seconds, got {interval}");
            return;
        }
        self.heartbeat_interval = interval;
    }

    #[func]
    fn set_handshake_timeout(&mut self, timeout: f64) {
        if !(timeout > 0.0 && timeout.is_finite()) {
            godot_error!("handshake_timeout must be a positive number of seconds, got {timeout}");
            return;
        }
        self.handshake_timeout = timeout;
    }
}

impl RustWebSocketMultiplayerPeer {
    fn config(&self, what: &str) -> Result<PeerConfig, Error> {
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
            trusted_proxies: self
                .trusted_proxies
                .as_slice()
                .iter()
                .map(|p| {
                    TrustedProxy::parse(&p.to_string()).map_err(|why| {
                        godot_error!("{what}: invalid trusted_proxies entry: {why}");
                        Error::ERR_INVALID_PARAMETER
                    })
                })
                .collect::<Result<_, _>>()?,
            heartbeat_interval: (self.heartbeat_interval > 0.0)
                .then(|| Duration::from_secs_f64(self.heartbeat_interval)),
        })
    }

    /// Drops everything at once: sockets, queued packets, pending handshakes. No signals.
    fn reset(&mut self) {
        match std::mem::take(&mut self.mode) {
            Mode::Server(server) => server.close(),
            Mode::Client(client) => client.close(),
            Mode::Idle => {}
        }
        for (_, entry) in self.peers.drain() {
            entry.conn.abort();
        }
        self.incoming.clear();
        self.current = None;
        self.events = None;
        self.status = ConnectionStatus::DISCONNECTED;
        self.unique_id = 0;
        self.epoch += 1;
    }

    fn is_client(&self) -> bool {
        matches!(self.mode, Mode::Client(_))
    }

    /// Drains what the runtime reported into `incoming` and a list of actions.
    fn drain_events(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        let Some(rx) = &self.events else {
            return actions;
        };
        // Only what is there now: a fast sender must not keep poll() busy forever.
        let pending = rx.len();
        for event in rx.try_iter().take(pending) {
            match event {
                Event::Packet(packet) => {
                    if self.peers.contains_key(&packet.from()) {
                        if self.raw_session {
                            actions.push(Action::DataReceived(packet.from()));
                        }
                        self.incoming.push_back(packet);
                    }
                }
                Event::Connected { conn, id } => {
                    let peer_id = if matches!(self.mode, Mode::Client(_)) {
                        if self.status != ConnectionStatus::CONNECTING {
                            continue;
                        }
                        self.unique_id = id;
                        self.status = ConnectionStatus::CONNECTED;
                        1
                    } else {
                        id
                    };
                    self.peers.insert(peer_id, PeerEntry { conn, handle: None });
                    actions.push(Action::Connected(peer_id));
                }
                Event::Disconnected { id } => {
                    if self.peers.contains_key(&id) {
                        actions.push(Action::Disconnected(id));
                    }
                }
                Event::ConnectFailed { reason } => {
                    if self.status == ConnectionStatus::CONNECTING {
                        godot_error!("RustWebSocketMultiplayerPeer: connection failed: {reason}");
                        actions.push(Action::ConnectFailed);
                    }
                }
                Event::CloseRequest { id, code, reason } => {
                    if self.peers.contains_key(&id) {
                        actions.push(Action::CloseRequest(id, code, reason));
                    }
                }
                Event::Admission { request, ticket } => {
                    actions.push(Action::Admission(*request, ticket));
                }
                Event::Error { message } => godot_error!("RustWebSocketMultiplayerPeer: {message}"),
            }
        }
        actions
    }

    fn emit(&mut self, signal: &str, args: &[Variant]) {
        self.base_mut().emit_signal(signal, args);
    }

    /// Hands a pending connection to the handshake handler. A bool or an HTTP status returned
    /// by the handler answers at once; otherwise the handler answers through the object.
    fn admit(&mut self, request: AdmissionRequest, ticket: AdmissionTicket) {
        let Some(handler) = self.handshake_handler.clone() else {
            ticket.answer(Admission::Accept); // The handler was removed meanwhile.
            return;
        };
        let handshake = RustWebSocketHandshake::new_gd(request, ticket);
        // Through base_mut(): the handler may call back into this peer (e.g. get_peer_ids()).
        let verdict = {
            let _reentrant = self.base_mut();
            handler.call(&[handshake.to_variant()])
        };
        if handshake.bind().is_answered() {
            return;
        }
        match verdict.get_type() {
            VariantType::BOOL if verdict.to::<bool>() => handshake.bind().accept(),
            VariantType::BOOL => handshake.bind().reject(403, "Forbidden".into()),
            VariantType::INT => {
                // reject() reports a status outside 400-599; never panic on odd values.
                let status = verdict.try_to::<i64>().unwrap_or(0);
                let status = i32::try_from(status).unwrap_or(0);
                let phrase = u16::try_from(status).map_or("Rejected", reason_phrase);
                handshake.bind().reject(status, GString::from(phrase));
            }
            _ => {} // Answered later through the handshake object, or at the timeout.
        }
    }

    /// Drops peer `id` from the table (its traffic goes into the totals) and its socket.
    fn forget_peer(&mut self, id: i32) {
        if let Some(entry) = self.peers.remove(&id) {
            self.closed_totals.add(&entry.conn.stats());
            entry.conn.abort();
        }
    }

    /// Traffic since create_* (departed peers included) and what is queued out now
    /// (packets, bytes): what get_stats() and the monitors report.
    fn totals(&self) -> (rwsmp_core::connection::ConnectionStats, usize, usize) {
        let mut t = self.closed_totals;
        let (mut queued_packets, mut queued_bytes) = (0usize, 0usize);
        for entry in self.peers.values() {
            t.add(&entry.conn.stats());
            queued_packets += entry.conn.outbound_queued();
            queued_bytes += entry.conn.outbound_buffered();
        }
        (t, queued_packets, queued_bytes)
    }

    /// Clears what belongs to the previous session before a create_* call.
    fn start_session(&mut self) {
        self.reset();
        self.closed_totals = Default::default();
        self.last_close = None;
        self.raw_session = !self.godot_protocol;
    }

    /// Copies an outgoing payload for `target` out of Godot's memory. Small payloads share
    /// arena chunks, which saves a `malloc` on this thread and a cross-thread `free` on the
    /// runtime's for each packet; a chunk is freed once every packet in it has been written.
    /// Only payloads every peer gets share chunks (a client's, whose one peer is the server,
    /// and a server's broadcasts): a peer that stops reading then pins little more than its
    /// own queued packets. Mixing one peer's packets with others' would let it pin a whole
    /// chunk per queued packet.
    fn stage(&mut self, data: &[u8], target: i32) -> Bytes {
        let to_everyone = target <= 0 || self.is_client();
        if !to_everyone || data.len() > SEND_ARENA / 4 {
            return Bytes::copy_from_slice(data);
        }
        if self.send_arena.capacity() - self.send_arena.len() < data.len() {
            self.send_arena = BytesMut::with_capacity(SEND_ARENA);
        }
        self.send_arena.extend_from_slice(data);
        self.send_arena.split().freeze()
    }

    fn send(&mut self, target: i32, data: Bytes, text: bool) -> Error {
        let limit = usize::try_from(self.outbound_buffer_size).unwrap_or(0);
        if let Err(e) = send::check_size(data.len(), limit, "put_packet") {
            return e;
        }
        if self.is_client() {
            return match self.peers.get(&1) {
                Some(entry) => send::queue(&entry.conn, data, text, "put_packet"),
                None => Error::ERR_UNCONFIGURED,
            };
        }
        if target > 0 {
            return match self.peers.get(&target) {
                Some(entry) => send::queue(&entry.conn, data, text, "put_packet"),
                None => {
                    godot_error!("put_packet: peer {target} not found");
                    Error::ERR_INVALID_PARAMETER
                }
            };
        }
        // Broadcast: a peer too slow for it is closed and reported rather than holding back
        // the others (see slow_peer_timeout).
        let excluded = -target;
        let patience = Duration::from_secs_f64(self.slow_peer_timeout);
        for (id, entry) in self.peers.iter().filter(|(id, _)| **id != excluded) {
            if entry
                .conn
                .send_broadcast(data.clone(), text, patience)
                .is_err()
            {
                godot_warn!(
                    "put_packet: peer {id} is closed (1008): its outbound queue stayed full \
                     ({} packets, {} bytes queued) for more than slow_peer_timeout ({} s)",
                    entry.conn.outbound_queued(),
                    entry.conn.outbound_buffered(),
                    self.slow_peer_timeout
                );
            }
        }
        Error::OK
    }
}

/// Size of one send arena chunk; payloads over a quarter of it get their own allocation.
/// A chunk is freed once every packet in it is written; one peer object keeps at most one
/// chunk with room in it (see `stage` for which payloads go there).
const SEND_ARENA: usize = 256 * 1024;

/// Monitor names, as registered under the category by add_performance_monitors().
const MONITORS: [&str; 7] = [
    "peers",
    "bytes_in_per_s",
    "bytes_out_per_s",
    "packets_in_per_s",
    "packets_out_per_s",
    "queued_bytes_out",
    "rtt_ms",
];

fn put<V: ToGodot>(d: &mut VarDictionary, key: &str, value: V) {
    d.set(&key.to_variant(), &value.to_variant());
}

#[godot_api]
impl IMultiplayerPeerExtension for RustWebSocketMultiplayerPeer {
    fn poll(&mut self) {
        rwsmp_core::connection::refill_direct_budget();
        let epoch = self.epoch;
        let actions = self.drain_events();
        if actions.is_empty() {
            return;
        }
        // A signal handler may drop the last reference to this peer (for example
        // `multiplayer.multiplayer_peer = null`), which must not destroy it while this call runs.
        // Hold one reference until the engine's next deferred-call flush.
        let mut keep_alive = Some(self.to_gd());
        Callable::from_fn("RustWebSocketMultiplayerPeer.keep_alive", move |_| {
            keep_alive.take();
        })
        .call_deferred(&[]);
        for action in actions {
            // A signal handler may have closed or re-created this peer.
            if self.epoch != epoch {
                return;
            }
            match action {
                Action::Connected(id) => {
                    self.emit("peer_connected", &[id.to_variant()]);
                    if self.epoch == epoch && self.is_server() {
                        let protocol = self
                            .peers
                            .get(&id)
                            .map_or_else(GString::new, |e| GString::from(&e.conn.info().protocol));
                        self.emit(
                            "client_connected",
                            &[id.to_variant(), protocol.to_variant()],
                        );
                    }
                }
                Action::Disconnected(id) => {
                    let (clean, close) = self.peers.get(&id).map_or((false, None), |e| {
                        (
                            e.conn.was_clean(),
                            Some((e.conn.close_code(), e.conn.close_reason())),
                        )
                    });
                    // Emitted while the peer is still known, so handlers can read its close code.
                    self.emit("peer_disconnected", &[id.to_variant()]);
                    if self.epoch == epoch && self.is_server() {
                        self.emit(
                            "client_disconnected",
                            &[id.to_variant(), clean.to_variant()],
                        );
                    }
                    if self.epoch != epoch {
                        return;
                    }
                    self.forget_peer(id);
                    if self.is_client() {
                        self.reset();
                        self.last_close = close;
                    }
                }
                Action::CloseRequest(id, code, reason) => {
                    if self.is_server() {
                        let args = [
                            id.to_variant(),
                            code.to_variant(),
                            GString::from(&reason).to_variant(),
                        ];
                        self.emit("client_close_request", &args);
                    }
                }
                Action::Admission(request, ticket) => self.admit(request, ticket),
                Action::ConnectFailed => self.reset(),
                Action::DataReceived(id) => self.emit("data_received", &[id.to_variant()]),
            }
        }
    }

    unsafe fn get_packet_rawptr(
        &mut self,
        r_buffer: RawPtr<*mut RawPtr<*const u8>>,
        r_buffer_size: RawPtr<*mut i32>,
    ) -> Error {
        self.current = None;
        if self.status != ConnectionStatus::CONNECTED {
            godot_error!("get_packet: the peer is not connected");
            return Error::ERR_UNCONFIGURED;
        }
        let Some(packet) = self.incoming.pop_front() else {
            godot_error!("get_packet: no packet available");
            return Error::ERR_UNAVAILABLE;
        };
        self.current_was_text = packet.was_text();
        let data = packet.take_data();
        // SAFETY: Godot passes valid out-pointers; the buffer stays alive in `self.current`
        // until the next get_packet call. Packets are capped far below i32::MAX.
        unsafe {
            r_buffer.ptr().cast::<*const u8>().write(data.as_ptr());
            r_buffer_size.ptr().write(data.len() as i32);
        }
        self.current = Some(data);
        Error::OK
    }

    unsafe fn put_packet_rawptr(
        &mut self,
        p_buffer: RawPtr<*const u8>,
        p_buffer_size: i32,
    ) -> Error {
        if self.status != ConnectionStatus::CONNECTED {
            godot_error!("put_packet: the peer is not connected");
            return Error::ERR_UNCONFIGURED;
        }
        let len = usize::try_from(p_buffer_size).unwrap_or(0);
        let data = if len == 0 || p_buffer.ptr().is_null() {
            Bytes::new()
        } else {
            // SAFETY: Godot guarantees `p_buffer_size` readable bytes at `p_buffer`.
            self.stage(
                unsafe { std::slice::from_raw_parts(p_buffer.ptr(), len) },
                self.target_peer,
            )
        };
        self.send(self.target_peer, data, false)
    }

    fn get_available_packet_count(&self) -> i32 {
        self.incoming.len() as i32
    }

    fn get_max_packet_size(&self) -> i32 {
        self.outbound_buffer_size - PROTO_SIZE
    }

    fn get_packet_channel(&self) -> i32 {
        0
    }

    fn get_packet_mode(&self) -> TransferMode {
        TransferMode::RELIABLE
    }

    fn set_transfer_channel(&mut self, channel: i32) {
        self.transfer_channel = channel;
    }

    fn get_transfer_channel(&self) -> i32 {
        self.transfer_channel
    }

    fn set_transfer_mode(&mut self, mode: TransferMode) {
        self.transfer_mode = mode;
    }

    fn get_transfer_mode(&self) -> TransferMode {
        self.transfer_mode
    }

    fn set_target_peer(&mut self, peer: i32) {
        self.target_peer = peer;
    }

    fn get_packet_peer(&self) -> i32 {
        self.incoming.front().map_or(1, |p| p.from())
    }

    fn is_server(&self) -> bool {
        matches!(self.mode, Mode::Server(_))
    }

    fn close(&mut self) {
        self.reset();
    }

    fn disconnect_peer(&mut self, peer: i32, force: bool) {
        let Some(entry) = self.peers.get(&peer) else {
            godot_error!("disconnect_peer: peer {peer} not found");
            return;
        };
        if !force {
            entry.conn.close(1000, "");
            return;
        }
        self.forget_peer(peer);
        if self.is_client() {
            self.reset();
        }
    }

    fn get_unique_id(&self) -> i32 {
        self.unique_id
    }

    fn set_refuse_new_connections(&mut self, enable: bool) {
        self.refusing = enable;
        if let Mode::Server(server) = &self.mode {
            server.set_refusing(enable);
        }
    }

    fn is_refusing_new_connections(&self) -> bool {
        self.refusing
    }

    fn is_server_relay_supported(&self) -> bool {
        true
    }

    fn get_connection_status(&self) -> ConnectionStatus {
        self.status
    }
}

impl Drop for RustWebSocketMultiplayerPeer {
    fn drop(&mut self) {
        self.remove_performance_monitors();
        self.reset();
    }
}
