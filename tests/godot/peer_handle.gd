## peer_handle: the WebSocketPeer-like object returned by get_peer(id), on both sides.
## Two clients in the client process, A (URL with a path and query) and B (no path).
##   open     get_ready_state() 1, get_connected_host() "127.0.0.1", get_connected_port()
##            (server side: the client's ephemeral port = get_peer_port(id); client side: the
##            server port), get_requested_url() (client: the URL given; server: ws:// + Host
##            header + path), get_selected_protocol() "", get_close_code() -1 while open,
##            get_current_outbound_buffered_amount() an int >= 0; reading on the handle finds
##            nothing (the multiplayer peer takes every packet when it polls): get_packet_error()
##            0 before any read, get_available_packet_count() 0, get_packet() [] then
##            get_packet_error() 2 ERR_UNAVAILABLE, get_var() null; set_no_delay(true) accepted;
##            WRITE_MODE_TEXT 0 / WRITE_MODE_BINARY 1
##   send     the server sends to A and B through get_peer(id), then A and B to the server
##            through get_peer(1), one message at a time (each acknowledged before the next, as
##            the built-in's was_string_packet() describes the last message its poll took):
##            put_packet, send_text, send (default: binary), send(.., WRITE_MODE_TEXT),
##            send(.., WRITE_MODE_BINARY), put_var(1.5), then a 65536-byte put_packet, send,
##            send_text and put_var -> 6 ERR_OUT_OF_MEMORY each and nothing delivered, then one
##            more put_packet. Every message starts with SceneMultiplayer's raw command byte, so
##            the receiving SceneMultiplayer emits peer_packet(sender, rest): exact bytes, sender,
##            and get_peer(sender).was_string_packet() true for the text ones only. With the
##            Godot protocol the rust class emits no data_received.
##   step1    the server calls get_peer(A).close(4001, "bye") -> client A, in its
##            peer_disconnected(1) handler: get_peer(1).get_close_code() 4001,
##            get_close_reason() "bye". Right after the close() call, and on every handle of a
##            closed connection below: put_packet, send, send_text, put_var -> 1 FAILED,
##            get_packet() then get_packet_error() 1 FAILED, get_available_packet_count() 0
##   step2    client B calls get_peer(1).close(4002, "client bye") -> the server sees 4002 /
##            "client bye" for B when its peer_disconnected(B) is emitted (and B reads its own
##            4002 / "client bye" in its handler)
##   step3    client C against a Python server (tests/wire_hooks.py peer_handle_hook, port+5) that sends
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
## key -> Array of [sender, payload, get_peer(sender).was_string_packet()] from SceneMultiplayer's
## peer_packet (key: "A" / "B" on the client side, "srv:<id>" on the server)
var rx: Dictionary = {}
## data_received(id) emissions of the rust class (never in Godot-protocol mode)
var data_received: Array = []

const FAILED_ := 1
## SceneMultiplayer's NETWORK_COMMAND_RAW: a packet starting with it is emitted as
## peer_packet(sender, the rest).
const RAW_CMD := 3
## put_var's value: var_to_bytes(1.5) starts with the FLOAT type, 3, the raw command.
const VAR := 1.5
## The messages of step "send": [name, tag, arrives as text].
const SENDS := [
	["put_packet", "put", false],
	["send_text", "text", true],
	["send", "send", false],
	["send_write_mode_text", "send-text", true],
	["send_write_mode_binary", "send-bin", false],
	["put_var", "", false],
	["put_packet_after_oom", "after-oom", false],
]


func teardown() -> void:
	kept.clear()
	seen.clear()
	rx.clear()


func _on_data_received(id: int, who: String) -> void:
	data_received.append([who, id])


## SceneMultiplayer.peer_packet: records the payload and how the handle says it arrived.
func _on_peer_packet(from: int, pkt: PackedByteArray, p: Object, key: String) -> void:
	var h: Object = p.get_peer(from)
	var k := key if key != "" else "srv:%d" % from
	if not rx.has(k):
		rx[k] = []
	rx[k].append([from, pkt, h.was_string_packet() if h != null else null])


