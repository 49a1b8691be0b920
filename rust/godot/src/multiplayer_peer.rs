//! `RustWebSocketMultiplayerPeer`: the Godot-facing object, read here as its API: the
//! properties, methods and signals with their editor docs (F1), and the `MultiplayerPeer`
//! virtuals. It owns no socket; `poll()` drains the runtime's event queue and `put_packet`
//! pushes onto per-peer queues. The work behind the API is in the child modules:
//!
//! - `events`: `poll()`, draining the runtime's events and emitting the signals
//! - `outgoing`: the send arena and the routing of a message to one peer or everyone
//! - `stats`: `get_peer_stats()`, `get_stats()` and the Performance monitors
//! - `admission`: the handshake handler's glue
//! - `drain`: `shutdown()`, the graceful drain
//! - `termination`: `shutdown_on_sigterm`, SIGTERM/SIGINT turned into a drain
//! - `session`: `create_server` / `create_client` (checks, TLS options, starting the core)
//! - `settings`: the properties as the core's `PeerConfig`
//!
//! Over 500 lines for one reason: the editor's help for every property, method and signal is
//! written here, on the API it describes.

mod admission;
mod drain;
mod events;
mod outgoing;
mod session;
mod settings;
mod stats;
mod termination;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crossbeam_channel::Receiver;
use godot::classes::multiplayer_peer::{ConnectionStatus, TransferMode};
use godot::classes::{IMultiplayerPeerExtension, MultiplayerPeerExtension};
use godot::global::Error;
use godot::meta::conv::RawPtr;
use godot::prelude::*;
use rust_websocket_core::client::Client;
use rust_websocket_core::connection::{Connection, ConnectionStats};
use rust_websocket_core::events::{Event, InboundPacket};
use rust_websocket_core::server::Server;
use rust_websocket_core::Bytes;

use crate::tls_options::OptTls;
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

