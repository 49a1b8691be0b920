## disconnect: four clients A, B, C, D (one client process, each with its own SceneMultiplayer).
##   step1  server disconnect_peer(A)        -> A: server_disconnected + peer_disconnected(1);
##                                              server: peer_disconnected(A) on a later poll
##   step2  server disconnect_peer(B, true)  -> server: no signal, get_peer(B) null at once;
##                                              B: server_disconnected
##   step3  client C.close()                 -> C: DISCONNECTED at once, id 0;
##                                              server: peer_disconnected(C)
##   step4  server close()                   -> server: no peer_disconnected, DISCONNECTED, id 0,
##                                              put_packet 3, the port is free again;
##                                              D: server_disconnected + peer_disconnected(1)
## Roles: server, client.
extends "res://tests/lib/base.gd"

const NAMES := ["A", "B", "C", "D"]


func run_server() -> void:
	var p: Object = make_peer()
	watch(p, "peer")
	var mp := root.multiplayer as SceneMultiplayer
	watch(mp, "mp")
	serve_root(p)
	if not check(await wait_signal_count("peer", "peer_connected", 4, 10.0), "four_clients",
			"peer_connected %s" % [got("peer", "peer_connected")]):
		return
	var ids: Dictionary = {}
	for n in NAMES:
		ids[n] = await get_value("id_" + n)
	var connected := got("peer", "peer_connected")
	connected.sort()
	var reported: Array = ids.values()
	reported.sort()
	expect_eq(connected, reported, "ids_match")
	if not await barrier("connected"):
		return

	# step1: graceful disconnect_peer
	var t_a := Time.get_ticks_msec()
	p.disconnect_peer(ids["A"])
	expect_eq(got("peer", "peer_disconnected"), [], "disconnect_peer_no_signal_during_call")
	if check(await wait_until(func() -> bool: return got("peer", "peer_disconnected").has(ids["A"]),
			5.0, "peer_disconnected(A)"), "peer_disconnected_A", "events %s" % [events]):
		info("step1: peer_disconnected(A) after %d ms" % (Time.get_ticks_msec() - t_a))
		expect_eq(got("peer", "peer_disconnected"), [ids["A"]], "only_A_disconnected")
		expect_eq(got("mp", "peer_disconnected"), [ids["A"]], "mp_peer_disconnected_A")
		mark("get_peer_A_after")
		check(p.get_peer(ids["A"]) == null, "get_peer_A_null_after_signal", "still non-null")
		mark("end")
	await barrier("step1")

	# step2: forced disconnect_peer
	p.disconnect_peer(ids["B"], true)
	mark("get_peer_B_after")
	check(p.get_peer(ids["B"]) == null, "get_peer_B_null_at_once", "still non-null")
	mark("end")
	await sleep(1.0)
	expect_eq(got("peer", "peer_disconnected").has(ids["B"]), false, "forced_no_peer_disconnected")
	expect_eq(got("mp", "peer_disconnected").has(ids["B"]), false, "forced_no_mp_peer_disconnected")
	await barrier("step2")

	# step3: the client closes C
	await barrier("step3_closed")
	var t_c := Time.get_ticks_msec()
	check(await wait_until(func() -> bool: return got("peer", "peer_disconnected").has(ids["C"]),
			5.0, "peer_disconnected(C)"), "peer_disconnected_C", "events %s" % [events])
	info("step3: peer_disconnected(C) after %d ms" % (Time.get_ticks_msec() - t_c))
	expect_eq(got("mp", "peer_disconnected").has(ids["C"]), true, "mp_peer_disconnected_C")
	# B was removed without a signal, so SceneMultiplayer still lists it (built-in behaviour).
	var mp_peers := Array(mp.get_peers())
	mp_peers.sort()
	var want := [ids["B"], ids["D"]]
	want.sort()
	expect_eq(mp_peers, want, "mp_peers_after_C_left")
	await barrier("step3")

	# step4: the server closes
	var before: int = count("peer", "peer_disconnected")
	var mp_before: int = events["mp"].size()
	p.close()
	expect_eq(count("peer", "peer_disconnected"), before, "close_no_signal_during_call")
	expect_eq(p.get_connection_status(), DISCONNECTED, "status_after_close")
	expect_eq(p.get_unique_id(), 0, "unique_id_after_close")
	mark("put_after_close")
	expect_eq(p.put_packet(PackedByteArray([1, 2, 3])), ERR_UNCONFIGURED, "put_packet_after_close")
	mark("end")
	await sleep(0.5)
	expect_eq(count("peer", "peer_disconnected"), before, "close_no_peer_disconnected")
	# SceneMultiplayer sees the status drop to DISCONNECTED: server_disconnected, and no
	# peer_disconnected for the peers that were connected.
	var mp_after: Array = events["mp"].slice(mp_before).map(func(e: Array) -> String: return e[1])
	expect_eq(mp_after, ["server_disconnected"], "close_mp_events")
	# No longer listening: the port can be bound again.
	var again: Object = make_peer()
	expect_eq(again.create_server(port), OK_, "port_free_after_close")
	drop_peer(again)
	await barrier("step4")


