## handshake_handler: RustWebSocketMultiplayerPeer.set_handshake_handler(callable) on a rust
## server (handshake_timeout 1.0). The handler answers by the request path:
##   /token      query "token=good" -> return true; otherwise -> return 401
##   /false      return false (-> 403 Forbidden)
##   /reject_obj h.reject(503, "Server full");  /reject_default h.reject() (-> 403 Forbidden)
##   /status404  h.reject(200, "OK") (refused: not 400-599, stays unanswered), return 404
##   /late       accept() 0.3 s later (then a second answer, refused with an error)
##   /never      kept, never answered (-> dropped at handshake_timeout, no response)
##   /dropped    not kept, not answered (the object is freed at once; observed, no check)
##   /peers      calls back into the server (get_peer_ids()), return true
##   anything else: return true
## Every call is logged (path, query, headers, address, port, ...) and checked here.
##   client  Godot clients of both classes: /token?token=bad -> SceneMultiplayer
##           connection_failed; /token?token=good -> connected, a packet each way
##   py      (tests/handshake_handler_hook.py) raw HTTP clients read the status lines; then
##           the handler is removed and a raw client is admitted without a call
## Roles: server, client (and "py", the hook, as a barrier party).
extends "res://tests/lib/base.gd"

var srv: Object = null
## One Dictionary per handler call.
var log_calls: Array = []
## Handshakes kept unanswered (/never) until the end.
var held: Array = []
var late_answered_at := 0
var late_after_accept := false


func teardown() -> void:
	held.clear()
	if srv != null:
		srv.set_handshake_handler(Callable())
	srv = null


func _handler(h: Object) -> Variant:
	var path: String = h.get_path()
	var rec := {
		"path": path,
		"query": h.get_query(),
		"headers": h.get_headers(),
		"authorization": h.get_header("authorization"),
		"Authorization": h.get_header("AUTHORIZATION"),
		"missing": h.get_header("x-not-sent"),
		"x_multi": h.get_header("x-multi"),
		"x_port": h.get_header("x-port"),
		"address": h.get_remote_address(),
		"port": h.get_remote_port(),
		"answered_at_start": h.is_answered(),
		"class": h.get_class(),
		"msec": Time.get_ticks_msec(),
	}
	log_calls.append(rec)
	match path:
		"/token":
			return true if h.get_query() == "token=good" else 401
		"/false":
			return false
		"/reject_obj":
			h.reject(503, "Server full")
			rec["answered_after"] = h.is_answered()
			return null
		"/reject_default":
			h.reject()
			rec["answered_after"] = h.is_answered()
			return null
		"/status404":
			mark("reject_bad_status")
			h.reject(200, "OK")
			mark("after_reject_bad_status")
			rec["answered_after"] = h.is_answered()
			return 404
		"/late":
			create_timer(0.3).timeout.connect(_late_accept.bind(h))
			return null
		"/never":
			held.append(h)
			return null
		"/dropped":
			return null
		"/peers":
			rec["peer_ids"] = srv.get_peer_ids()
			rec["status"] = srv.get_connection_status()
			rec["signal_ids"] = got("S", "peer_connected").filter(
					func(id: int) -> bool: return not got("S", "peer_disconnected").has(id))
			return true
	return true


func _late_accept(h: Object) -> void:
	late_answered_at = Time.get_ticks_msec()
	var before: bool = h.is_answered()
	h.accept()
	late_after_accept = h.is_answered() and not before
	mark("double_answer")
	h.reject(409, "Conflict")  # already answered: refused with an error, the 101 stands
	mark("after_double_answer")


## A call from 127.0.0.1 with a port, a RustWebSocketHandshake not answered yet.
func _plain_call(r: Dictionary) -> bool:
	return (r["address"] == "127.0.0.1" and r["port"] > 0
			and r["class"] == "RustWebSocketHandshake" and not r["answered_at_start"])


func calls(path: String) -> Array:
	return log_calls.filter(func(r: Dictionary) -> bool: return r["path"] == path)


