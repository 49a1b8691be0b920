## A small multiplayer arena: every player is a square moved with the arrow keys; positions
## travel as unreliable RPCs through the server, which sends everyone the whole world 30 times
## a second. This is the project's main scene: open godot-project in the editor, press F5 (or
## run several instances from Debug > Customize Run Instances), then Host or Join.
##
## Command line (windowed, or --headless for a dedicated server):
##   godot --path godot-project res://demo/arena.tscn -- --server [--port=9080] [--builtin]
##   godot --path godot-project res://demo/arena.tscn -- --client [--url=ws://127.0.0.1:9080]
## A --server started from the command line has no player of its own (a dedicated server);
## Host in the menu plays as peer 1.
##
## Headless self-test (tests/run_demo.py): `--server --clients=N --autotest` and
## `--client --autotest`. Once N clients are in, the server says begin; each client then moves
## by itself and prints `ARENA OK` once it has seen every other client move; when all have, the
## server says goodbye, each client closes with code 1000 and quits, and the server quits when
## the last one has left. A watchdog (--timeout, default 20 s) ends every process; exit code 0
## on success.
extends Node2D

const RUST_CLASS := "RustWebSocketMultiplayerPeer"
const BUILTIN_CLASS := "WebSocketMultiplayerPeer"
const DEFAULT_PORT := 9080
const SEND_INTERVAL := 1.0 / 30.0
const SPEED := 260.0
const SQUARE := 28.0
const FIELD := Rect2(30, 80, 1092, 530)  # inside the default 1152 x 648 window
## Autotest: how many position changes of every other player a client must see.
const MOVES_NEEDED := 15

var peer = null  # untyped: its class is chosen at run time (--builtin / the menu's check box)
var peer_class := RUST_CLASS
var label := "[arena]"  # what every printed line starts with
var dedicated := false  # a server without a player of its own
var players := {}  # peer id -> position (Vector2), everyone in the world, as last heard
var moves := {}  # peer id -> how often its position changed (autotest)
var my_pos := Vector2.ZERO
var send_timer := 0.0

var autotest := false
var expected_clients := 0
var began := false
var reported_ok := false
var ok_clients := {}
var leaving := false
var done := false
var deadline_ms := 0

var menu: Control
var address: LineEdit
var builtin_box: CheckBox
var status: Label
var leave_button: Button


func _ready() -> void:
	var args := parse_args(OS.get_cmdline_user_args())
	autotest = args.has("autotest")
	peer_class = BUILTIN_CLASS if args.has("builtin") else RUST_CLASS
	multiplayer.server_relay = false  # clients learn about each other from world() alone
	multiplayer.peer_connected.connect(_on_peer_connected)
	multiplayer.peer_disconnected.connect(_on_peer_disconnected)
	multiplayer.connected_to_server.connect(_on_connected)
	multiplayer.connection_failed.connect(_on_connection_failed)
	multiplayer.server_disconnected.connect(_on_server_disconnected)
	if autotest:
		deadline_ms = Time.get_ticks_msec() + int(float(args.get("timeout", "20")) * 1000.0)
		expected_clients = int(args.get("clients", "2"))
	var port := int(args.get("port", str(DEFAULT_PORT)))
	if args.has("server"):
		label = "[arena server]"
		dedicated = true
		host(port, str(args.get("bind", "*")))
	elif args.has("client"):
		label = "[arena client %s]" % args.get("name", str(OS.get_process_id()))
		join(str(args.get("url", "ws://127.0.0.1:%d" % port)))
	else:
		build_menu()


static func parse_args(list: PackedStringArray) -> Dictionary:
	var out := {}
	for a in list:
		var kv := a.trim_prefix("--").split("=", true, 1)
		out[kv[0]] = kv[1] if kv.size() > 1 else ""
	return out


func say(text: String) -> void:
	print("%s %s" % [label, text])
	if status != null:
		status.text = text


# ------------------------------------------------------------------------------------------
# Starting and stopping

func make_peer():
	if not ClassDB.class_exists(peer_class) or not ClassDB.can_instantiate(peer_class):
		say("class %s is not available (is the rust_websocket addon built and imported?)"
				% peer_class)
		return null
	var p = ClassDB.instantiate(peer_class)
	if peer_class == RUST_CLASS:
		# Not in the built-in peer: pings every second find dead peers within two seconds,
		# and measure the round trip shown in the status line.
		p.heartbeat_interval = 1.0
	return p


func host(port: int, bind: String = "*") -> void:
	peer = make_peer()
	if peer == null:
		fail()
		return
	var err: int = peer.create_server(port, bind)
	if err != OK:
		say("create_server(%d) failed: %s" % [port, error_string(err)])
		peer = null
		fail()
		return
	multiplayer.multiplayer_peer = peer
	if not dedicated:
		my_pos = FIELD.get_center()
		players[1] = my_pos
	say("%s listening on %s:%d" % [peer_class, bind, port])
	show_game()


