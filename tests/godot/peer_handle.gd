## peer_handle: the WebSocketPeer-like object returned by get_peer(id), on both sides.
## Two clients in the client process, A (URL with a path and query) and B (no path).
##   open     get_ready_state() 1, get_connected_host() "127.0.0.1", get_connected_port()
##            (server side: the client's ephemeral port = get_peer_port(id); client side: the
##            server port), get_requested_url() (client: the URL given; server: ws:// + Host
##            header + path), get_selected_protocol() "", get_close_code() -1 while open,
##            get_current_outbound_buffered_amount() an int >= 0
##   step1    the server calls get_peer(A).close(4001, "bye") -> client A, in its
##            peer_disconnected(1) handler: get_peer(1).get_close_code() 4001,
##            get_close_reason() "bye"
##   step2    client B calls get_peer(1).close(4002, "client bye") -> the server sees 4002 /
##            "client bye" for B when its peer_disconnected(B) is emitted (and B reads its own
##            4002 / "client bye" in its handler)
##   step3    client C against a Python server (run_tests.py peer_handle_hook, port+5) that sends
##            close 4003 "raw bye", reads the reply and keeps the TCP open: peer_disconnected(1)
##            within 3 s, 4003 / "raw bye" in the handler
## In the handlers both get_peer(id) (may already be null) and a handle kept from before are
## read; what the built-in gives is what every pairing must give.
## Roles: server, client.
extends "res://tests/lib/base.gd"

## key -> Array of handler records (see _record)
var seen: Dictionary = {}
## key -> the handle kept from get_peer(..) while open
var kept: Dictionary = {}


func run() -> void:
	if role == "server":
		await run_server()
	else:
		await run_client()


func teardown() -> void:
	kept.clear()
	seen.clear()


## Connected to a peer's peer_disconnected: reads get_peer(id) and the kept handle inside the
## handler.
func _record(id: int, p: Object, key: String) -> void:
	var live: Object = p.get_peer(id)
	var rec := {"id": id, "live_null": live == null}
	if live != null:
		rec["live_code"] = live.get_close_code()
		rec["live_reason"] = live.get_close_reason()
		rec["live_state"] = live.get_ready_state()
	var k: Object = kept.get("%s:%d" % [key, id])
	if k != null:
		rec["kept_code"] = k.get_close_code()
		rec["kept_reason"] = k.get_close_reason()
		rec["kept_state"] = k.get_ready_state()
	if not seen.has(key):
		seen[key] = []
	seen[key].append(rec)


func check_open_handle(ws: Object, who: String, want_port: int, want_url: String) -> void:
	if not check(ws != null, who + "_get_peer_non_null", "null"):
		return
	expect_eq(ws.get_ready_state(), 1, who + "_ready_state_open")
	expect_eq(str(ws.get_connected_host()), "127.0.0.1", who + "_connected_host")
	expect_eq(ws.get_connected_port(), want_port, who + "_connected_port")
	expect_eq(ws.get_requested_url(), want_url, who + "_requested_url")
	expect_eq(ws.get_selected_protocol(), "", who + "_selected_protocol")
	expect_eq(ws.get_close_code(), -1, who + "_close_code_while_open")
	expect_eq(ws.get_close_reason(), "", who + "_close_reason_while_open")
	var amount: Variant = ws.get_current_outbound_buffered_amount()
	check(typeof(amount) == TYPE_INT and amount >= 0, who + "_outbound_buffered_amount",
			"got %s (type %d)" % [amount, typeof(amount)])
	info("%s: host %s port %d url %s buffered %s" % [who, ws.get_connected_host(),
			ws.get_connected_port(), ws.get_requested_url(), amount])