## The bytes of SENDS message `tag` from/to `who`, behind the raw command byte.
static func payload(tag: String, who: String) -> PackedByteArray:
	var b := PackedByteArray([RAW_CMD])
	b.append_array(("%s-%s" % [tag, who]).to_utf8_buffer())
	return b


## What the receiving SceneMultiplayer hands to peer_packet for SENDS[i].
static func expected(i: int, who: String) -> PackedByteArray:
	if SENDS[i][0] == "put_var":
		return var_to_bytes(VAR).slice(1)
	return payload(SENDS[i][1], who).slice(1)


func send_one(ws: Object, i: int, who: String) -> int:
	var b := payload(SENDS[i][1], who)
	match SENDS[i][0]:
		"send_text":
			return ws.send_text(b.get_string_from_utf8())
		"send":
			return ws.send(b)
		"send_write_mode_text":
			return ws.send(b, 0)
		"send_write_mode_binary":
			return ws.send(b, 1)
		"put_var":
			return ws.put_var(VAR)
	return ws.put_packet(b)


## Sends SENDS on `ws` (a handle of this process) as `dir` `who`, each one acknowledged by the
## receiving process before the next; the oversize sends come before the last message.
func send_all(ws: Object, who: String, dir: String) -> void:
	var name := "%s_%s" % [dir, who]
	if not check(ws != null, name + "_handle", "get_peer returned null"):
		return
	for i in SENDS.size():
		if SENDS[i][0] == "put_packet_after_oom":
			var big := PackedByteArray()
			big.resize(65536)
			big.fill(97)
			big[0] = RAW_CMD
			expect_eq(ws.put_packet(big), ERR_OUT_OF_MEMORY, name + "_put_packet_65536")
			expect_eq(ws.send(big), ERR_OUT_OF_MEMORY, name + "_send_65536")
			expect_eq(ws.send_text(big.get_string_from_utf8()), ERR_OUT_OF_MEMORY,
					name + "_send_text_65536")
			expect_eq(ws.put_var(big), ERR_OUT_OF_MEMORY, name + "_put_var_65536")
		expect_eq(send_one(ws, i, who), OK_, "%s_%s" % [name, SENDS[i][0]])
		if await get_value("ack_%s_%d" % [name, i]) == null:
			return


## Receives SENDS from `want_from` (`dir` `who`) in `rx[key]`, acknowledging each.
func receive_all(key: String, want_from: int, who: String, dir: String) -> void:
	var name := "%s_%s" % [dir, who]
	for i in SENDS.size():
		var arrived := func() -> bool: return rx.get(key, []).size() > i
		if not check(await wait_until(arrived, 5.0, "%s message %d" % [name, i]),
				"%s_%s_arrived" % [name, SENDS[i][0]], "got %s" % [rx.get(key, [])]):
			return
		var r: Array = rx[key][i]
		var n := "%s_%s" % [name, SENDS[i][0]]
		expect_eq(r[0], want_from, n + "_sender")
		expect_eq(r[1], expected(i, who), n + "_payload")
		expect_eq(r[2], SENDS[i][2], n + "_was_string_packet")
		put_value("ack_%s_%d" % [name, i], true)
	await frames(3)
	expect_eq(rx[key].size(), SENDS.size(), name + "_nothing_else")


## A handle whose connection is closing or closed: sending fails with FAILED, reading too.
func check_closed_handle(ws: Object, who: String) -> void:
	if ws == null:
		return
	var b := payload("late", who)
	expect_eq(ws.put_packet(b), FAILED_, who + "_put_packet_closed")
	expect_eq(ws.send(b), FAILED_, who + "_send_closed")
	expect_eq(ws.send_text("late"), FAILED_, who + "_send_text_closed")
	expect_eq(ws.put_var(VAR), FAILED_, who + "_put_var_closed")
	expect_eq(ws.get_available_packet_count(), 0, who + "_available_packet_count_closed")
	expect_eq(ws.get_packet(), PackedByteArray(), who + "_get_packet_closed")
	expect_eq(ws.get_packet_error(), FAILED_, who + "_get_packet_error_closed")