## Client `n` (peer `p`, watched as "p<n>", its SceneMultiplayer as "mp<n>") sees the server
## drop it, within 1 s as the built-in does (a frame or two): server_disconnected, the peer's
## peer_disconnected(1), status DISCONNECTED. False when server_disconnected never came.
func expect_dropped_by_server(n: String, p: Object, step: String) -> bool:
	var t0 := Time.get_ticks_msec()
	var ok: bool = await wait_signal_count("mp" + n, "server_disconnected", 1, 5.0)
	var ms := Time.get_ticks_msec() - t0
	info("%s: %s saw server_disconnected after %d ms" % [step, n, ms])
	check(not ok or ms < 1000, n + "_noticed_promptly", "server_disconnected after %d ms" % ms)
	if check(ok, n + "_server_disconnected", "events %s" % [events["mp" + n]]):
		expect_eq(got("p" + n, "peer_disconnected"), [1], n + "_peer_disconnected_1")
		expect_eq(p.get_connection_status(), DISCONNECTED, n + "_status")
	return ok


func run_client() -> void:
	var ps: Dictionary = {}
	var mps: Dictionary = {}
	if not await wait_flag("server_ready"):
		return
	for n in NAMES:
		var p: Object = make_peer()
		ps[n] = p
		mps[n] = connect_named(p, n)
	var all_in := func() -> bool:
		for n in NAMES:
			if count("mp" + n, "connected_to_server") != 1:
				return false
		return true
	if not check(await wait_until(all_in, 10.0, "4 clients connected"), "all_connected",
			"events %s" % [events]):
		return
	for n in NAMES:
		put_value("id_" + n, ps[n].get_unique_id())
	if not await barrier("connected"):
		return

	# step1: A was disconnected by the server
	var t_A := Time.get_ticks_msec()
	var ok_A: bool = await wait_signal_count("mpA", "server_disconnected", 1, 5.0)
	info("step1: A saw server_disconnected after %d ms" % (Time.get_ticks_msec() - t_A))
	# The built-in notices within a frame or two.
	check(not ok_A or Time.get_ticks_msec() - t_A < 1000, "A_noticed_promptly",
			"server_disconnected after %d ms" % (Time.get_ticks_msec() - t_A))
	if check(ok_A, "A_server_disconnected",
			"events %s" % [events["mpA"]]):
		expect_eq(got("pA", "peer_disconnected"), [1], "A_peer_disconnected_1")
		expect_eq(ps["A"].get_connection_status(), DISCONNECTED, "A_status")
		expect_eq(ps["A"].get_unique_id(), 0, "A_unique_id")
		expect_eq(count("mpA", "connection_failed"), 0, "A_no_connection_failed")
	for n in ["B", "C", "D"]:
		expect_eq(ps[n].get_connection_status(), CONNECTED, n + "_unaffected_by_A")
	await barrier("step1")

	# step2: B force-disconnected by the server
	await expect_dropped_by_server("B", ps["B"], "step2")
	await barrier("step2")

	# step3: C closes
	var c_before: int = events["mpC"].size()
	ps["C"].close()
	expect_eq(ps["C"].get_connection_status(), DISCONNECTED, "C_status_after_close")
	expect_eq(ps["C"].get_unique_id(), 0, "C_unique_id_after_close")
	expect_eq(got("pC", "peer_disconnected"), [], "C_close_no_peer_signal")
	await barrier("step3_closed")
	await frames(3)
	# Its SceneMultiplayer notices the status change on its next poll.
	var c_after: Array = events["mpC"].slice(c_before).map(func(e: Array) -> String: return e[1])
	expect_eq(c_after, ["server_disconnected"], "C_close_mp_events")
	expect_eq(ps["D"].get_connection_status(), CONNECTED, "D_still_connected")
	await barrier("step3")

	# step4: the server closed
	if await expect_dropped_by_server("D", ps["D"], "step4"):
		expect_eq(ps["D"].get_unique_id(), 0, "D_unique_id")
	await barrier("step4")