func run_server() -> void:
	srv = make_peer()
	watch(srv, "S")
	srv.handshake_timeout = 1.0
	srv.set_handshake_handler(_handler)
	expect_eq(srv.create_server(port), OK_, "create_server")
	polled.append(srv)
	# Echo every packet back to its sender, prefixed with "re:".
	var echoed := [0]
	var echo := func() -> void:
		for pk in drain(srv):
			srv.set_target_peer(pk[0])
			srv.put_packet("re:".to_utf8_buffer() + pk[1])
			echoed[0] += 1
	process_frame.connect(echo)
	flag("server_ready")

	# Phase 1: Godot clients (two rejected, two accepted).
	var godot_ok: bool = await wait_signal_count("S", "peer_connected", 2, 10.0)
	check(godot_ok, "godot_clients_connected", "events %s" % [events["S"]])
	# The Godot clients' calls, before the barrier lets the hook's raw clients in (they ask
	# for /token too).
	var tok := calls("/token")
	await barrier("godot_done", 15.0)
	var cids: Variant = await get_value("cids")
	if godot_ok and cids != null:
		var want: Array = cids
		var have: Array = got("S", "peer_connected")
		want.sort()
		have.sort()
		expect_eq(have, want, "only_accepted_godot_clients_connected")
	expect_eq(tok.size(), 4, "handler_called_for_each_godot_client")
	var queries: Array = tok.map(func(r: Dictionary) -> String: return r["query"])
	queries.sort()
	expect_eq(queries, ["token=bad", "token=bad", "token=good", "token=good"], "godot_queries")
	check(tok.all(_plain_call), "godot_calls_address_port_class", "calls %s" % [tok])
	expect_eq(echoed[0], 2, "echoed_godot_packets")

	# Phase 2: raw HTTP clients from Python.
	await barrier("py_done", 20.0)
	_check_py_calls()

	# Phase 3: no handler -> admitted without a call.
	var n_calls := log_calls.size()
	var n_conn := count("S", "peer_connected")
	srv.set_handshake_handler(Callable())
	flag("handler_removed")
	check(await wait_signal_count("S", "peer_connected", n_conn + 1, 5.0),
			"admitted_without_handler", "events %s" % [events["S"]])
	await barrier("removed_done", 15.0)
	expect_eq(log_calls.size(), n_calls, "no_call_without_handler")
	expect_eq(calls("/after_removed"), [], "after_removed_never_seen")
	process_frame.disconnect(echo)
	await barrier("done", 15.0)


