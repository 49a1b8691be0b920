## A small chat over SceneMultiplayer RPCs: one script, run as a server or as a client.
##
##   godot --headless --path godot-project res://demo/demo.tscn -- --server [--port=9080]
##         [--bind=*] [--clients=2] [--builtin]
##   godot --headless --path godot-project res://demo/demo.tscn -- --client --name=Alice
##         [--url=ws://127.0.0.1:9080 | --host=127.0.0.1 --port=9080] [--builtin]
##
## `RustWebSocketMultiplayerPeer` is used unless `--builtin` is given (then the engine's own
## `WebSocketMultiplayerPeer`); the two are wire-compatible, so they can be mixed freely.
##
## What happens:
##   1. Each client connects and registers its name with an RPC; the server announces every
##      join to everyone.
##   2. When `--clients` clients are in, the server tells them to start. Each client sends
##      MESSAGES chat RPCs to the server, which relays each one to everyone, naming the sender
##      it got from `multiplayer.get_remote_sender_id()`.
##   3. The client with the lowest peer id also whispers to every other client with a direct
##      client->client RPC (SceneMultiplayer relays it through the server; the receiver sees
##      the real sender's id).
##   4. A client that has got everything tells the server; when all have, the server says
##      goodbye, the clients close their connection (close code 1000) and quit, and the server
##      quits once every client has left.
## Every event is printed with the process's role as a prefix ("[server]", "[client Alice]").
## A watchdog (`--timeout`, default 10 s) makes every process quit by itself; the exit code is
## 0 on success. The peer is always released before quitting (no leaked instances).
extends Node

const RUST_CLASS := "RustWebSocketMultiplayerPeer"
const BUILTIN_CLASS := "WebSocketMultiplayerPeer"
const MESSAGES := 3
const DEFAULT_PORT := 9080

var is_server := false
var player_name := ""
var prefix := ""
## The multiplayer peer (untyped: its class is chosen at run time, see `--builtin`).
var peer = null
var peer_class := ""
var done := false
var timeout_s := 10.0
## Deadlines are checked in _process() rather than awaited on timers: a coroutine still waiting
## on a timer when the game quits is reported as a leaked instance.
var deadline_ms := 0
var retry_at_ms := 0
var leave_deadline_ms := 0
var leave_started_ms := 0

# Server state.
var expected_clients := 2
var names := {}        # peer id -> name, registered clients still connected
var finished := {}     # peer id -> true, clients that got everything
var started := false
var said_goodbye := false

# Client state.
var roster := {}       # peer id -> name, every client (from the server's "begin")
var chats_received := 0
var whispers_received := 0
var whispers_expected := 0
var chats_expected := -1
var reported_finished := false
var leaving := false
var connect_attempts := 0
var server_url := ""


func _ready() -> void:
	var args := parse_args(OS.get_cmdline_user_args())
	is_server = args.has("server")
	if not is_server and not args.has("client"):
		prefix = "[demo]"
		say("usage: -- --server [--port=N] [--clients=N] | --client --name=NAME [--url=URL]")
		say("       add --builtin to use the engine's WebSocketMultiplayerPeer")
		end(2)
		return
	player_name = str(args.get("name", "Player%d" % (randi() % 1000)))
	prefix = "[server]" if is_server else "[client %s]" % player_name
	timeout_s = float(args.get("timeout", "10"))
	expected_clients = int(args.get("clients", "2"))
	var cls: String = BUILTIN_CLASS if args.has("builtin") else RUST_CLASS
	peer_class = cls
	if not ClassDB.class_exists(cls) or not ClassDB.can_instantiate(cls):
		say("class %s is not available (is the rust_websocket addon built and imported?)" % cls)
		end(1)
		return
	say("using %s" % cls)
	deadline_ms = Time.get_ticks_msec() + int(timeout_s * 1000.0)

	multiplayer.peer_connected.connect(_on_peer_connected)
	multiplayer.peer_disconnected.connect(_on_peer_disconnected)
	multiplayer.connected_to_server.connect(_on_connected_to_server)
	multiplayer.connection_failed.connect(_on_connection_failed)
	multiplayer.server_disconnected.connect(_on_server_disconnected)

	var port := int(args.get("port", str(DEFAULT_PORT)))
	if is_server:
		peer = ClassDB.instantiate(cls)
		var bind: String = str(args.get("bind", "*"))
		var err: int = peer.create_server(port, bind)
		if err != OK:
			say("create_server(%d, \"%s\") failed: %s" % [port, bind, error_string(err)])
			end(1)
			return
		multiplayer.multiplayer_peer = peer
		say("listening on %s:%d, waiting for %d clients" % [bind, port, expected_clients])
	else:
		server_url = str(args.get("url", "ws://%s:%d" % [args.get("host", "127.0.0.1"), port]))
		start_client(cls, server_url)


