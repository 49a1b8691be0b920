## handshake_timeout: the server has handshake_timeout 1.0. The Python side (tests/wire_hooks.py
## handshake_timeout_hook) opens a silent TCP socket and one that sends half an HTTP request, and
## measures that the server drops both after ~1 s; meanwhile a Godot client connects promptly.
## Client side: handshake_timeout 1.0 against a Python listener that accepts and never answers
## -> DISCONNECTED + SceneMultiplayer connection_failed after ~1 s.
## Roles: server, client (and "py", the hook, as a barrier party).
extends "res://tests/lib/base.gd"


func run_server() -> void:
	var p: Object = make_peer()
	watch(p, "peer")
	expect_eq(p.handshake_timeout, 3.0, "handshake_timeout_default")
	p.handshake_timeout = 1.0
	expect_eq(p.handshake_timeout, 1.0, "handshake_timeout_set")
	expect_eq(p.create_server(port), OK_, "create_server")
	polled.append(p)
	flag("server_ready")
	if check(await wait_signal_count("peer", "peer_connected", 1, 10.0), "client_connected",
			"no peer_connected"):
		var cid: int = await get_value("cid")
		expect_eq(got("peer", "peer_connected"), [cid], "only_the_client_connected")
	await barrier("measured", 15.0)
	expect_eq(count("peer", "peer_connected"), 1, "raw_sockets_never_peers")
	expect_eq(count("peer", "peer_disconnected"), 0, "no_peer_disconnected")
	await barrier("done", 15.0)


func run_client() -> void:
	if not await wait_flag("raw_open", 15.0):
		return
	# Connect while the two raw sockets stall the server's handshake queue.
	var c: Object = make_peer()
	var t0 := Time.get_ticks_msec()
	if await connect_client(c, 5.0):
		var ms := Time.get_ticks_msec() - t0
		check(ms < 700, "connected_promptly", "took %d ms" % ms)
		info("connected in %d ms" % ms)
		put_value("cid", c.get_unique_id())

	# Client-side timeout against a listener that never answers the HTTP upgrade.
	if not await wait_flag("py_listening", 5.0):
		return
	var d: Object = make_peer()
	watch(d, "d")
	d.handshake_timeout = 1.0
	var t1 := Time.get_ticks_msec()
	expect_eq(d.create_client("ws://127.0.0.1:%d" % (port + 3)), OK_, "silent_create_client")
	expect_eq(d.get_connection_status(), CONNECTING, "silent_connecting")
	var mp := attach_multiplayer(d, "/root/D")
	watch(mp, "mpD")
	if check(await wait_signal_count("mpD", "connection_failed", 1, 5.0), "silent_connection_failed",
			"status %d" % d.get_connection_status()):
		var ms := Time.get_ticks_msec() - t1
		check(ms >= 800 and ms <= 2000, "silent_failed_after_timeout", "after %d ms" % ms)
		info("client handshake timeout after %d ms" % ms)
		expect_eq(d.get_connection_status(), DISCONNECTED, "silent_disconnected")
		expect_eq(d.get_unique_id(), 0, "silent_unique_id")
		expect_eq(got("d", "peer_connected"), [], "silent_no_peer_connected")
	await barrier("measured", 15.0)
	await barrier("done", 15.0)
