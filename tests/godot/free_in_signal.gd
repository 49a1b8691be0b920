## free_in_signal: one class on its own, one process. The last reference to a server peer is
## dropped inside a handler of its own peer_disconnected signal (emitted by SceneMultiplayer
## during the peer's poll()). The built-in survives this; the Rust class once aborted the
## process ("Destroyed an object ... while a bind() call was active"). Role: main.
extends "res://tests/lib/base.gd"

var server: Object = null
var left_id := 0
var handler_done := false
var freed := false


func run_main() -> void:
	server = ClassDB.instantiate(peer_class)
	var tracker := WeakRef.new()
	tracker = weakref(server)
	expect_eq(server.create_server(port, "127.0.0.1"), OK_, "create_server")
	root.multiplayer.multiplayer_peer = server
	root.multiplayer.peer_disconnected.connect(_on_left)
	var client: Object = ClassDB.instantiate(BUILTIN_CLASS)
	expect_eq(client.create_client("ws://127.0.0.1:%d" % port), OK_, "create_client")
	polled.append(client)
	if not check(await wait_until(func() -> bool: return client.get_connection_status() == CONNECTED,
			5.0, "client connected"), "client_connected"):
		return
	var cid: int = client.get_unique_id()
	await frames(5)
	polled.erase(client)
	client.close()
	client = null
	check(await wait_until(func() -> bool: return handler_done, 5.0, "peer_disconnected handler"),
			"handler_ran")
	expect_eq(left_id, cid, "peer_disconnected_id")
	await frames(3)
	# The peer is really gone once the frame is over (no leak, no crash).
	check(tracker.get_ref() == null, "server_peer_freed", "still referenced")


func _on_left(id: int) -> void:
	left_id = id
	root.multiplayer.peer_disconnected.disconnect(_on_left)
	root.multiplayer.multiplayer_peer = null
	server.close()
	server = null  # The last reference: dropped while the peer is inside poll().
	handler_done = true