func join(url: String) -> void:
	peer = make_peer()
	if peer == null:
		fail()
		return
	var err: int = peer.create_client(url)
	if err != OK:
		say("create_client(%s) failed: %s" % [url, error_string(err)])
		peer = null
		fail()
		return
	multiplayer.multiplayer_peer = peer
	say("%s connecting to %s" % [peer_class, url])


## Back to the menu (windowed), or quit with 1 (command line). Deferred: this is often called
## from one of the peer's own signals, and the peer should not be released while it emits.
func fail() -> void:
	if menu != null:
		stop.call_deferred()
	else:
		end(1)


func stop() -> void:
	multiplayer.multiplayer_peer = null
	if peer != null:
		peer.close()
		peer = null
	players.clear()
	moves.clear()
	if menu != null:
		menu.visible = true
		leave_button.visible = false
	queue_redraw()


func end(code: int) -> void:
	if done:
		return
	done = true
	say("quitting (exit code %d)" % code)
	_quit.call_deferred(code)  # not from inside one of the peer's own signals


func _quit(code: int) -> void:
	multiplayer.multiplayer_peer = null
	if peer != null:
		peer.close()
		peer = null
	get_tree().quit(code)


# ------------------------------------------------------------------------------------------
# Connection events

func _on_peer_connected(id: int) -> void:
	if not multiplayer.is_server():
		return
	players[id] = FIELD.get_center()
	say("peer %d joined (%d client(s))" % [id, multiplayer.get_peers().size()])
	if autotest and not began and multiplayer.get_peers().size() == expected_clients:
		began = true
		say("all %d clients are in: begin" % expected_clients)
		begin.rpc(expected_clients)


func _on_peer_disconnected(id: int) -> void:
	players.erase(id)
	moves.erase(id)
	if multiplayer.is_server():
		say("peer %d left (%d client(s))" % [id, multiplayer.get_peers().size()])
		if autotest and ok_clients.size() == expected_clients and multiplayer.get_peers().is_empty():
			say("every client has left")
			end(0)


func _on_connected() -> void:
	var id := multiplayer.get_unique_id()
	my_pos = FIELD.position + Vector2(40 + (id % 17) * 50, 40 + (id % 7) * 50)
	players[id] = my_pos
	say("connected as peer %d" % id)
	show_game()


func _on_connection_failed() -> void:
	say("could not connect")
	fail()


func _on_server_disconnected() -> void:
	if leaving:
		say("left the server")
		end(0)
	else:
		say("the server went away")
		fail()


# ------------------------------------------------------------------------------------------
# RPCs. The scene's root is /root/Arena in every process, so SceneMultiplayer matches them up.

## Client -> server: where I am now.
@rpc("any_peer", "call_remote", "unreliable_ordered")
func submit_pos(pos: Vector2) -> void:
	var id := multiplayer.get_remote_sender_id()
	if multiplayer.is_server() and players.has(id):
		players[id] = pos.clamp(FIELD.position, FIELD.end)


## Server -> clients: everyone's position.
@rpc("authority", "call_remote", "unreliable_ordered")
func world(ids: PackedInt32Array, positions: PackedVector2Array) -> void:
	var me := multiplayer.get_unique_id()
	var present := {me: true}
	for i in ids.size():
		var id := ids[i]
		present[id] = true
		if id == me:
			continue
		if players.has(id) and players[id] != positions[i]:
			moves[id] = moves.get(id, 0) + 1
		players[id] = positions[i]
	for id in players.keys():
		if not present.has(id):
			players.erase(id)
			moves.erase(id)
	if autotest and began and not reported_ok:
		var others := players.size() - 1
		var slowest := MOVES_NEEDED
		for id in players:
			if id != me:
				slowest = mini(slowest, moves.get(id, 0))
		if others == expected_clients - 1 and slowest >= MOVES_NEEDED:
			reported_ok = true
			say("ARENA OK: saw all %d other player(s) move at least %d times" % [
					others, MOVES_NEEDED])
			arena_ok.rpc_id(1)


## Server -> clients (autotest): everyone is in, start moving.
@rpc("authority", "call_remote", "reliable")
func begin(clients: int) -> void:
	expected_clients = clients
	began = true
	say("begin: %d clients" % clients)


## Client -> server (autotest): I have seen everyone move.
@rpc("any_peer", "call_remote", "reliable")
func arena_ok() -> void:
	ok_clients[multiplayer.get_remote_sender_id()] = true
	say("client %d saw everyone move (%d/%d)" % [multiplayer.get_remote_sender_id(),
			ok_clients.size(), expected_clients])
	if ok_clients.size() == expected_clients:
		say("every client saw everyone move: goodbye")
		leaving = true  # no more world updates to connections about to close
		goodbye.rpc()