## Checks what a peer_disconnected handler read from get_peer() (record `r` of _record): a
## handle (the check `live_name`), closed with `code` and `reason`, state CLOSED.
func expect_live_closed(r: Dictionary, who: String, live_name: String, code: int,
		reason: String) -> void:
	if check(not r["live_null"], live_name, "get_peer() null in the handler"):
		expect_eq(r.get("live_code"), code, who + "_close_code_in_handler")
		expect_eq(r.get("live_reason"), reason, who + "_close_reason_in_handler")
		expect_eq(r.get("live_state"), 3, who + "_state_in_handler")


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
	# Reading stays with the multiplayer peer: the handle never has a packet.
	expect_eq(ws.get_packet_error(), OK_, who + "_get_packet_error_before_any")
	expect_eq(ws.get_available_packet_count(), 0, who + "_available_packet_count")
	expect_eq(ws.get_packet(), PackedByteArray(), who + "_get_packet_empty")
	expect_eq(ws.get_packet_error(), ERR_UNAVAILABLE, who + "_get_packet_error_unavailable")
	expect_eq(ws.get_var(), null, who + "_get_var_null")
	ws.set_no_delay(true)
	var cls := "WebSocketPeer" if is_builtin() else "RustWebSocketPeer"
	expect_eq(ClassDB.class_get_integer_constant(cls, "WRITE_MODE_TEXT"), 0, who + "_write_mode_text")
	expect_eq(ClassDB.class_get_integer_constant(cls, "WRITE_MODE_BINARY"), 1,
			who + "_write_mode_binary")
	info("%s: host %s port %d url %s buffered %s" % [who, ws.get_connected_host(),
			ws.get_connected_port(), ws.get_requested_url(), amount])


func run_server() -> void:
	var p: Object = make_peer()
	watch(p, "peer")
	var mp := root.multiplayer as SceneMultiplayer
	p.peer_disconnected.connect(_record.bind(p, "srv"))
	mp.peer_packet.connect(_on_peer_packet.bind(p, ""))
	if p.has_signal("data_received"):
		p.data_received.connect(_on_data_received.bind("srv"))
	serve_root(p)
	var ids := await client_ids(["A", "B"])
	if ids.is_empty():
		return
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

	# send: to A and B through get_peer(id), then from A and B through their get_peer(1).
	check(var_to_bytes(VAR)[0] == RAW_CMD, "var_starts_with_raw_command", "%s" % var_to_bytes(VAR))
	for n in ["A", "B"]:
		await send_all(p.get_peer(ids[n]), n, "s2c")
	for n in ["A", "B"]:
		await receive_all("srv:%d" % ids[n], ids[n], n, "c2s")
	await barrier("sent")

	# step1: the server closes A with 4001 "bye".
	var ws_a: Object = p.get_peer(ids["A"])
	if ws_a != null:
		ws_a.close(4001, "bye")
		expect_in(ws_a.get_ready_state(), [2, 3], "srv_A_state_after_close_call")
		info("server: A state right after close(): %d" % ws_a.get_ready_state())
		check_closed_handle(ws_a, "srv_A_after_close_call")
	ws_a = null
	if check(await wait_until(func() -> bool: return got("peer", "peer_disconnected").has(ids["A"]),
			5.0, "peer_disconnected(A)"), "srv_A_peer_disconnected", "events %s" % [events]):
		var r := only_record(seen.get("srv", []).filter(func(e: Dictionary) -> bool:
				return e["id"] == ids["A"]), "srv_A", "server")
		if not r.is_empty():
			# The built-in still has the peer in its handler.
			expect_eq(r["live_null"], false, "srv_A_get_peer_in_handler")
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
		var r := only_record(seen.get("srv", []).filter(func(e: Dictionary) -> bool:
				return e["id"] == ids["B"]), "srv_B", "server")
		if not r.is_empty():
			# The built-in: get_peer(B) still works inside the handler, connection closed.
			expect_live_closed(r, "srv_B", "srv_B_get_peer_in_handler", 4002, "client bye")
			expect_eq(r.get("kept_code"), 4002, "srv_B_kept_close_code_in_handler")
			expect_eq(r.get("kept_reason"), "client bye", "srv_B_kept_close_reason_in_handler")
		mark("get_peer_B_after")
		check(p.get_peer(ids["B"]) == null, "srv_B_get_peer_null_after", "non-null")
		mark("end")
		var k: Object = kept["srv:%d" % ids["B"]]
		expect_eq(k.get_close_code(), 4002, "srv_B_kept_close_code_after")
		expect_eq(k.get_close_reason(), "client bye", "srv_B_kept_close_reason_after")
		expect_eq(k.get_ready_state(), 3, "srv_B_kept_state_after")
		check_closed_handle(k, "srv_B_kept")
	await barrier("step2")
	expect_eq(got("peer", "peer_disconnected").size(), 2, "srv_two_peer_disconnected")
	expect_eq(data_received, [], "srv_no_data_received_with_godot_protocol")
	await barrier("done", 15.0)


