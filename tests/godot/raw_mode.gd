## raw_mode: RustWebSocketMultiplayerPeer with godot_protocol = false (plain WebSocket) against
## a Python raw client (tests/wire_hooks.py raw_mode_hook, barrier party "py") and a Godot rust client
## that also has godot_protocol = false, both in one server process.
##   raw      no 4-byte id greeting: the first frame the Python client reads is the packet the
##            server sends it after client_connected(id, ""); a text frame "hello" arrives as
##            get_packet() "hello" with was_string_packet() true (also on get_peer(id)), a
##            binary frame with false; send_text(id, "hi") -> opcode 1 "hi", put_packet ->
##            opcode 2; get_peer_ids() [id]
##   godot    the rust client (godot_protocol false) reaches CONNECTED with a unique id >= 2 of
##            its own; packets both ways (binary and send_text, was_string_packet on each side);
##            send_text(0, "all") reaches both clients as text; get_peer_ids() is both ids,
##            sorted
##            data_received(id) once per message on both (server: the raw client's 2, the Godot
##            client's 2 + a burst of 5 + 2 through its get_peer(1); client: data_received(1)
##            per message from the server), each emitted when the message is already readable
##   handle   get_peer(raw id) sends to the raw client: send_text -> opcode 1, put_packet ->
##            opcode 2, send(.., WRITE_MODE_TEXT) -> 1, send(..) -> 2, send([]) -> an empty
##            binary message, put_packet([]) -> OK and nothing (PacketPeer), put_var(7) -> 2 with
##            var_to_bytes(7); send(invalid UTF-8, TEXT) -> 30 ERR_INVALID_DATA; 65536 bytes
##            through put_packet / send / send_text -> 6 each and nothing sent; 65535 bytes (once
##            the queue is empty) -> OK; the raw client reads exactly these frames in order
##            (raw_mode_hook). The Godot client's
##            get_peer(1).send_text / send(.., BINARY) reach the server as text / binary.
##   close    the Python client closes with 4100 "raw done" -> client_close_request(id, 4100,
##            "raw done"), peer_disconnected(id), client_disconnected(id, true); its kept handle
##            then: state 3, put_packet / send_text -> 1 FAILED, get_packet_error() 1
##   stop     stop() (Godot 3's name, an alias of close()): is_listening() false,
##            DISCONNECTED, no signal; the kept handle of the Godot client: state 3, send_text
##            -> 1 FAILED; that client sees the server gone; a new client fails to connect
## Roles: server (one class alone, the rust class).
extends "res://tests/lib/base.gd"

const FIRST := "first-from-server"
const BIN := [0, 1, 2, 250, 255]
const BIN2 := [9, 8, 7, 6, 5, 4]

## data_received: [who, id, packets readable at that moment]
var received: Array = []

const FAILED_ := 1
const ERR_INVALID_DATA := 30


func _on_dr(id: int, who: String, p: Object) -> void:
	received.append([who, id, p.get_available_packet_count()])


## data_received calls recorded for `who` from `id`.
func dr_count(who: String, id: int) -> int:
	return received.filter(func(e: Array) -> bool: return e[0] == who and e[1] == id).size()


func ids_of(sig: String) -> Array:
	return siglog.filter(func(e: Array) -> bool: return e[0] == sig).map(
			func(e: Array) -> int: return e[1])


## Takes the next packet of `p` (waiting up to 5 s): [source, bytes, was_string_packet], or [].
func next_packet(p: Object, what: String) -> Array:
	if not await wait_until(func() -> bool: return p.get_available_packet_count() > 0, 5.0, what):
		return []
	var src: int = p.get_packet_peer()
	var pkt: PackedByteArray = p.get_packet()
	return [src, pkt, p.was_string_packet()]


