## ipv6: over the IPv6 loopback.
##   S1 create_server(port)            (bind "*", dual-stack) <- client ws://[::1]:port
##   S2 create_server(port+1, "::1")                          <- client ws://[::1]:port+1
## Each client connects and exchanges a packet both ways; get_peer_address / get_connected_host
## are "0:0:0:0:0:0:0:1" on both sides (the built-in's spelling of ::1); the client's
## get_requested_url() is the URL given. An IPv4 client to 127.0.0.1:port+1 (S2 listens on ::1
## only) fails with connection_failed.
## Skipped (with a PASS note from tests/wire_hooks.py ipv6_hook) when the machine has no ::1.
## Roles: server, client.
extends "res://tests/lib/base.gd"

## How the built-in reports ::1 (get_peer_address, get_connected_host): Godot's IPAddress
## prints IPv6 addresses uncompressed.
const LOOPBACK := "0:0:0:0:0:0:0:1"


func run() -> void:
	var have: Variant = await get_value("ipv6")
	if have == null:
		return
	if have == 0:
		check(true, "ipv6_skipped", "")
		info("SKIPPED: no IPv6 loopback on this machine")
		return
	await super()


func run_server() -> void:
	var ss: Array = []
	for i in 2:
		var s: Object = make_peer()
		watch(s, "S%d" % (i + 1))
		if i == 0:
			expect_eq(s.create_server(port), OK_, "S1_create_server_wildcard")
		else:
			expect_eq(s.create_server(port + 1, "::1"), OK_, "S2_create_server_ipv6_loopback")
		polled.append(s)
		ss.append(s)
	flag("server_ready")
	for i in 2:
		var key := "S%d" % (i + 1)
		var s: Object = ss[i]
		var v: Variant = await get_value("id_" + key)
		if v == null or v == 0:
			continue
		var cid: int = v
		if not check(await wait_until(func() -> bool: return got(key, "peer_connected").has(cid),
				5.0, key + " peer_connected"), key + "_peer_connected", "events %s" % [events[key]]):
			continue
		expect_eq(str(s.get_peer_address(cid)), LOOPBACK, key + "_peer_address")
		var pp: int = s.get_peer_port(cid)
		check(pp > 0 and pp < 65536, key + "_peer_port", "port %d" % pp)
		var ws: Object = s.get_peer(cid)
		if check(ws != null, key + "_get_peer_non_null", "null"):
			expect_eq(str(ws.get_connected_host()), LOOPBACK, key + "_connected_host")
			expect_eq(ws.get_connected_port(), pp, key + "_connected_port")
			# Host header + path: depends on the client's Host header (the built-in client
			# sends "::1:PORT", without brackets), so only reported.
			info("%s: server-side requested url %s" % [key, ws.get_requested_url()])
		var pkts := await receive(s, 1, 5.0, key + "_packet_received")
		if not pkts.is_empty():
			expect_eq(pkts[0], [cid, ("hello " + key).to_utf8_buffer()], key + "_packet")
		s.set_target_peer(cid)
		expect_eq(s.put_packet(("reply " + key).to_utf8_buffer()), OK_, key + "_put_reply")
	await barrier("done")
	expect_eq(got("S2", "peer_connected").size(), 1, "S2_one_peer_only")


func run_client() -> void:
	if not await wait_flag("server_ready"):
		return
	for i in 2:
		var key := "S%d" % (i + 1)
		var c: Object = make_peer()
		watch(c, "c" + key)
		var u := "ws://[::1]:%d" % (port + i)
		expect_eq(c.create_client(u), OK_, key + "_create_client")
		polled.append(c)
		if not check(await wait_status(c, CONNECTED, 5.0), key + "_connected",
				"status %d, events %s" % [c.get_connection_status(), events["c" + key]]):
			put_value("id_" + key, 0)
			continue
		put_value("id_" + key, c.get_unique_id())
		expect_eq(str(c.get_peer_address(1)), LOOPBACK, key + "_client_peer_address")
		expect_eq(c.get_peer_port(1), port + i, key + "_client_peer_port")
		var ws: Object = c.get_peer(1)
		if check(ws != null, key + "_client_get_peer_non_null", "null"):
			expect_eq(str(ws.get_connected_host()), LOOPBACK, key + "_client_connected_host")
			expect_eq(ws.get_connected_port(), port + i, key + "_client_connected_port")
			expect_eq(ws.get_requested_url(), u, key + "_client_requested_url")
		c.set_target_peer(1)
		expect_eq(c.put_packet(("hello " + key).to_utf8_buffer()), OK_, key + "_put")
		var pkts := await receive(c, 1, 5.0, key + "_reply_received")
		if not pkts.is_empty():
			expect_eq(pkts[0], [1, ("reply " + key).to_utf8_buffer()], key + "_reply")

	# S2 listens on ::1 only: an IPv4 client cannot reach it.
	var v4: Object = make_peer()
	expect_eq(v4.create_client("ws://127.0.0.1:%d" % (port + 1)), OK_, "v4_create_client")
	var mp := attach_multiplayer(v4, "/root/V4")
	watch(mp, "mpV4")
	if check(await wait_signal_count("mpV4", "connection_failed", 1, 5.0), "v4_to_ipv6_only_fails",
			"events %s, status %d" % [events["mpV4"], v4.get_connection_status()]):
		expect_eq(count("mpV4", "connected_to_server"), 0, "v4_never_connected")
	await barrier("done")