## Server -> clients (autotest): close the connection (code 1000) and quit.
@rpc("authority", "call_remote", "reliable")
func goodbye() -> void:
	leaving = true
	say("server says goodbye: closing with code 1000")
	peer.get_peer(1).close(1000, "bye")


# ------------------------------------------------------------------------------------------
# Frame loop

func _process(delta: float) -> void:
	if autotest and not done and Time.get_ticks_msec() > deadline_ms:
		say("timeout: %d player(s) known, moves seen %s, %d/%d clients ok" % [
				players.size(), moves, ok_clients.size(), expected_clients])
		end(1)
		return
	if multiplayer.multiplayer_peer == null or peer == null:
		return
	var me := multiplayer.get_unique_id()
	if players.has(me):
		var dir := Input.get_vector("ui_left", "ui_right", "ui_up", "ui_down")
		if autotest and began:
			var t := Time.get_ticks_msec() / 1000.0 + me % 10
			dir = Vector2(cos(t * 3.0), sin(t * 3.0))
		my_pos = (my_pos + dir * SPEED * delta).clamp(FIELD.position, FIELD.end)
		players[me] = my_pos
	send_timer += delta
	if send_timer >= SEND_INTERVAL:
		send_timer = 0.0
		if multiplayer.is_server() and not leaving:
			var ids := PackedInt32Array(players.keys())
			var positions := PackedVector2Array(players.values())
			world.rpc(ids, positions)
		elif players.has(me) and not leaving:
			submit_pos.rpc_id(1, my_pos)
	if status != null:
		var ping := ""
		if peer_class == RUST_CLASS and not multiplayer.is_server():
			var rtt: float = peer.get_peer_stats(1).get("rtt_ms", -1.0)
			ping = ", ping %.1f ms" % rtt if rtt >= 0.0 else ""
		status.text = "%s, peer %d, %d player(s)%s%s" % [peer_class, me, players.size(),
				"" if players.has(me) else " (dedicated server)", ping]
	queue_redraw()


func _draw() -> void:
	if players.is_empty():
		return
	draw_rect(FIELD.grow(SQUARE / 2), Color(0.12, 0.13, 0.16))
	var me := multiplayer.get_unique_id() if multiplayer.multiplayer_peer != null else 0
	var font := ThemeDB.fallback_font
	for id in players:
		var pos: Vector2 = players[id]
		var rect := Rect2(pos - Vector2(SQUARE, SQUARE) / 2, Vector2(SQUARE, SQUARE))
		draw_rect(rect, Color.from_hsv(fmod(id * 0.618034, 1.0), 0.65, 0.95))
		if id == me:
			draw_rect(rect.grow(3), Color.WHITE, false, 2.0)
		draw_string(font, pos + Vector2(-SQUARE / 2, -SQUARE / 2 - 4),
				"you" if id == me else str(id), HORIZONTAL_ALIGNMENT_LEFT, -1, 14)


# ------------------------------------------------------------------------------------------
# Menu (windowed runs without --server/--client)

func build_menu() -> void:
	var layer := CanvasLayer.new()
	add_child(layer)
	status = Label.new()
	status.position = Vector2(20, 16)
	layer.add_child(status)
	menu = VBoxContainer.new()
	menu.position = Vector2(20, 60)
	menu.custom_minimum_size = Vector2(360, 0)
	layer.add_child(menu)
	address = LineEdit.new()
	address.text = "ws://127.0.0.1:%d" % DEFAULT_PORT
	menu.add_child(address)
	builtin_box = CheckBox.new()
	builtin_box.text = "Use the built-in WebSocketMultiplayerPeer"
	menu.add_child(builtin_box)
	var host_button := Button.new()
	host_button.text = "Host (port %d)" % DEFAULT_PORT
	host_button.pressed.connect(func() -> void:
		peer_class = BUILTIN_CLASS if builtin_box.button_pressed else RUST_CLASS
		host(DEFAULT_PORT))
	menu.add_child(host_button)
	var join_button := Button.new()
	join_button.text = "Join"
	join_button.pressed.connect(func() -> void:
		peer_class = BUILTIN_CLASS if builtin_box.button_pressed else RUST_CLASS
		join(address.text))
	menu.add_child(join_button)
	leave_button = Button.new()
	leave_button.text = "Leave"
	leave_button.position = Vector2(1060, 12)
	leave_button.visible = false
	leave_button.pressed.connect(func() -> void:
		stop()
		status.text = "Left. Host a game, or join one.")
	layer.add_child(leave_button)
	status.text = "Arrow keys move your square. Host a game, or join one."


func show_game() -> void:
	if menu != null:
		menu.visible = false
		leave_button.visible = true