## Checks the next packet of `p` (see next_packet()) as `name`: it arrived (`<name>_arrived`),
## from `src` (`<name>_source`; 0: not checked), with `payload` (`<name>_payload`), as text or
## binary (`<name>_was_string_packet`). True when it arrived.
func expect_next(p: Object, what: String, name: String, src: int, payload: PackedByteArray,
		text: bool) -> bool:
	var r: Array = await next_packet(p, what)
	if not check(not r.is_empty(), name + "_arrived", "nothing within 5 s"):
		return false
	if src != 0:
		expect_eq(r[0], src, name + "_source")
	expect_eq(r[1], payload, name + "_payload")
	expect_eq(r[2], text, name + "_was_string_packet")
	return true


func run_server() -> void:
	var s: Object = make_peer()
	expect_eq(s.godot_protocol, true, "godot_protocol_default_true")
	s.godot_protocol = false
	expect_eq(s.godot_protocol, false, "godot_protocol_set_false")
	log_server_signals(s)
	s.data_received.connect(_on_dr.bind("srv", s))
	expect_eq(s.create_server(port), OK_, "create_server")
	polled.append(s)
	flag("server_ready")

	# raw: the Python client.
	if not check(await wait_until(func() -> bool: return not ids_of("client_connected").is_empty(),
			10.0, "the raw client"), "raw_client_connected", "log %s" % [siglog]):
		return
	var rid: int = ids_of("client_connected")[0]
	check(rid >= 2, "raw_client_id_range", "id %d" % rid)
	expect_eq(log_of(rid), [["peer_connected", rid], ["client_connected", rid, ""]],
			"raw_signals_connected")
	expect_eq(s.get_peer_ids(), PackedInt32Array([rid]), "get_peer_ids_raw")
	s.set_target_peer(rid)
	expect_eq(s.put_packet(FIRST.to_utf8_buffer()), OK_, "put_first_packet")

	if await expect_next(s, "text from the raw client",
			"raw_text", rid, "hello".to_utf8_buffer(), true):
		expect_eq(s.get_peer(rid).was_string_packet(), true, "raw_text_peer_was_string_packet")
	if await expect_next(s, "binary from the raw client",
			"raw_binary", rid, PackedByteArray(BIN), false):
		expect_eq(s.get_peer(rid).was_string_packet(), false, "raw_binary_peer_was_string_packet")
	expect_eq(s.send_text(rid, "hi"), OK_, "send_text_to_raw")
	s.set_target_peer(rid)
	expect_eq(s.put_packet(PackedByteArray(BIN2)), OK_, "put_binary_to_raw")

	# godot: a rust client without the Godot protocol.
	var c: Object = make_peer()
	c.godot_protocol = false
	watch(c, "cli")
	c.data_received.connect(_on_dr.bind("cli", c))
	expect_eq(c.create_client(url()), OK_, "godot_create_client")
	polled.append(c)
	if check(await wait_status(c, CONNECTED, 5.0), "godot_client_connected",
			"status %d" % c.get_connection_status()):
		var uid: int = c.get_unique_id()
		check(uid >= 2, "godot_client_unique_id", "id %d" % uid)
		expect_eq(got("cli", "peer_connected"), [1], "godot_client_peer_connected_1")
		expect_eq(c.get_peer_ids(), PackedInt32Array([1]), "godot_client_get_peer_ids")
		info("raw-mode Godot client picked id %d" % uid)
	var two := func() -> bool: return ids_of("client_connected").size() >= 2
	if check(await wait_until(two, 5.0, "the Godot client on the server"), "server_sees_godot_client",
			"log %s" % [siglog]):
		var gid: int = ids_of("client_connected")[1]
		check(gid >= 2 and gid != rid, "godot_client_server_id", "id %d, raw client %d" % [gid, rid])
		var both := [rid, gid]
		both.sort()
		expect_eq(s.get_peer_ids(), PackedInt32Array(both), "get_peer_ids_both_sorted")
		expect_eq(c.put_packet("from-godot".to_utf8_buffer()), OK_, "godot_put_packet")
		await expect_next(s, "packet from the Godot client",
				"godot_packet", gid, "from-godot".to_utf8_buffer(), false)
		expect_eq(c.send_text(1, "text-from-godot"), OK_, "godot_send_text")
		if await expect_next(s, "text from the Godot client",
				"godot_text", gid, "text-from-godot".to_utf8_buffer(), true):
			expect_eq(s.get_peer(gid).was_string_packet(), true, "godot_text_peer_was_string_packet")
		s.set_target_peer(gid)
		expect_eq(s.put_packet("to-godot".to_utf8_buffer()), OK_, "put_packet_to_godot")
		var c1: Array = await next_packet(c, "packet to the Godot client")
		if check(not c1.is_empty(), "godot_client_got_packet", "nothing within 5 s"):
			expect_eq(c1[0], 1, "godot_client_packet_source")
			expect_eq(c1[1], "to-godot".to_utf8_buffer(), "godot_client_packet_payload")
			expect_eq(c1[2], false, "godot_client_packet_was_string_packet")
		# Broadcast text: the raw client reads it after "hi" and BIN2 (raw_mode_hook).
		expect_eq(s.send_text(0, "all"), OK_, "send_text_broadcast")
		var c2: Array = await next_packet(c, "broadcast text to the Godot client")
		if check(not c2.is_empty(), "godot_client_got_text", "nothing within 5 s"):
			expect_eq(c2[1], "all".to_utf8_buffer(), "godot_client_text_payload")
			expect_eq(c2[2], true, "godot_client_text_was_string_packet")
			expect_eq(c.get_peer(1).was_string_packet(), true,
					"godot_client_text_peer_was_string_packet")
		# The Godot client through its handle, then a burst of 5 read in one go.
		var ch: Object = c.get_peer(1)
		expect_eq(ch.send_text("handle-text"), OK_, "godot_handle_send_text")
		await expect_next(s, "handle text from the Godot client",
				"godot_handle_text", gid, "handle-text".to_utf8_buffer(), true)
		expect_eq(ch.send(PackedByteArray(BIN), 1), OK_, "godot_handle_send_binary")
		await expect_next(s, "handle binary from the Godot client",
				"godot_handle_binary", 0, PackedByteArray(BIN), false)
		for i in 5:
			c.put_packet(PackedByteArray([i]))
		var five := func() -> bool: return s.get_available_packet_count() >= 5
		if check(await wait_until(five, 5.0, "the burst of 5"), "godot_burst_arrived",
				"%d packets" % s.get_available_packet_count()):
			expect_eq(drain(s), [[gid, PackedByteArray([0])],
					[gid, PackedByteArray([1])], [gid, PackedByteArray([2])],
					[gid, PackedByteArray([3])], [gid, PackedByteArray([4])]], "godot_burst_payloads")
		# One data_received per message, each when the message was readable.
		expect_eq(dr_count("srv", rid), 2, "data_received_raw_client_count")
		expect_eq(dr_count("srv", gid), 9, "data_received_godot_client_count")
		expect_eq(dr_count("cli", 1), 2, "data_received_on_client_count")
		expect_eq(received.filter(func(e: Array) -> bool: return e[2] < 1), [],
				"data_received_when_readable")
		expect_eq(received.filter(func(e: Array) -> bool: return e[0] == "cli" and e[1] != 1), [],
				"data_received_on_client_id_1")

	# handle: get_peer(rid) sends to the raw client (raw_mode_hook reads the exact frames).
	var h: Object = s.get_peer(rid)
	expect_eq(h.send_text("h-text"), OK_, "handle_send_text")
	expect_eq(h.put_packet(PackedByteArray(BIN)), OK_, "handle_put_packet")
	expect_eq(h.send("h-send-text".to_utf8_buffer(), 0), OK_, "handle_send_write_mode_text")
	expect_eq(h.send(PackedByteArray(BIN2)), OK_, "handle_send_default_binary")
	expect_eq(h.send(PackedByteArray()), OK_, "handle_send_empty")
	expect_eq(h.put_packet(PackedByteArray()), OK_, "handle_put_packet_empty_is_a_no_op")
	expect_eq(h.put_var(7), OK_, "handle_put_var")
	expect_eq(h.send(PackedByteArray([0xff, 0xfe]), 0), ERR_INVALID_DATA,
			"handle_send_text_invalid_utf8")
	var big := PackedByteArray()
	big.resize(65536)
	big.fill(97)
	expect_eq(h.put_packet(big), ERR_OUT_OF_MEMORY, "handle_put_packet_65536")
	expect_eq(h.send(big, 0), ERR_OUT_OF_MEMORY, "handle_send_65536")
	expect_eq(h.send_text(big.get_string_from_ascii()), ERR_OUT_OF_MEMORY, "handle_send_text_65536")
	# Exactly outbound_buffer_size fits once what was queued before has been written.
	var flushed := func() -> bool: return h.get_current_outbound_buffered_amount() == 0
	check(await wait_until(flushed, 5.0, "the raw client's queue to empty"), "handle_queue_flushed",
			"%d bytes still queued" % h.get_current_outbound_buffered_amount())
	big.resize(65535)
	expect_eq(h.put_packet(big), OK_, "handle_put_packet_65535")
	# Until those 65535 bytes are written the queue is full (ERR_OUT_OF_MEMORY, not shown:
	# how long that lasts depends on the runtime).
	check(await wait_until(flushed, 5.0, "the 65535 bytes to be written"),
			"handle_queue_flushed_again", "%d bytes still queued" % h.get_current_outbound_buffered_amount())
	expect_eq(h.send_text("h-last"), OK_, "handle_send_text_last")
	await barrier("godot_client_done")

	# close: the Python client leaves with 4100 "raw done".
	var gone := func() -> bool:
		return siglog.any(func(e: Array) -> bool: return e[0] == "client_disconnected" and e[1] == rid)
	if check(await wait_until(gone, 5.0, "the raw client's close"), "raw_client_disconnected",
			"log %s" % [siglog]):
		expect_eq(log_of(rid), [["peer_connected", rid], ["client_connected", rid, ""],
				["client_close_request", rid, 4100, "raw done"], ["peer_disconnected", rid],
				["client_disconnected", rid, true]], "raw_signals_close")
		expect_eq(h.get_ready_state(), 3, "handle_state_closed")
		expect_eq(h.put_packet(PackedByteArray(BIN)), FAILED_, "handle_put_packet_closed")
		expect_eq(h.send_text("late"), FAILED_, "handle_send_text_closed")
		expect_eq(h.get_packet(), PackedByteArray(), "handle_get_packet_closed")
		expect_eq(h.get_packet_error(), FAILED_, "handle_get_packet_error_closed")
	expect_eq(s.get_available_packet_count(), 0, "nothing_else_received")

	# stop: Godot 3's name for closing the server.
	var gids: PackedInt32Array = s.get_peer_ids()
	var hg: Object = s.get_peer(gids[0]) if gids.size() == 1 else null
	var logged := siglog.size()
	s.stop()
	expect_eq(s.is_listening(), false, "stop_not_listening")
	expect_eq(s.get_connection_status(), DISCONNECTED, "stop_status_disconnected")
	expect_eq(s.get_unique_id(), 0, "stop_unique_id_0")
	expect_eq(s.get_peer_ids(), PackedInt32Array(), "stop_no_peers")
	if check(hg != null, "stop_godot_client_handle", "peers before stop(): %s" % [gids]):
		expect_eq(hg.get_ready_state(), 3, "stop_handle_state_closed")
		expect_eq(hg.send_text("after stop"), FAILED_, "stop_handle_send_text_failed")
	hg = null
	check(await wait_status(c, DISCONNECTED, 3.0), "stop_godot_client_disconnected",
			"status %d" % c.get_connection_status())
	await frames(3)
	expect_eq(siglog.slice(logged), [], "stop_no_signals")
	var late: Object = make_peer()
	late.godot_protocol = false
	watch(late, "late")
	expect_eq(late.create_client(url()), OK_, "stop_new_client_create")
	polled.append(late)
	check(await wait_status(late, DISCONNECTED, 3.0), "stop_new_client_fails",
			"status %d" % late.get_connection_status())
	expect_eq(got("late", "peer_connected"), [], "stop_new_client_never_connected")
	await barrier("done", 15.0)
