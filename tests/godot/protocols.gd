## protocols: `supported_protocols` (Sec-WebSocket-Protocol) match and mismatch.
## Three servers in the server process:
##   S1 (port)   ["game-v2", "game-v1"]
##   S2 (port+1) ["game-v1"]
##   S3 (port+2) []            (none)
## Matches (client -> server: selected protocol on both sides, from get_peer(..)):
##   ["game-v1"] -> S1: "game-v1";  ["game-v1", "game-v2"] -> S1: "game-v1" (the first client
##   protocol the server supports);  ["game-v3", "game-v2"] -> S1: "game-v2"
## Mismatches (each client: DISCONNECTED + SceneMultiplayer connection_failed, no
## connected_to_server; the server: no peer_connected):
##   ["chat"] -> S2;  ["game-v1"] -> S3 (server has none);  [] -> S2 (client offers none)
## Afterwards S2 and S3 still serve good clients (["game-v1"] -> S2, [] -> S3: selected "").
## Roles: server, client.
extends "res://tests/lib/base.gd"

const MATCHES := [
	# [name, client protocols, expected selected protocol]
	["m1", ["game-v1"], "game-v1"],
	["m2", ["game-v1", "game-v2"], "game-v1"],
	["m3", ["game-v3", "game-v2"], "game-v2"],
]
const MISMATCHES := [
	# [name, client protocols, server port offset]
	["x_chat", ["chat"], 1],
	["x_server_none", ["game-v1"], 2],
	["x_client_none", [], 1],
]
const GOOD_AFTER := [
	# [name, client protocols, server port offset, expected selected protocol]
	["g2", ["game-v1"], 1, "game-v1"],
	["g3", [], 2, ""],
]


func run_server() -> void:
	var servers: Array = []
	var mps: Array = []
	var lists := [["game-v2", "game-v1"], ["game-v1"], []]
	for i in 3:
		var s: Object = make_peer()
		s.supported_protocols = PackedStringArray(lists[i])
		expect_eq(s.supported_protocols, PackedStringArray(lists[i]), "S%d_supported_protocols" % (i + 1))
		watch(s, "S%d" % (i + 1))
		expect_eq(s.create_server(port + i), OK_, "S%d_create_server" % (i + 1))
		mps.append(attach_multiplayer(s, "/root/S%d" % (i + 1)))
		servers.append(s)
	flag("server_ready")

	# Matches on S1.
	for k in MATCHES.size():
		var m: Array = MATCHES[k]
		var cid: Variant = await get_value("id_" + m[0])
		if cid == null or cid == 0:
			return
		if not check(await wait_until(func() -> bool: return got("S1", "peer_connected").has(cid),
				5.0, "S1 peer_connected " + m[0]), m[0] + "_peer_connected",
				"S1 events %s, id %d" % [events["S1"], cid]):
			continue
		var ws: Object = servers[0].get_peer(cid)
		if check(ws != null, m[0] + "_get_peer_non_null", "null"):
			expect_eq(ws.get_selected_protocol(), m[2], m[0] + "_server_selected_protocol")
	expect_eq(got("S1", "peer_connected").size(), MATCHES.size(), "S1_peer_connected_count")
	await barrier("matches_done")

	# Mismatches: nothing reaches S2 / S3.
	await barrier("mismatches_done", 15.0)
	expect_eq(got("S2", "peer_connected"), [], "S2_no_peer_connected_on_mismatch")
	expect_eq(got("S3", "peer_connected"), [], "S3_no_peer_connected_on_mismatch")
	expect_eq(got("S2", "peer_disconnected"), [], "S2_no_peer_disconnected_on_mismatch")
	expect_eq(got("S3", "peer_disconnected"), [], "S3_no_peer_disconnected_on_mismatch")
	await barrier("mismatches_checked")

	# S2 and S3 keep serving good clients.
	for g in GOOD_AFTER:
		var key: String = "S%d" % (g[2] + 1)
		var cid: Variant = await get_value("id_" + g[0])
		if cid == null or cid == 0:
			continue
		if not check(await wait_until(func() -> bool: return got(key, "peer_connected").has(cid),
				5.0, key + " peer_connected " + g[0]), g[0] + "_peer_connected",
				"%s events %s, id %d" % [key, events[key], cid]):
			continue
		expect_eq(got(key, "peer_connected"), [cid], g[0] + "_only_peer_on_" + key)
		var ws: Object = servers[g[2]].get_peer(cid)
		if check(ws != null, g[0] + "_get_peer_non_null", "null"):
			expect_eq(ws.get_selected_protocol(), g[3], g[0] + "_server_selected_protocol")
		# A packet from the server reaches the good client.
		expect_eq(mps[g[2]].send_bytes(("hi " + g[0]).to_utf8_buffer(), cid), OK_, g[0] + "_send")
	await barrier("done")