func run_server() -> void:
	var p: Object = make_peer()
	watch(p, "peer")
	var mp := root.multiplayer as SceneMultiplayer
	expect_eq(p.create_server(port), OK_, "create_server")
	mp.multiplayer_peer = p
	p.peer_disconnected.connect(_record.bind(p, "srv"))
	flag("server_ready")
	var ids := {}
	for n in ["A", "B"]:
		var v: Variant = await get_value("id_" + n)
		if v == null or v == 0:
			return
		ids[n] = v
	var both := func() -> bool:
		return got("peer", "peer_connected").has(ids["A"]) and got("peer", "peer_connected").has(ids["B"])
	if not check(await wait_until(both, 5.0, "A and B connected"), "A_B_connected",
			"events %s" % [events]):
		return
	for n in ["A", "B"]:
		var id: int = ids[n]
		var ws: Object = p.get_peer(id)
		var pp: int = p.get_peer_port(id)
		check(pp > 0 and pp != port, "srv_%s_peer_port" % n, "get_peer_port %d" % pp)
		var path := "/handle?x=1" if n == "A" else "/"
		check_open_handle(ws, "srv_" + n, pp, "ws://127.0.0.1:%d%s" % [port, path])
		# Only B's handle is kept: the built-in stops polling a peer that is CLOSING, so a handle
		# kept by the script would hold A's socket open (step3 covers that case with Python).
		if n == "B":
			kept["srv:%d" % id] = ws
		ws = null
	await barrier("open_checked")

	# step1: the server closes A with 4001 "bye".
	var ws_a: Object = p.get_peer(ids["A"])
	if ws_a != null:
		ws_a.close(4001, "bye")
		expect_in(ws_a.get_ready_state(), [2, 3], "srv_A_state_after_close_call")
		info("server: A state right after close(): %d" % ws_a.get_ready_state())
	ws_a = null
	if check(await wait_until(func() -> bool: return got("peer", "peer_disconnected").has(ids["A"]),
			5.0, "peer_disconnected(A)"), "srv_A_peer_disconnected", "events %s" % [events]):
		var recs: Array = seen.get("srv", []).filter(func(r: Dictionary) -> bool:
				return r["id"] == ids["A"])
		info("server: A handler saw %s" % [recs])
		if check(recs.size() == 1, "srv_A_one_handler_call", "records %s" % [recs]):
			# The built-in still has the peer in its handler.
			expect_eq(recs[0]["live_null"], false, "srv_A_get_peer_in_handler")
		# What the closing side reads in its handler is only reported: the built-in drops a
		# peer as soon as it is CLOSING, so depending on timing it reads state 2 / code -1 or
		# state 3 / 4001 "bye".
		mark("get_peer_A_after")
		check(p.get_peer(ids["A"]) == null, "srv_A_get_peer_null_after", "non-null")
		mark("end")
	await barrier("step1")

	# step2: client B closes with 4002 "client bye".
	if check(await wait_until(func() -> bool: return got("peer", "peer_disconnected").has(ids["B"]),
			5.0, "peer_disconnected(B)"), "srv_B_peer_disconnected", "events %s" % [events]):
		var recs: Array = seen.get("srv", []).filter(func(r: Dictionary) -> bool:
				return r["id"] == ids["B"])
		info("server: B handler saw %s" % [recs])
		if check(recs.size() == 1, "srv_B_one_handler_call", "records %s" % [recs]):
			var r: Dictionary = recs[0]
			# The built-in: get_peer(B) still works inside the handler, connection closed.
			if check(not r["live_null"], "srv_B_get_peer_in_handler", "get_peer(B) null in the handler"):
				expect_eq(r.get("live_code"), 4002, "srv_B_close_code_in_handler")
				expect_eq(r.get("live_reason"), "client bye", "srv_B_close_reason_in_handler")
				expect_eq(r.get("live_state"), 3, "srv_B_state_in_handler")
			expect_eq(r.get("kept_code"), 4002, "srv_B_kept_close_code_in_handler")
			expect_eq(r.get("kept_reason"), "client bye", "srv_B_kept_close_reason_in_handler")
		mark("get_peer_B_after")
		check(p.get_peer(ids["B"]) == null, "srv_B_get_peer_null_after", "non-null")
		mark("end")
		var k: Object = kept["srv:%d" % ids["B"]]
		expect_eq(k.get_close_code(), 4002, "srv_B_kept_close_code_after")
		expect_eq(k.get_close_reason(), "client bye", "srv_B_kept_close_reason_after")
		expect_eq(k.get_ready_state(), 3, "srv_B_kept_state_after")
	await barrier("step2")
	expect_eq(got("peer", "peer_disconnected").size(), 2, "srv_two_peer_disconnected")
	await barrier("done", 15.0)