static func parse_args(list: PackedStringArray) -> Dictionary:
	var out := {}
	for a in list:
		var kv := a.trim_prefix("--").split("=", true, 1)
		out[kv[0]] = kv[1] if kv.size() > 1 else ""
	return out


func say(text: String) -> void:
	print("%s %s" % [prefix, text])


func start_client(cls: String, url: String) -> void:
	connect_attempts += 1
	multiplayer.multiplayer_peer = null
	peer = ClassDB.instantiate(cls)
	var err: int = peer.create_client(url)
	if err != OK:
		say("create_client(\"%s\") failed: %s" % [url, error_string(err)])
		end(1)
		return
	multiplayer.multiplayer_peer = peer
	say("connecting to %s" % url)


func who(id: int) -> String:
	var n: String = names.get(id, roster.get(id, "?"))
	return "%s (%d)" % [n, id]


# ------------------------------------------------------------------------------------------
# Connection events

func _on_peer_connected(id: int) -> void:
	if is_server:
		say("peer %d connected from %s:%d" % [id, peer.get_peer_address(id), peer.get_peer_port(id)])
	elif id == 1:
		say("server is peer 1")
	else:
		say("peer %d connected (announced by the server relay)" % id)


func _on_peer_disconnected(id: int) -> void:
	if is_server:
		var n: String = names.get(id, "?")
		names.erase(id)
		finished.erase(id)
		say("%s (%d) left, %d client(s) still connected" % [n, id, names.size()])
		if started and names.is_empty():
			say("every client has left: quitting")
			end(0 if said_goodbye else 1)
		elif said_goodbye:
			goodbye_next()
	elif id != 1:
		say("peer %s left" % who(id))


func _on_connected_to_server() -> void:
	say("connected as peer %d, registering as %s" % [multiplayer.get_unique_id(), player_name])
	register.rpc_id(1, player_name)


func _on_connection_failed() -> void:
	if connect_attempts < 5:
		say("connection failed, retrying in 0.5 s")
		retry_at_ms = Time.get_ticks_msec() + 500
		return
	say("could not connect to %s" % server_url)
	end(1)


func _process(_delta: float) -> void:
	if done:
		return
	var now := Time.get_ticks_msec()
	if retry_at_ms > 0 and now >= retry_at_ms:
		retry_at_ms = 0
		start_client(peer_class, server_url)
	if leave_deadline_ms > 0 and now >= leave_deadline_ms:
		say("the connection was not closed 5 s after close(1000): giving up")
		end(1)
	elif now >= deadline_ms:
		_on_watchdog()


func _on_server_disconnected() -> void:
	if leaving:
		say("disconnected from the server (close handshake took %d ms)" % [
				Time.get_ticks_msec() - leave_started_ms])
		end(0)
	else:
		say("the server went away unexpectedly")
		end(1)


# ------------------------------------------------------------------------------------------
# RPCs. This node is /root/Demo in every process, so SceneMultiplayer matches them up.

## Client -> server: "my name is ...".
@rpc("any_peer", "call_remote", "reliable")
func register(who_name: String) -> void:
	if not is_server:
		return
	var id := multiplayer.get_remote_sender_id()
	names[id] = who_name
	say("peer %d is %s: announcing the join to everyone" % [id, who_name])
	announce_join.rpc(id, who_name)
	if names.size() == expected_clients and not started:
		started = true
		say("all %d clients are here: start chatting" % expected_clients)
		begin.rpc(names)


## Server -> everyone.
@rpc("authority", "call_remote", "reliable")
func announce_join(id: int, who_name: String) -> void:
	if id == multiplayer.get_unique_id():
		say("server: welcome, %s (%d)" % [who_name, id])
	else:
		say("server: %s joined (peer %d)" % [who_name, id])