func _check_py_calls() -> void:
	for path in ["/false", "/reject_obj", "/reject_default", "/status404", "/late", "/never",
			"/auth", "/peers", "/mid"]:
		expect_eq(calls(path).size(), 1, "called_once_" + path.substr(1))
	# /big and /big20: the head is over 16 KiB, answered 431 before any handler call.
	expect_eq(calls("/big").size(), 0, "not_called_for_big_head")
	expect_eq(calls("/big20").size(), 0, "not_called_for_big20_head")
	var tok := calls("/token")
	var queries: Array = tok.map(func(r: Dictionary) -> String: return r["query"])
	# Godot phase: 2 good + 2 bad; Python: good, bad, good (meanwhile).
	expect_eq(queries.count("token=good"), 4, "token_good_calls")
	expect_eq(queries.count("token=bad"), 3, "token_bad_calls")
	var one := func(path: String, key: String) -> Variant:
		var c := calls(path)
		return c[0].get(key) if c.size() == 1 else "<no call>"
	expect_eq(one.call("/reject_obj", "answered_after"), true, "reject_obj_is_answered")
	expect_eq(one.call("/reject_default", "answered_after"), true, "reject_default_is_answered")
	expect_eq(one.call("/status404", "answered_after"), false, "reject_status_200_not_answered")
	expect_eq(one.call("/late", "answered_at_start"), false, "late_not_answered_at_start")
	check(late_after_accept, "late_is_answered_after_accept", "is_answered() not false->true")
	var late := calls("/late")
	if late.size() == 1:
		var ms: int = late_answered_at - int(late[0]["msec"])
		check(ms >= 290 and ms < 800, "late_accept_delay", "accept() %d ms after the call" % ms)
	# /auth: headers as sent by Python (names lowercased; a repeated header keeps its last value).
	var auth := calls("/auth")
	if auth.size() == 1:
		var a: Dictionary = auth[0]
		expect_eq(a["authorization"], "Bearer x", "auth_get_header")
		expect_eq(a["Authorization"], "Bearer x", "auth_get_header_case_insensitive")
		expect_eq(a["missing"], "", "auth_get_header_missing_empty")
		var hd: Dictionary = a["headers"]
		expect_eq(hd.get("authorization"), "Bearer x", "auth_get_headers_authorization")
		check(hd.has("host") and hd.has("sec-websocket-key") and hd.has("upgrade")
				and hd.has("x-multi") and hd.has("x-port"), "auth_get_headers_keys",
				"keys %s" % [hd.keys()])
		var lower := hd.keys().all(func(k: Variant) -> bool: return k == str(k).to_lower())
		check(lower, "auth_get_headers_lowercase", "keys %s" % [hd.keys()])
		expect_eq(hd.get("sec-websocket-version"), "13", "auth_get_headers_version")
		expect_eq(hd.get("x-multi"), "b", "auth_get_headers_repeated_last")
		expect_eq(a["x_multi"], "b", "auth_get_header_repeated_last")
		expect_eq(a["path"], "/auth", "auth_path")
		expect_eq(a["query"], "a=1&b=two", "auth_query")
		expect_eq(a["address"], "127.0.0.1", "auth_remote_address")
		expect_eq(str(a["port"]), a["x_port"], "auth_remote_port_is_client_port")
	var peers := calls("/peers")
	if peers.size() == 1:
		# Connected at that moment: the two Godot clients and Python's admitted raw clients.
		var ids: Array = Array(peers[0]["peer_ids"])
		ids.sort()
		var want: Array = peers[0]["signal_ids"]
		want.sort()
		expect_eq(ids.size(), int(await get_value("peers_expected")), "callback_get_peer_ids_size")
		expect_eq(ids, want, "callback_get_peer_ids")
		expect_eq(peers[0]["status"], CONNECTED, "callback_get_connection_status")
	expect_eq(one.call("/dropped", "path"), "/dropped", "dropped_called")


func run_client() -> void:
	if not await wait_flag("server_ready"):
		return
	var cids: Array = []
	for cls in [BUILTIN_CLASS, "RustWebSocketMultiplayerPeer"]:
		var short := "builtin" if cls == BUILTIN_CLASS else "rust"
		# Rejected (the handler returns 401).
		var r: Object = make_peer(cls)
		expect_eq(r.create_client(url("/token?token=bad")), OK_, short + "_bad_create_client")
		var mp_r := attach_multiplayer(r, "/root/R_" + short)
		watch(mp_r, "mpR_" + short)
		watch(r, "R_" + short)
		var t0 := Time.get_ticks_msec()
		if check(await wait_signal_count("mpR_" + short, "connection_failed", 1, 5.0),
				short + "_bad_connection_failed", "events %s, status %d" % [
				events["mpR_" + short], r.get_connection_status()]):
			info("%s rejected client failed after %d ms" % [short, Time.get_ticks_msec() - t0])
			expect_eq(r.get_connection_status(), DISCONNECTED, short + "_bad_disconnected")
			expect_eq(got("mpR_" + short, "connected_to_server"), [], short + "_bad_never_connected")
			expect_eq(got("R_" + short, "peer_connected"), [], short + "_bad_no_peer_connected")
		# Accepted (the handler returns true): connected, a packet each way.
		var a: Object = make_peer(cls)
		expect_eq(a.create_client(url("/token?token=good")), OK_, short + "_good_create_client")
		polled.append(a)
		if not check(await wait_status(a, CONNECTED, 5.0), short + "_good_connected",
				"status %d" % a.get_connection_status()):
			continue
		cids.append(a.get_unique_id())
		a.set_target_peer(1)
		expect_eq(a.put_packet(("hi " + short).to_utf8_buffer()), OK_, short + "_good_put")
		var pkts := await receive(a, 1, 5.0, short + "_good_echo")
		if not pkts.is_empty():
			expect_eq(pkts, [[1, ("re:hi " + short).to_utf8_buffer()]], short + "_good_echo_content")
	put_value("cids", cids)
	await barrier("godot_done", 15.0)
	await barrier("py_done", 20.0)
	await barrier("removed_done", 15.0)
	await barrier("done", 15.0)
