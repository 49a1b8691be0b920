## headers: `handshake_headers`, one class on its own against Python (tests/wire_hooks.py headers_hook).
##   client  handshake_headers ["X-Token: abc123", "X-Extra: two words"] connecting to a Python
##           WebSocket server (port+1) that records the request, answers 101 + the 4-byte id
##           (777777) -> connected with id 777777, a packet each way; the hook asserts both
##           header lines arrived
##   server  handshake_headers ["X-Server: yes", "X-Extra: srv"] -> a Python raw client sees
##           them in the 101 response, then gets its id message
## Roles: main (and "py", the hook, as a barrier party).
extends "res://tests/lib/base.gd"


func run_main() -> void:
	# Client side.
	if not await wait_flag("raw_srv_ready"):
		return
	var c: Object = make_peer()
	c.handshake_headers = PackedStringArray(["X-Token: abc123", "X-Extra: two words"])
	expect_eq(c.handshake_headers, PackedStringArray(["X-Token: abc123", "X-Extra: two words"]),
			"client_handshake_headers_set")
	expect_eq(c.create_client("ws://127.0.0.1:%d/hdr?q=1" % (port + 1)), OK_, "create_client")
	polled.append(c)
	if check(await wait_status(c, CONNECTED, 5.0), "client_connected",
			"status %d" % c.get_connection_status()):
		expect_eq(c.get_unique_id(), 777777, "client_unique_id")
		expect_eq(c.put_packet("from godot".to_utf8_buffer()), OK_, "client_put")
		var pkts := await receive(c, 1, 5.0, "client_packet_received")
		if not pkts.is_empty():
			expect_eq(pkts[0], [1, "from python".to_utf8_buffer()], "client_packet")
	await barrier("client_done")

	# Server side.
	var s: Object = make_peer()
	watch(s, "S")
	s.handshake_headers = PackedStringArray(["X-Server: yes", "X-Extra: srv"])
	expect_eq(s.create_server(port), OK_, "create_server")
	polled.append(s)
	flag("server_ready")
	if check(await wait_signal_count("S", "peer_connected", 1, 5.0), "server_peer_connected",
			"events %s" % [events["S"]]):
		var v: Variant = await get_value("raw_id")
		expect_eq(got("S", "peer_connected"), [v], "server_peer_is_the_raw_client")
	await barrier("done")