## Server -> everyone: the roster is complete, start chatting.
@rpc("authority", "call_remote", "reliable")
func begin(all: Dictionary) -> void:
	roster = all
	var me := multiplayer.get_unique_id()
	var ids: Array = roster.keys()
	ids.sort()
	chats_expected = MESSAGES * roster.size()
	whispers_expected = 0 if me == ids[0] else 1
	say("server says start; players: %s" % ", ".join(ids.map(func(i): return who(i))))
	for i in MESSAGES:
		var text := "hello %d/%d from %s" % [i + 1, MESSAGES, player_name]
		say("sending chat \"%s\"" % text)
		chat.rpc_id(1, text)
	if me == ids[0]:
		for other in ids.slice(1):
			var text := "psst %s, this one is just for you" % roster[other]
			say("whispering to %s directly: \"%s\"" % [who(other), text])
			whisper.rpc_id(other, text)
	check_finished()


## Client -> server: a chat line; the server relays it to everyone.
@rpc("any_peer", "call_remote", "reliable")
func chat(text: String) -> void:
	if not is_server:
		return
	var from := multiplayer.get_remote_sender_id()
	say("chat from %s: \"%s\" -> relaying to everyone" % [who(from), text])
	chat_message.rpc(from, names.get(from, "?"), text)


## Server -> everyone: a relayed chat line.
@rpc("authority", "call_remote", "reliable")
func chat_message(from: int, from_name: String, text: String) -> void:
	chats_received += 1
	var mine := " (mine)" if from == multiplayer.get_unique_id() else ""
	say("chat from %s (%d)%s: \"%s\"" % [from_name, from, mine, text])
	check_finished()


## Client -> client, relayed by the server's SceneMultiplayer.
@rpc("any_peer", "call_remote", "reliable")
func whisper(text: String) -> void:
	whispers_received += 1
	say("whisper from %s: \"%s\"" % [who(multiplayer.get_remote_sender_id()), text])
	check_finished()


func check_finished() -> void:
	if reported_finished or chats_expected < 0:
		return
	if chats_received >= chats_expected and whispers_received >= whispers_expected:
		reported_finished = true
		say("got all %d chat messages and %d whisper(s): telling the server" % [
				chats_received, whispers_received])
		client_finished.rpc_id(1)


## Client -> server: "I have received everything".
@rpc("any_peer", "call_remote", "reliable")
func client_finished() -> void:
	if not is_server:
		return
	var id := multiplayer.get_remote_sender_id()
	finished[id] = true
	say("%s has received everything (%d/%d)" % [who(id), finished.size(), names.size()])
	if finished.size() == names.size() and not said_goodbye:
		said_goodbye = true
		say("everyone is done: saying goodbye, one client at a time")
		goodbye_next()


## Asks the next client to leave. One at a time, so the server never relays a "peer left"
## notice to a client whose connection is already closing (the built-in peer logs an error
## for that).
func goodbye_next() -> void:
	var ids: Array = names.keys()
	if ids.is_empty():
		return
	ids.sort()
	say("goodbye, %s" % who(ids[0]))
	goodbye.rpc_id(ids[0])


## Server -> a client: disconnect now.
@rpc("authority", "call_remote", "reliable")
func goodbye() -> void:
	leaving = true
	say("server says goodbye: closing the connection (code 1000)")
	var ws: Object = peer.get_peer(1)
	if ws == null:
		say("get_peer(1) returned null")
		end(1)
		return
	ws.close(1000, "bye")
	leave_started_ms = Time.get_ticks_msec()
	leave_deadline_ms = leave_started_ms + 5000


# ------------------------------------------------------------------------------------------
# Shutdown

func _on_watchdog() -> void:
	if done:
		return
	if is_server:
		say("timeout after %.0f s: %d client(s) registered, %d finished, %d connected" % [
				timeout_s, names.size(), finished.size(), multiplayer.get_peers().size()])
	else:
		say("timeout after %.0f s: %d/%d chat messages, %d/%d whispers" % [timeout_s,
				chats_received, chats_expected, whispers_received, whispers_expected])
	end(1)


## Quits with `code`. The peer is released first (so nothing is leaked at exit), deferred:
## end() is often reached from a handler of one of the peer's own signals, and a peer should
## not be freed while it is still emitting.
func end(code: int) -> void:
	if done:
		return
	done = true
	say("quitting (exit code %d)" % code)
	_shutdown.call_deferred(code)


func _shutdown(code: int) -> void:
	for s in ["peer_connected", "peer_disconnected", "connected_to_server", "connection_failed",
			"server_disconnected"]:
		for c in multiplayer.get_signal_connection_list(s):
			if c["callable"].get_object() == self:
				multiplayer.disconnect(s, c["callable"])
	multiplayer.multiplayer_peer = null
	if peer != null:
		peer.close()
		peer = null
	get_tree().quit(code)