## A client offering `protocols` to the server on port + `offset`, under a SceneMultiplayer of
## its own at /root/<name> (returned), watched as <name>.
func protocol_client(name: String, protocols: Array, offset: int) -> SceneMultiplayer:
	var c: Object = make_peer()
	c.supported_protocols = PackedStringArray(protocols)
	expect_eq(c.create_client("ws://127.0.0.1:%d" % (port + offset)), OK_, name + "_create_client")
	var mp := attach_multiplayer(c, "/root/" + name)
	watch(mp, name)
	return mp


## Waits for client `c` of protocol_client(`name`, ...) to connect and publishes its id as
## "id_<name>" (0 when it did not connect); then checks that it selected `want`. False when it
## did not connect.
func expect_selected(name: String, c: Object, want: String) -> bool:
	if not check(await wait_signal_count(name, "connected_to_server", 1, 5.0), name + "_connected",
			"events %s, status %d" % [events[name], c.get_connection_status()]):
		put_value("id_" + name, 0)
		return false
	put_value("id_" + name, c.get_unique_id())
	var ws: Object = c.get_peer(1)
	if check(ws != null, name + "_get_peer_1_non_null", "null"):
		expect_eq(ws.get_selected_protocol(), want, name + "_client_selected_protocol")
	return true


func run_client() -> void:
	if not await wait_flag("server_ready"):
		return
	# Matches.
	for m in MATCHES:
		var mp := protocol_client(m[0], m[1], 0)
		if not await expect_selected(m[0], mp.multiplayer_peer, m[2]):
			return
	await barrier("matches_done")

	# Mismatches, all at once.
	var ps: Dictionary = {}
	var t0 := Time.get_ticks_msec()
	for x in MISMATCHES:
		var c: Object = protocol_client(x[0], x[1], x[2]).multiplayer_peer
		watch(c, "p_" + x[0])
		ps[x[0]] = c
	for x in MISMATCHES:
		var key: String = x[0]
		if check(await wait_signal_count(key, "connection_failed", 1, 6.0), key + "_connection_failed",
				"events %s, status %d" % [events[key], ps[key].get_connection_status()]):
			var ms := Time.get_ticks_msec() - t0
			info("%s: connection_failed after %d ms" % [key, ms])
			# The built-in fails within a few ms (the server drops the TCP connection).
			check(ms < 1500, key + "_failed_promptly", "connection_failed after %d ms" % ms)
		expect_eq(ps[key].get_connection_status(), DISCONNECTED, key + "_status_disconnected")
		expect_eq(ps[key].get_unique_id(), 0, key + "_unique_id_0")
		expect_eq(count(key, "connected_to_server"), 0, key + "_no_connected_to_server")
		expect_eq(got("p_" + key, "peer_connected"), [], key + "_no_peer_connected")
	await barrier("mismatches_done", 15.0)
	await barrier("mismatches_checked")

	# Good clients on S2 and S3 afterwards.
	for g in GOOD_AFTER:
		var mp := protocol_client(g[0], g[1], g[2])
		var pkts: Array = []
		mp.peer_packet.connect(func(id: int, pkt: PackedByteArray) -> void: pkts.append([id, pkt]))
		if not await expect_selected(g[0], mp.multiplayer_peer, g[3]):
			continue
		if check(await wait_until(func() -> bool: return pkts.size() >= 1, 5.0, g[0] + " packet"),
				g[0] + "_packet_received", "nothing from the server"):
			expect_eq(pkts[0], [1, ("hi " + g[0]).to_utf8_buffer()], g[0] + "_packet")
	await barrier("done")
