## refuse_new_connections: client A connects; the server refuses new connections; client B
## (handshake_timeout 1 s) ends DISCONNECTED with SceneMultiplayer connection_failed while A
## still exchanges packets both ways; the server accepts again and client C connects.
## Roles: server, client.
extends "res://tests/lib/base.gd"


func run_server() -> void:
	var p: Object = make_peer()
	watch(p, "peer")
	var mp := root.multiplayer as SceneMultiplayer
	# Echo every raw SceneMultiplayer packet back to its sender, prefixed with "echo:".
	mp.peer_packet.connect(func(id: int, pkt: PackedByteArray) -> void:
		mp.send_bytes("echo:".to_utf8_buffer() + pkt, id))
	expect_eq(p.is_refusing_new_connections(), false, "refusing_default_false")
	serve_root(p)
	if not check(await wait_signal_count("peer", "peer_connected", 1, 10.0), "A_connected", "no A"):
		return
	var id_a: int = got("peer", "peer_connected")[0]
	await barrier("a_connected")

	p.refuse_new_connections = true
	expect_eq(p.is_refusing_new_connections(), true, "refusing_true")
	expect_eq(p.get("refuse_new_connections"), true, "refuse_property_true")
	await barrier("refusing")
	await barrier("b_failed", 15.0)
	expect_eq(got("peer", "peer_connected"), [id_a], "no_peer_connected_while_refusing")

	p.set_refuse_new_connections(false)
	expect_eq(p.is_refusing_new_connections(), false, "refusing_false_again")
	await barrier("accepting")
	if check(await wait_signal_count("peer", "peer_connected", 2, 10.0), "C_connected",
			"peer_connected %s" % [got("peer", "peer_connected")]):
		var id_c: int = await get_value("id_C")
		expect_eq(got("peer", "peer_connected"), [id_a, id_c], "peer_connected_A_then_C")
	expect_eq(got("peer", "peer_disconnected"), [], "nobody_disconnected")
	await barrier("done")


func run_client() -> void:
	if not await wait_flag("server_ready"):
		return
	var a: Object = make_peer()
	expect_eq(a.create_client(url()), OK_, "create_client_A")
	var mp_a := attach_multiplayer(a, "/root/CA")
	watch(mp_a, "mpA")
	var echoes: Array = []
	mp_a.peer_packet.connect(func(id: int, pkt: PackedByteArray) -> void: echoes.append([id, pkt]))
	if not check(await wait_signal_count("mpA", "connected_to_server", 1, 10.0), "A_connected",
			"events %s" % [events]):
		return
	await barrier("a_connected")
	await barrier("refusing")

	var b: Object = make_peer()
	b.handshake_timeout = 1.0
	var t0 := Time.get_ticks_msec()
	expect_eq(b.create_client(url()), OK_, "create_client_B")
	expect_eq(b.get_connection_status(), CONNECTING, "B_connecting")
	var mp_b := attach_multiplayer(b, "/root/CB")
	watch(mp_b, "mpB")
	# A keeps working while B is refused.
	expect_eq(mp_a.send_bytes("ping1".to_utf8_buffer()), OK_, "A_send_ping1")
	if check(await wait_until(func() -> bool: return echoes.size() >= 1, 5.0, "echo 1"), "A_echo1",
			"no echo"):
		expect_eq(echoes[0], [1, "echo:ping1".to_utf8_buffer()], "A_echo1_content")
	if check(await wait_signal_count("mpB", "connection_failed", 1, 6.0), "B_connection_failed",
			"events %s, B status %d" % [events["mpB"], b.get_connection_status()]):
		info("B failed after %d ms" % (Time.get_ticks_msec() - t0))
		expect_eq(b.get_connection_status(), DISCONNECTED, "B_disconnected")
		expect_eq(b.get_unique_id(), 0, "B_unique_id")
		expect_eq(count("mpB", "connected_to_server"), 0, "B_never_connected")
	expect_eq(mp_a.send_bytes("ping2".to_utf8_buffer()), OK_, "A_send_ping2")
	if check(await wait_until(func() -> bool: return echoes.size() >= 2, 5.0, "echo 2"), "A_echo2",
			"no echo"):
		expect_eq(echoes[1], [1, "echo:ping2".to_utf8_buffer()], "A_echo2_content")
	expect_eq(a.get_connection_status(), CONNECTED, "A_still_connected")
	await barrier("b_failed")
	await barrier("accepting")

	var c: Object = make_peer()
	expect_eq(c.create_client(url()), OK_, "create_client_C")
	var mp_c := attach_multiplayer(c, "/root/CC")
	watch(mp_c, "mpC")
	if check(await wait_signal_count("mpC", "connected_to_server", 1, 10.0), "C_connected",
			"events %s" % [events["mpC"]]):
		put_value("id_C", c.get_unique_id())
	await barrier("done")
