## link_cut: RustWebSocketMultiplayerPeer.heartbeat_interval (0.5 s here) finds a connection
## whose link silently drops every packet (nothing is closed, TCP just retransmits).
## run_tests.py / tests/netem_hook.py put the client process in a network namespace joined to
## the root namespace by a veth pair, publish `netns` (0: unavailable, skip) and `srv_addr` (the
## root-side address), and on `ready_to_cut` add `tc netem loss 100%` on both veth ends, then
## raise `cut`.
##   server  (rust) heartbeat_interval 0.5, create_server(port, srv_addr), a SceneMultiplayer;
##           once a packet went each way it asks for the cut -> peer_disconnected for the client
##           0.4-1.5 s after `cut` (client_disconnected(id, false)), no peers left.
##   client  a SceneMultiplayer on ws://srv_addr:port. rust: heartbeat_interval 0.5 ->
##           server_disconnected / DISCONNECTED 0.4-1.5 s after `cut`, close code -1.
##           builtin (no heartbeat): still CONNECTED once the server has dropped it.
## Roles: server, client.
extends "res://tests/lib/heartbeat_timing.gd"

var cd_log: Array = []
var packets: Array = []
## The server's address on the veth (the hook's `srv_addr`).
var srv_addr: String = ""


func run() -> void:
	var have: Variant = await get_value("netns", 20.0)
	if have == null:
		check(false, "netns_value", "the hook never published netns")
		return
	if have == 0:
		check(true, "skipped_no_netns")
		info("SKIPPED: no network namespace (see the hook's note)")
		return
	var addr: Variant = await get_value("srv_addr", 5.0)
	if not check(addr is String, "srv_addr", "got %s" % [addr]):
		return
	srv_addr = addr
	await super()
	await barrier("done", 15.0)


func _on_cd(id: int, clean: bool) -> void:
	cd_log.append([id, clean])


func _on_packet(id: int, data: PackedByteArray) -> void:
	packets.append([id, data.get_string_from_utf8()])


func run_server() -> void:
	var addr := srv_addr
	var p: Object = make_peer()
	watch(p, "peer")
	if is_rust():
		p.client_disconnected.connect(_on_cd)
		p.heartbeat_interval = INTERVAL
	expect_eq(p.create_server(port, addr), OK_, "create_server")
	var mp := attach_multiplayer(p, "/root/S")
	mp.peer_packet.connect(_on_packet)
	flag("server_ready")
	var cid: Variant = await get_value("id_client", 15.0)
	if cid == null or cid == 0:
		return
	var pinged := func() -> bool: return packets.has([cid, "ping"])
	if not check(await wait_until(pinged, 5.0, "the client's packet"), "got_ping",
			"packets %s, events %s" % [packets, events["peer"]]):
		return
	expect_eq(mp.send_bytes("pong".to_utf8_buffer(), cid), OK_, "send_pong")
	if not await wait_flag("client_got_pong", 10.0):
		return
	expect_eq(got("peer", "peer_disconnected"), [], "no_drop_before_cut")
	# The client really is across the veth (inside the namespace), not on loopback.
	expect_eq(p.get_peer(cid).get_connected_host(), await get_value("cli_addr", 5.0),
			"client_host_is_netns_side")
	flag("ready_to_cut")
	if not check(await wait_flag("cut", 10.0), "cut", "the hook never cut the link"):
		return
	var t_cut := Time.get_ticks_msec()
	if is_rust():
		if await expect_server_dropped(cid, t_cut, "the cut", "client_dropped", "drop_time",
				"srv_detect_ms"):
			expect_eq(cd_log, [[cid, false]], "client_disconnected_not_clean")
			expect_eq(p.get_peer_ids(), PackedInt32Array(), "no_peers_left")
	flag("server_checked")


func run_client() -> void:
	var addr := srv_addr
	if not await wait_flag("server_ready", 15.0):
		put_value("id_client", 0)
		return
	var c: Object = make_peer()
	if is_rust():
		c.heartbeat_interval = INTERVAL
	watch(c, "cli")
	expect_eq(c.create_client("ws://%s:%d" % [addr, port]), OK_, "create_client")
	var mp := attach_multiplayer(c, "/root/C")
	watch(mp, "mp")
	mp.peer_packet.connect(_on_packet)
	if not check(await wait_signal_count("mp", "connected_to_server", 1, 5.0), "connected",
			"status %d, events %s" % [c.get_connection_status(), events]):
		put_value("id_client", 0)
		return
	put_value("id_client", c.get_unique_id())
	expect_eq(mp.send_bytes("ping".to_utf8_buffer(), 1), OK_, "send_ping")
	if not check(await wait_until(func() -> bool: return packets.has([1, "pong"]), 5.0,
			"the server's packet"), "got_pong", "packets %s" % [packets]):
		return
	flag("client_got_pong")
	if not await wait_flag("cut", 15.0):
		return
	var t_cut := Time.get_ticks_msec()
	if is_rust():
		if check(await wait_signal_count("mp", "server_disconnected", 1, 5.0),
				"server_disconnected", "no server_disconnected within 5 s of the cut; status %d"
				% c.get_connection_status()):
			expect_found_in_time("mp", "server_disconnected", null, t_cut, "the cut", "detect_time",
					"cli_detect_ms")
			expect_eq(c.get_connection_status(), DISCONNECTED, "status_disconnected")
			expect_eq(got("cli", "peer_disconnected"), [1], "peer_disconnected_1")
			expect_eq(c.get_close_code(), -1, "close_code_not_clean")
	else:
		# No heartbeat: nothing tells the built-in client that the link is dead.
		await wait_flag("server_checked", 10.0)
		expect_eq(c.get_connection_status(), CONNECTED, "builtin_still_connected")
		expect_eq(count("mp", "server_disconnected"), 0, "builtin_no_server_disconnected")
		put_value("cli_detect_ms", "none (built-in, no heartbeat)")