/// A drop-in replacement for Godot's [WebSocketMultiplayerPeer] whose networking runs on a
/// background tokio runtime.
///
/// Same properties, methods, defaults, error codes and signals as the built-in class, and
/// wire-compatible with it: a built-in peer can be the server or a client on the other end.
/// The main thread never waits on the network (its one socket call is a non-blocking write of
/// a packet when nothing is queued for that peer); [method MultiplayerPeer.poll] only drains
/// what the runtime received, so its cost does not grow with idle peers.
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
    /// handshake handler (the rightmost entry that is not itself a trusted proxy);
    /// `get_peer_port()` stays the proxy connection's port unless
    /// [member trust_forwarded_port] is on. Empty (default): the headers are ignored, as they
    /// can be forged. Applies to the next create_server.
    #[var]
    trusted_proxies: PackedStringArray,
    /// With [member trusted_proxies]: read a trusted proxy's `X-Forwarded-Port` as the
    /// client's own (source) port, for `get_peer_port()` and the handshake handler: the entry
    /// at the same place from the right as the `X-Forwarded-For` entry chosen (none there:
    /// the proxy connection's port; not a port: ignored with a warning). Turn it on only for
    /// a proxy that writes the client's port there, such as nginx with
    /// `proxy_set_header X-Forwarded-Port $remote_port`. Default false: the header is
    /// ignored, because AWS ALB, Traefik and most other proxies send the port the client
    /// reached *them* on (443), which would give every peer the same port. Applies to the next
    /// create_server.
    #[var]
    trust_forwarded_port: bool,
    /// Server behind a TCP load balancer (HAProxy `send-proxy` / `send-proxy-v2`, AWS NLB,
    /// nginx stream `proxy_protocol on`): connections from [member trusted_proxies] must start
    /// with a PROXY protocol header (v1 or v2), and the client it names is what
    /// `get_peer_address()`, `get_peer_port()`, `get_peer(id).get_connected_host()` / `_port()`
    /// and the handshake handler report. A trusted connection without a valid header by
    /// [member handshake_timeout], and a header from any other address, close that connection
    /// with an error message; nobody else is affected. Default false. Applies to the next
    /// create_server.
    #[var]
    proxy_protocol: bool,
    /// Server: a path such as `"/healthz"` on which a plain HTTP `GET` (no WebSocket upgrade)
    /// is answered by the network thread, for load balancers and orchestrators: `200 OK` while
    /// accepting, `503 Service Unavailable` while [member MultiplayerPeer.refuse_new_connections]
    /// is on (new WebSocket clients then get a 503 too, instead of a closed socket). Empty
    /// (default): off, and such a request gets 400 as before. Must start with `/`, without a
    /// query. [member health_allow] can limit who gets an answer. Applies to the next
    /// create_server.
    #[var]
    health_path: GString,
    /// Who gets an answer on [member health_path]: IPs or CIDR ranges such as
    /// `"10.0.0.0/8"` (the same form as [member metrics_allow]), matched against the TCP peer,
    /// or the client a PROXY protocol header names (so players coming through the balancer
    /// are not its health checks), never against `X-Forwarded-For`. Any other address gets
    /// what a request on any other path gets (400, or 503 while refusing), as if there were no
    /// health path. Empty (default): everyone. Applies to the next create_server.
    #[var]
    health_allow: PackedStringArray,
    /// Not in the built-in: permessage-deflate (RFC 7692). Off by default, so nothing changes
    /// on the wire. On: a client offers it and a server accepts a client's offer; a peer that
    /// does not offer or accept it (the built-in peer) gets plain frames as before. Messages
    /// are compressed and decompressed on the runtime's threads, never on the main thread;
    /// [member inbound_buffer_size] caps a message's decompressed size (larger: closed with
    /// 1009 before the memory is taken). Applies to the next create_server/create_client.
    #[var]
    compression_enabled: bool,
    /// With [member compression_enabled]: messages shorter than this many bytes are sent
    /// uncompressed (small packets rarely shrink, and they may leave from the calling thread
    /// at once, as without compression). Default 1024; 0 compresses every message.
    #[var(set = set_compression_threshold)]
    #[init(val = 1024)]
    compression_threshold: i32,
    /// With [member compression_enabled]: zlib's level, 0 (no compression, stored blocks) to
    /// 9 (smallest, slowest). Default 6; 1 is the fastest that compresses.
    #[var(set = set_compression_level)]
    #[init(val = 6)]
    compression_level: i32,
    /// With [member compression_enabled]: ask for no context takeover both ways, so each
    /// message is compressed on its own. Messages come out somewhat larger, but a connection
    /// keeps no compression state between messages (otherwise each holds a deflate stream of
    /// about 300 KiB and an inflate stream of about 40 KiB, by zlib's sizing, once it has
    /// used them: a server with many clients saves that much per client). Default false.
    #[var]
    compression_no_context_takeover: bool,
    /// Server: a path such as `"/metrics"` on which a plain HTTP `GET` (no WebSocket upgrade)
    /// is answered by the network thread with the server's counters in the Prometheus text
    /// format 0.0.4: peers, connections accepted / refused / rejected by the handshake
    /// handler, handshake failures, TLS failures by cause, payload bytes and messages each
    /// way (the totals of [method get_stats]), queued bytes, closes by code and a heartbeat
    /// RTT histogram (with [member heartbeat_interval] on). Only [member metrics_allow] may read it. Empty
    /// (default): off. Must start with `/`, without a query, and differ from
    /// [member health_path]. Applies to the next create_server.
    #[var]
    metrics_path: GString,
    /// Who may read [member metrics_path]: IPs or CIDR ranges such as `"10.0.0.0/8"`, matched
    /// against the TCP peer (or the client a PROXY protocol header names), never against
    /// `X-Forwarded-For`. Others get `403 Forbidden`. Empty (default): loopback only.
    /// Applies to the next create_server.
    #[var]
    metrics_allow: PackedStringArray,
    /// Server: seconds [method shutdown] waits before it closes the listener and sends the
    /// close frames. Meanwhile [member health_path] answers `503` and everything else goes on
    /// (players keep playing, new clients are still accepted), so a load balancer's health
    /// checks take the server out of rotation first and the clients told to leave reconnect
    /// to another server. Set it above the balancer's time to mark a server down (HAProxy:
    /// `inter` × `fall`; Kubernetes: the readiness probe's `periodSeconds` ×
    /// `failureThreshold`). Default 0: the listener closes at once.
    #[var(set = set_shutdown_delay)]
    shutdown_delay: f64,
    /// Catch SIGTERM and SIGINT while this peer is active (from create_server/create_client
    /// until it is closed or its shutdown is over). A headless Godot does not: they end the
    /// process at once, and an orchestrator's rolling update (Kubernetes, Nomad, Agones,
    /// `docker stop`) cuts every player off. With this on, [method MultiplayerPeer.poll]
    /// emits [signal termination_requested], then calls
    /// `shutdown(shutdown_timeout, 1001, "server shutting down")` unless a handler of that
    /// signal already called [method shutdown] (with a code and reason of its own) or closed
    /// the peer. [member shutdown_delay] applies as for any [method shutdown] ([member
    /// health_path] answers 503 first). Quit the game on [signal shutdown_completed]. A second
    /// SIGTERM or SIGINT ends the process at once, as without this (Ctrl+C twice; an
    /// orchestrator sends SIGKILL after its grace period anyway). Several peers may have it
    /// on: the handler is installed once and each of them sees the signal; the signals'
    /// previous handling comes back when no active peer has it on. Unix only (Linux, macOS,
    /// Android); elsewhere a warning says it does nothing. Default false.
    /// [codeblock]
    /// peer.shutdown_on_sigterm = true
    /// peer.shutdown_delay = 5.0       # 503 on the health path while the balancer notices
    /// peer.shutdown_timeout = 20.0
    /// peer.shutdown_completed.connect(func(_cut): get_tree().quit())
    /// [/codeblock]
    #[var(set = set_shutdown_on_sigterm)]
    shutdown_on_sigterm: bool,
    /// Seconds the players get to leave in the [method shutdown] that
    /// [member shutdown_on_sigterm] starts (its `timeout`, counted from the end of
    /// [member shutdown_delay]). Default 10.0. A [method shutdown] the game calls itself takes
    /// its own.
    #[var(set = set_shutdown_timeout)]
    #[init(val = 10.0)]
    shutdown_timeout: f64,

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
    /// Where outgoing payloads are copied (see `outgoing`).
    send_arena: outgoing::SendArena,
    events: Option<Receiver<Event>>,
    /// The plain sockets with input waiting, read by `poll()` itself (core `ready`).
    ready: Option<std::sync::Arc<rust_websocket_core::ready::ReadySockets>>,
    /// Bumped by every reset, so `poll()` notices when a signal handler closed the peer.
    epoch: u64,
    /// Whether the last packet returned by get_packet was a text frame.
    current_was_text: bool,
    /// The current session runs without the Godot protocol (`godot_protocol` when create_* ran).
    raw_session: bool,
    /// Traffic of peers already gone, for get_stats().
    closed_totals: ConnectionStats,
    /// Client: close code and reason of the connection to the server, once it ended.
    last_close: Option<(i32, String)>,
    /// Called with a RustWebSocketHandshake for each pending connection, if set.
    handshake_handler: Option<Callable>,
    /// The Performance monitors registered by add_performance_monitors().
    monitors: stats::Monitors,
    /// A shutdown() in progress.
    drain: Option<drain::Drain>,
    /// This peer's hold on the SIGTERM/SIGINT handler (`shutdown_on_sigterm`, while active).
    termination: Option<rust_websocket_core::termination::TerminationWatch>,
    /// Peers whose end arrived with packets of theirs still unread: reported on the next
    /// poll, so that the game (SceneMultiplayer reads after each poll) gets those packets.
    deferred_disconnects: Vec<i32>,
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
        self.start_server(port, &bind_address, &tls_server_options)
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
        self.start_client(&url, &tls_client_options)
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

    /// Graceful shutdown, for a server that is being replaced (an orchestrator's SIGTERM and
    /// grace period): after [member shutdown_delay] (default 0: at once; the
    /// [member health_path] answers 503 meanwhile) the listener closes (new clients fail
    /// fast; the [member health_path] stops answering), each peer gets the packets already queued for
    /// it, then a close frame with `code` (1000-1003, 1007-1014, 3000-4999; default 1001
    /// "going away") and `reason`, which clients read with `get_close_code()` /
    /// `get_close_reason()`. Keep calling [method MultiplayerPeer.poll] (SceneMultiplayer
    /// does): `peer_disconnected` comes for each peer as its close handshake ends; after
    /// `timeout` seconds the peers left are cut and reported too. Then `shutdown_completed`
    /// is emitted and the status is DISCONNECTED; `timeout` counts from the end of the delay. On a client it closes the connection to the
    /// server the same way. Returns [constant ERR_UNCONFIGURED] if the peer is not active or
    /// already shutting down; [method MultiplayerPeer.close] during it ends it at once, without
    /// the signal.
    #[func]
    fn shutdown(
        &mut self,
        #[opt(default = 10.0)] timeout: f64,
        #[opt(default = 1001)] code: i32,
        #[opt(default = "")] reason: GString,
    ) -> Error {
        self.start_drain(timeout, code, &reason.to_string())
    }

    /// The end of [method shutdown]: every peer is gone. `forced_peers` of them did not finish
    /// their close handshake within the timeout and were cut (each reported with
    /// `peer_disconnected` before this).
    #[signal]
    fn shutdown_completed(forced_peers: i64);

    /// With [member shutdown_on_sigterm]: the process received SIGTERM (`signal_number` 15)
    /// or SIGINT (2). Emitted in [method MultiplayerPeer.poll], on the main thread; the peer
    /// calls [method shutdown] right after, unless a handler of this signal did (e.g. with
    /// its own close code and reason) or closed the peer. Save what must be saved here.
    #[signal]
    fn termination_requested(signal_number: i64);

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

    /// Whether this peer is a server whose listener accepts connections: true from
    /// create_server, also while [member refuse_new_connections] is set (the listener
    /// accepts and refuses) and during a [method shutdown]'s [member shutdown_delay] (the
    /// health path already answers 503, new clients are still accepted); false once the
    /// shutdown closes the listener, and after close.
    #[func]
    fn is_listening(&self) -> bool {
        matches!(self.mode, Mode::Server(_)) && self.listener_open()
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
    /// without WebSocket framing, decompressed), `wire_bytes_in`, `wire_bytes_out` (the same
    /// payload as it crossed the wire: smaller where [member compression_enabled] compressed
    /// it), `queued_packets_out`, `queued_bytes_out`, `rtt_ms` (from heartbeat pings, -1 until
    /// measured; on Linux, while this game polls at least every 0.5 ms, the pong is read by
    /// its `poll()`, so the figure includes up to one such frame) and `connected_since_unix_ms`. Empty
    /// if unknown.
    #[func]
    fn get_peer_stats(&self, id: i32) -> VarDictionary {
        match self.peers.get(&id) {
            Some(entry) => stats::peer_stats(&entry.conn),
            None => {
                godot_error!("get_peer_stats: peer {id} not found");
                VarDictionary::new()
            }
        }
    }

    /// Totals since create_server/create_client: `peer_count` and, over current and departed
    /// peers, `bytes_in`, `bytes_out`, `wire_bytes_in`, `wire_bytes_out` (before and after
    /// compression, see [method get_peer_stats]), `packets_in`, `packets_out`, plus the current
    /// `queued_packets_out` and `queued_bytes_out`.
    #[func]
    fn get_stats(&self) -> VarDictionary {
        self.stats()
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
        self.add_monitors(&category)
    }

    /// Removes the monitors added by [method add_performance_monitors].
    #[func]
    fn remove_performance_monitors(&mut self) {
        self.remove_monitors();
    }

    /// The value behind monitor `name` (see [method add_performance_monitors]); rates are
    /// per second since the previous call for the same name.
    #[func]
    fn get_monitor(&mut self, name: GString) -> f64 {
        self.monitor(name.to_string())
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
        if seconds_or_zero("slow_peer_timeout", seconds) {
            self.slow_peer_timeout = seconds;
        }
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
    fn set_compression_threshold(&mut self, bytes: i32) {
        if bytes < 0 {
            godot_error!("compression_threshold must be 0 or a number of bytes, got {bytes}");
            return;
        }
        self.compression_threshold = bytes;
    }

    #[func]
    fn set_compression_level(&mut self, level: i32) {
        if !(0..=9).contains(&level) {
            godot_error!("compression_level must be 0 to 9, got {level}");
            return;
        }
        self.compression_level = level;
    }

    #[func]
    fn set_handshake_timeout(&mut self, timeout: f64) {
        if !(timeout > 0.0 && timeout.is_finite()) {
            godot_error!("handshake_timeout must be a positive number of seconds, got {timeout}");
            return;
        }
        self.handshake_timeout = timeout;
    }

    #[func]
    fn set_shutdown_delay(&mut self, seconds: f64) {
        if seconds_or_zero("shutdown_delay", seconds) {
            self.shutdown_delay = seconds;
        }
    }

    #[func]
    fn set_shutdown_timeout(&mut self, seconds: f64) {
        if seconds_or_zero("shutdown_timeout", seconds) {
            self.shutdown_timeout = seconds;
        }
    }

    #[func]
    fn set_shutdown_on_sigterm(&mut self, enable: bool) {
        self.shutdown_on_sigterm = enable;
        self.update_termination_watch();
    }
}

impl RustWebSocketMultiplayerPeer {
    /// Drops everything at once: sockets, queued packets, pending handshakes. No signals.
    fn reset(&mut self) {
        match std::mem::take(&mut self.mode) {
            Mode::Server(server) => server.close(),
            Mode::Client(client) => client.close(),
            Mode::Idle => {}
        }
        for (_, entry) in self.peers.drain() {
            entry.conn.abort_unreported();
        }
        self.incoming.clear();
        self.deferred_disconnects.clear();
        self.current = None;
        self.events = None;
        self.ready = None;
        self.status = ConnectionStatus::DISCONNECTED;
        self.unique_id = 0;
        self.epoch += 1;
        self.termination = None;
    }

    fn is_client(&self) -> bool {
        matches!(self.mode, Mode::Client(_))
    }

    /// Drops peer `id` from the table (its traffic goes into the totals) and its socket.
    fn forget_peer(&mut self, id: i32) {
        if let Some(entry) = self.peers.remove(&id) {
            self.closed_totals.add(&entry.conn.stats());
            entry.conn.abort_unreported();
        }
    }

    /// Clears what belongs to the previous session before a create_* call.
    fn start_session(&mut self) {
        self.reset();
        self.closed_totals = Default::default();
        self.last_close = None;
        self.drain = None;
        self.raw_session = !self.godot_protocol;
    }
}

#[godot_api]
impl IMultiplayerPeerExtension for RustWebSocketMultiplayerPeer {
    fn poll(&mut self) {
        rust_websocket_core::connection::refill_direct_budget();
        if let Some(ready) = &self.ready {
            ready.read_ready();
        }
        self.poll_events();
        self.check_termination();
        self.advance_drain();
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
        self.drain = None;
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
        self.remove_monitors();
        self.reset();
    }
}

/// Whether `seconds` is a valid value for the property `name`: 0 or a positive, finite
/// number of seconds. Says what is wrong otherwise (the property keeps its value).
fn seconds_or_zero(name: &str, seconds: f64) -> bool {
    let valid = seconds >= 0.0 && seconds.is_finite();
    if !valid {
        godot_error!("{name} must be 0 or a positive number of seconds, got {seconds}");
    }
    valid
}
