extends SceneTree
# Copied by scripts/package_release.py into a fresh project holding only the unpacked
# addon zip: a server and a client in one process connect and exchange a packet each way.

const CLASS := "RustWebSocketMultiplayerPeer"
var server: MultiplayerPeer
var client: MultiplayerPeer
var step := 0
var joined := 0
var started := 0


func fail(why: String) -> void:
	print("ZIPCHECK FAIL: " + why)
	quit(1)


func _initialize() -> void:
	started = Time.get_ticks_msec()
	var port := 0
	var want_version := ""
	for a in OS.get_cmdline_user_args():
		if a.begins_with("--port="):
			port = int(a.substr(7))
		elif a.begins_with("--version="):
			want_version = a.substr(10)
	print("ZIPCHECK godot ", Engine.get_version_info().string)
	if not ClassDB.class_exists(CLASS):
		fail(CLASS + " is not registered: the library did not load")
		return
	server = ClassDB.instantiate(CLASS)
	client = ClassDB.instantiate(CLASS)
	var version = server.call("get_version")
	print("ZIPCHECK get_version() = ", version)
	if version != want_version:
		fail("get_version() returned %s, Cargo.toml says %s" % [version, want_version])
		return
	server.peer_connected.connect(func(id): joined = id)
	var err: int = server.call("create_server", port, "127.0.0.1")
	if err != OK:
		fail("create_server(%d): %s" % [port, error_string(err)])
		return
	err = client.call("create_client", "ws://127.0.0.1:%d" % port)
	if err != OK:
		fail("create_client: %s" % error_string(err))
		return


func _process(_delta: float) -> bool:
	if server == null or client == null:
		return false
	if Time.get_ticks_msec() - started > 20000:
		fail("timed out at step %d (client status %d)" % [step, client.get_connection_status()])
		return false
	server.poll()
	client.poll()
	if step == 0 and client.get_connection_status() == MultiplayerPeer.CONNECTION_CONNECTED \
			and joined != 0:
		print("ZIPCHECK connected: client id %d, server saw peer %d" % [client.get_unique_id(), joined])
		if joined != client.get_unique_id():
			fail("server saw peer %d, client has id %d" % [joined, client.get_unique_id()])
			return false
		client.set_target_peer(1)
		client.put_packet("ping".to_utf8_buffer())
		step = 1
	elif step == 1 and server.get_available_packet_count() > 0:
		var from := server.get_packet_peer()
		var data := server.get_packet().get_string_from_utf8()
		print("ZIPCHECK server got %s from %d" % [data, from])
		if data != "ping" or from != joined:
			fail("server got %s from %d" % [data, from])
			return false
		server.set_target_peer(from)
		server.put_packet("pong".to_utf8_buffer())
		step = 2
	elif step == 2 and client.get_available_packet_count() > 0:
		var from := client.get_packet_peer()
		var data := client.get_packet().get_string_from_utf8()
		print("ZIPCHECK client got %s from %d" % [data, from])
		if data != "pong" or from != 1:
			fail("client got %s from %d" % [data, from])
			return false
		client.close()
		server.close()
		print("ZIPCHECK OK")
		quit(0)
	return false