func run_client() -> void:
	if not await wait_flag("server_ready"):
		return
	var cs := {}
	for n in ["A", "B"]:
		var c: Object = make_peer()
		cs[n] = c
		c.peer_disconnected.connect(_record.bind(c, n))
		if c.has_signal("data_received"):
			c.data_received.connect(_on_data_received.bind(n))
		var mp := connect_named(c, n, url("/handle?x=1") if n == "A" else url())
		mp.peer_packet.connect(_on_peer_packet.bind(c, n))
	if not await publish_ids(cs):
		return
	for n in ["A", "B"]:
		var ws: Object = cs[n].get_peer(1)
		var u := url("/handle?x=1") if n == "A" else url()
		check_open_handle(ws, "cli_" + n, port, u)
		kept["%s:1" % n] = ws
	await barrier("open_checked")

	# send: from the server through get_peer(id), then to it through get_peer(1).
	for n in ["A", "B"]:
		await receive_all(n, 1, n, "s2c")
	for n in ["A", "B"]:
		await send_all(cs[n].get_peer(1), n, "c2s")
	await barrier("sent")

	# step1: the server closes A with 4001 "bye".
	var t_a := Time.get_ticks_msec()
	var ok_a: bool = await wait_signal_count("pA", "peer_disconnected", 1, 5.0)
	info("client: A peer_disconnected after %d ms (from the barrier)"
			% (Time.get_ticks_msec() - t_a))
	if check(ok_a, "A_peer_disconnected",
			"no peer_disconnected(1) within 5 s; events %s" % [events["pA"]]):
		var r := only_record(seen.get("A", []), "A", "client")
		if not r.is_empty():
			expect_eq(r["id"], 1, "A_handler_id")
			# The built-in still has the peer in the handler: get_peer(1) works there.
			expect_live_closed(r, "A", "A_get_peer_1_in_handler", 4001, "bye")
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
		check_closed_handle(k, "A_kept")
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
		# The closing client: the built-in reads its own code and reason back, state CLOSED.
		var r := only_record(seen.get("B", []), "B", "client")
		if not r.is_empty():
			expect_live_closed(r, "B", "B_get_peer_1_in_handler", 4002, "client bye")
		var k: Object = kept["B:1"]
		info("client: kept B handle after: state %d code %d reason \"%s\"" % [k.get_ready_state(),
				k.get_close_code(), k.get_close_reason()])
		expect_eq(k.get_ready_state(), 3, "B_kept_state_closed")
		expect_eq(k.get_close_code(), 4002, "B_kept_close_code")
		expect_eq(k.get_close_reason(), "client bye", "B_kept_close_reason")
		expect_eq(cs["B"].get_connection_status(), DISCONNECTED, "B_status_disconnected")
		check_closed_handle(k, "B_kept")
	await barrier("step2")
	expect_eq(data_received, [], "cli_no_data_received_with_godot_protocol")

	# step3: a Python server (tests/wire_hooks.py peer_handle_hook) sends close 4003 "raw bye", reads
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
			var r := only_record(seen.get("C", []), "C", "client")
			if not r.is_empty():
				expect_live_closed(r, "C", "C_get_peer_1_in_handler", 4003, "raw bye")
			expect_eq(c.get_connection_status(), DISCONNECTED, "C_status_disconnected")
	flag("C_done")
	await barrier("done")