func run_client() -> void:
	if not await wait_flag("server_ready"):
		return
	var cs := {}
	for n in ["A", "B"]:
		var c: Object = make_peer()
		cs[n] = c
		watch(c, "p" + n)
		c.peer_disconnected.connect(_record.bind(c, n))
		var u := url("/handle?x=1") if n == "A" else url()
		expect_eq(c.create_client(u), OK_, "create_client_" + n)
		var mp := attach_multiplayer(c, "/root/C" + n)
		watch(mp, "mp" + n)
	var all_in := func() -> bool:
		return count("mpA", "connected_to_server") == 1 and count("mpB", "connected_to_server") == 1
	if not check(await wait_until(all_in, 5.0, "A and B connected"), "A_B_connected",
			"events %s" % [events]):
		put_value("id_A", 0)
		put_value("id_B", 0)
		return
	for n in ["A", "B"]:
		put_value("id_" + n, cs[n].get_unique_id())
		var ws: Object = cs[n].get_peer(1)
		var u := url("/handle?x=1") if n == "A" else url()
		check_open_handle(ws, "cli_" + n, port, u)
		kept["%s:1" % n] = ws
	await barrier("open_checked")

	# step1: the server closes A with 4001 "bye".
	var t_a := Time.get_ticks_msec()
	var ok_a: bool = await wait_signal_count("pA", "peer_disconnected", 1, 5.0)
	info("client: A peer_disconnected after %d ms (from the barrier)"
			% (Time.get_ticks_msec() - t_a))
	if check(ok_a, "A_peer_disconnected",
			"no peer_disconnected(1) within 5 s; events %s" % [events["pA"]]):
		var recs: Array = seen.get("A", [])
		info("client: A handler saw %s" % [recs])
		if check(recs.size() == 1, "A_one_handler_call", "records %s" % [recs]):
			var r: Dictionary = recs[0]
			expect_eq(r["id"], 1, "A_handler_id")
			# The built-in still has the peer in the handler: get_peer(1) works there.
			if check(not r["live_null"], "A_get_peer_1_in_handler", "get_peer(1) null in the handler"):
				expect_eq(r.get("live_code"), 4001, "A_close_code_in_handler")
				expect_eq(r.get("live_reason"), "bye", "A_close_reason_in_handler")
				expect_eq(r.get("live_state"), 3, "A_state_in_handler")
			expect_eq(r.get("kept_code"), 4001, "A_kept_close_code_in_handler")
			expect_eq(r.get("kept_reason"), "bye", "A_kept_close_reason_in_handler")
		expect_eq(got("mpA", "server_disconnected").size(), 1, "A_server_disconnected")
		expect_eq(cs["A"].get_connection_status(), DISCONNECTED, "A_status_disconnected")
		mark("get_peer_1_after_A")
		check(cs["A"].get_peer(1) == null, "A_get_peer_1_null_after", "non-null")
		mark("end")
		var k: Object = kept["A:1"]
		expect_eq(k.get_close_code(), 4001, "A_kept_close_code_after")
		expect_eq(k.get_close_reason(), "bye", "A_kept_close_reason_after")
		expect_eq(k.get_ready_state(), 3, "A_kept_state_after")
	expect_eq(cs["B"].get_connection_status(), CONNECTED, "B_unaffected_by_A")
	await barrier("step1")

	# step2: B closes with 4002 "client bye".
	var ws_b: Object = cs["B"].get_peer(1)
	if ws_b != null:
		ws_b.close(4002, "client bye")
		info("client: B state right after close(): %d, status %d" % [ws_b.get_ready_state(),
				cs["B"].get_connection_status()])
		expect_in(ws_b.get_ready_state(), [2, 3], "B_state_after_close_call")
	if check(await wait_signal_count("pB", "peer_disconnected", 1, 5.0), "B_peer_disconnected",
			"events %s" % [events["pB"]]):
		var recs: Array = seen.get("B", [])
		info("client: B handler saw %s" % [recs])
		# The closing client: the built-in reads its own code and reason back, state CLOSED.
		if check(recs.size() == 1, "B_one_handler_call", "records %s" % [recs]):
			var r: Dictionary = recs[0]
			if check(not r["live_null"], "B_get_peer_1_in_handler", "get_peer(1) null in the handler"):
				expect_eq(r.get("live_code"), 4002, "B_close_code_in_handler")
				expect_eq(r.get("live_reason"), "client bye", "B_close_reason_in_handler")
				expect_eq(r.get("live_state"), 3, "B_state_in_handler")
		var k: Object = kept["B:1"]
		info("client: kept B handle after: state %d code %d reason \"%s\"" % [k.get_ready_state(),
				k.get_close_code(), k.get_close_reason()])
		expect_eq(k.get_ready_state(), 3, "B_kept_state_closed")
		expect_eq(k.get_close_code(), 4002, "B_kept_close_code")
		expect_eq(k.get_close_reason(), "client bye", "B_kept_close_reason")
		expect_eq(cs["B"].get_connection_status(), DISCONNECTED, "B_status_disconnected")
	await barrier("step2")

	# step3: a Python server (run_tests.py peer_handle_hook) sends close 4003 "raw bye", reads
	# the client's close reply and then keeps the TCP connection open without reading: the
	# built-in client reports peer_disconnected(1) once the close frames are exchanged.
	if not await wait_flag("raw_srv_ready"):
		await barrier("done")
		return
	var c: Object = make_peer()
	watch(c, "pC")
	c.peer_disconnected.connect(_record.bind(c, "C"))
	expect_eq(c.create_client("ws://127.0.0.1:%d" % (port + 5)), OK_, "create_client_C")
	polled.append(c)
	if check(await wait_status(c, CONNECTED, 5.0), "C_connected",
			"status %d" % c.get_connection_status()):
		expect_eq(c.get_unique_id(), 777777, "C_unique_id_from_raw_server")
		flag("C_ready")
		var t_c := Time.get_ticks_msec()
		var ok_c: bool = await wait_signal_count("pC", "peer_disconnected", 1, 3.0)
		info("client: C peer_disconnected after %d ms (from C_ready)"
				% (Time.get_ticks_msec() - t_c))
		var ws_c: Object = c.get_peer(1) if not ok_c else null
		if check(ok_c, "C_peer_disconnected",
				("no peer_disconnected(1) within 3 s of the server's close frame (the server "
				+ "keeps the TCP open); status %d, state %s, events %s")
				% [c.get_connection_status(), ws_c.get_ready_state() if ws_c != null else "-",
				events["pC"]]):
			var recs: Array = seen.get("C", [])
			info("client: C handler saw %s" % [recs])
			if check(recs.size() == 1, "C_one_handler_call", "records %s" % [recs]):
				var r: Dictionary = recs[0]
				if check(not r["live_null"], "C_get_peer_1_in_handler", "null"):
					expect_eq(r.get("live_code"), 4003, "C_close_code_in_handler")
					expect_eq(r.get("live_reason"), "raw bye", "C_close_reason_in_handler")
					expect_eq(r.get("live_state"), 3, "C_state_in_handler")
			expect_eq(c.get_connection_status(), DISCONNECTED, "C_status_disconnected")
	flag("C_done")
	await barrier("done")
