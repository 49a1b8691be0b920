## too_big_one_peer: the server has inbound_buffer_size 1000 and echoes every SceneMultiplayer
## raw packet back to its sender. Two clients A and B (one client process):
##   before   A and B each get an echo
##   A sends 2000 bytes (2001 on the wire with SceneMultiplayer's header)
##            -> the server closes A (peer_disconnected(A), the 2000 bytes never delivered);
##               A: peer_disconnected(1) + server_disconnected, close code 1009 read through
##               get_peer(1).get_close_code() in the peer_disconnected handler
##   after    B still gets echoes, and a packet the server sends on its own
## Roles: server, client.
extends "res://tests/lib/base.gd"

var seen_a: Array = []


func run_server() -> void:
	var p: Object = make_peer()
	watch(p, "peer")
	var mp := root.multiplayer as SceneMultiplayer
	var received: Array = []
	mp.peer_packet.connect(func(id: int, pkt: PackedByteArray) -> void:
		received.append([id, pkt.size(), pkt.slice(0, 16)])
		mp.send_bytes("echo:".to_utf8_buffer() + pkt, id))
	p.inbound_buffer_size = 1000
	expect_eq(p.inbound_buffer_size, 1000, "inbound_buffer_size_set")
	serve_root(p)
	var ids := await client_ids(["A", "B"])
	if ids.is_empty():
		return
	await barrier("before")
	await barrier("a_sent")
	var t0 := Time.get_ticks_msec()
	if check(await wait_until(func() -> bool: return got("peer", "peer_disconnected").has(ids["A"]),
			5.0, "peer_disconnected(A)"), "A_disconnected",
			"events %s" % [events["peer"]]):
		info("peer_disconnected(A) %d ms after A sent" % (Time.get_ticks_msec() - t0))
	await barrier("a_closed")
	await barrier("b_after")
	# B still connected: the server sends it a packet on its own.
	expect_eq(mp.send_bytes("srv:after".to_utf8_buffer(), ids["B"]), OK_, "send_to_B_after")
	# B's "b2" echo reached B before it passed b_after, so everything has arrived here.
	expect_eq(got("peer", "peer_disconnected"), [ids["A"]], "only_A_disconnected")
	var from_a: Array = received.filter(func(r: Array) -> bool: return r[0] == ids["A"])
	var from_b: Array = received.filter(func(r: Array) -> bool: return r[0] == ids["B"])
	expect_eq(from_a.map(func(r: Array) -> PackedByteArray: return r[2]),
			["a-small".to_utf8_buffer()], "from_A_only_the_small_packet")
	expect_eq(from_b.map(func(r: Array) -> PackedByteArray: return r[2]),
			["b1".to_utf8_buffer(), "b2".to_utf8_buffer()], "from_B_both_packets")
	check(received.all(func(r: Array) -> bool: return r[1] < 1000), "nothing_big_delivered",
			"sizes %s" % [received.map(func(r: Array) -> int: return r[1])])
	await barrier("done")


func _on_a_disconnected(id: int, a: Object) -> void:
	var ws: Object = a.get_peer(id)
	if ws == null:
		seen_a.append({"id": id, "live_null": true})
	else:
		seen_a.append({"id": id, "live_null": false, "code": ws.get_close_code(),
				"reason": ws.get_close_reason(), "state": ws.get_ready_state()})


func run_client() -> void:
	if not await wait_flag("server_ready"):
		return
	var cs := {}
	var mps := {}
	var echoes := {"A": [], "B": []}
	for n in ["A", "B"]:
		var c: Object = make_peer()
		cs[n] = c
		var mp := connect_named(c, n)
		mps[n] = mp
		var list: Array = echoes[n]
		mp.peer_packet.connect(func(id: int, pkt: PackedByteArray) -> void: list.append([id, pkt]))
	cs["A"].peer_disconnected.connect(_on_a_disconnected.bind(cs["A"]))
	if not await publish_ids(cs):
		return

	# Before: both get echoes.
	expect_eq(mps["A"].send_bytes("a-small".to_utf8_buffer(), 1), OK_, "A_send_small")
	expect_eq(mps["B"].send_bytes("b1".to_utf8_buffer(), 1), OK_, "B_send_b1")
	var two := func() -> bool: return echoes["A"].size() >= 1 and echoes["B"].size() >= 1
	if check(await wait_until(two, 5.0, "echoes before"), "echoes_before", "echoes %s" % [echoes]):
		expect_eq(echoes["A"][0], [1, "echo:a-small".to_utf8_buffer()], "A_echo_before")
		expect_eq(echoes["B"][0], [1, "echo:b1".to_utf8_buffer()], "B_echo_before")
	await barrier("before")

	# A sends a message over the server's inbound_buffer_size.
	expect_eq(mps["A"].send_bytes(pattern(2000, 7), 1), OK_, "A_send_2000")
	await barrier("a_sent")
	var t0 := Time.get_ticks_msec()
	if check(await wait_signal_count("pA", "peer_disconnected", 1, 5.0), "A_peer_disconnected",
			"events %s" % [events["pA"]]):
		info("A: peer_disconnected(1) after %d ms; handler saw %s" % [Time.get_ticks_msec() - t0, seen_a])
		expect_eq(got("pA", "peer_disconnected"), [1], "A_peer_disconnected_1")
		expect_eq(count("mpA", "server_disconnected"), 1, "A_server_disconnected")
		expect_eq(cs["A"].get_connection_status(), DISCONNECTED, "A_status_disconnected")
		if check(seen_a.size() == 1 and not seen_a[0]["live_null"], "A_get_peer_1_in_handler",
				"handler saw %s" % [seen_a]):
			expect_eq(seen_a[0]["code"], 1009, "A_close_code_1009_in_handler")
			info("A: close reason in handler \"%s\"" % seen_a[0]["reason"])
	expect_eq(echoes["A"].size(), 1, "A_no_echo_of_the_big_packet")
	expect_eq(cs["B"].get_connection_status(), CONNECTED, "B_still_connected")
	await barrier("a_closed")

	# After: B still gets an echo and the server's own packet.
	expect_eq(mps["B"].send_bytes("b2".to_utf8_buffer(), 1), OK_, "B_send_b2")
	if check(await wait_until(func() -> bool: return echoes["B"].size() >= 2, 5.0, "echo after"),
			"B_echo_after_received", "echoes %s" % [echoes["B"]]):
		expect_eq(echoes["B"][1], [1, "echo:b2".to_utf8_buffer()], "B_echo_after")
	await barrier("b_after")
	if check(await wait_until(func() -> bool: return echoes["B"].size() >= 3, 5.0, "server packet"),
			"B_server_packet_received", "echoes %s" % [echoes["B"]]):
		expect_eq(echoes["B"][2], [1, "srv:after".to_utf8_buffer()], "B_server_packet")
	expect_eq(got("pB", "peer_disconnected"), [], "B_never_disconnected")
	await barrier("done")
