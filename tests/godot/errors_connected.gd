## errors_connected: error codes and edge cases that need a connection, each checked for the
## class of the process that makes the call:
##   client: put_packet while CONNECTING -> 3, create_* while CONNECTING/CONNECTED -> 22,
##           get_packet when connected with nothing queued -> [] + get_packet_error() 2,
##           unknown get_peer* -> null/""/0, 65536 B put_packet -> 6, a packet of
##           outbound_buffer_size (65535) bytes is delivered, URLs without scheme / localhost /
##           path+query
##   server: 65536 B put_packet -> built-in 0 (silently dropped), rust 6
##   both:   a zero-length put_packet returns OK and sends nothing (PacketPeer.put_packet()
##           returns OK for an empty array without calling the peer; see wire.gd for empty
##           messages on the wire)
## Roles: server, client.
extends "res://tests/lib/base.gd"

const BIG := 65536


static func text(s: String) -> PackedByteArray:
	return s.to_utf8_buffer()


func run_server() -> void:
	var s: Object = serve_raw()
	var cid: int = await get_value("cid")
	if not check(await wait_until(func() -> bool: return got("peer", "peer_connected").has(cid),
			10.0, "client connected"), "client_connected", "no peer_connected(%d)" % cid):
		return
	s.set_target_peer(cid)
	expect_eq(s.put_packet(PackedByteArray()), OK_, "put_empty")
	mark("server_too_big")
	var big_err: int = s.put_packet(pattern(BIG, 3))
	mark("end")
	if is_builtin():
		expect_eq(big_err, OK_, "put_65536_builtin_returns_ok")
	else:
		expect_eq(big_err, ERR_OUT_OF_MEMORY, "put_65536_returns_out_of_memory")
	expect_eq(s.put_packet(text("after")), OK_, "put_after")

	var client_max: int = await get_value("client_max")
	var received := await receive_until(s, text("after"), "client_packets_arrived")
	var want: Array = []
	want.append(pattern(client_max, 77))
	want.append(text("after"))
	var got_pk: Array = received.map(func(r: Array) -> PackedByteArray: return r[1])
	check(got_pk == want, "received_from_client",
			"got %s, expected %s" % [got_pk.map(func(x: Variant) -> String: return _show(x)), want.map(func(x: Variant) -> String: return _show(x))])
	check(received.all(func(r: Array) -> bool: return r[0] == cid), "packet_peer_is_client",
			"sources %s" % [received.map(func(r: Array) -> int: return r[0])])
	await barrier("done")


func run_client() -> void:
	var c: Object = make_peer()
	watch(c, "peer")
	if not await wait_flag("server_ready"):
		return
	expect_eq(c.create_client(url()), OK_, "create_client")
	expect_eq(c.get_connection_status(), CONNECTING, "status_connecting")
	mark("connecting_put_packet")
	expect_eq(c.put_packet(PackedByteArray([1])), ERR_UNCONFIGURED, "put_packet_while_connecting")
	mark("connecting_create")
	expect_eq(c.create_client(url()), ERR_ALREADY_IN_USE, "create_client_while_connecting")
	expect_eq(c.create_server(port + 5), ERR_ALREADY_IN_USE, "create_server_while_connecting")
	mark("end")
	expect_eq(c.get_connection_status(), CONNECTING, "still_connecting")
	polled.append(c)
	if not check(await wait_status(c, CONNECTED, 10.0), "connected", "not connected"):
		return
	var id: int = c.get_unique_id()

	expect_eq(c.get_available_packet_count(), 0, "nothing_queued")
	mark("empty_get")
	expect_eq(c.get_packet(), PackedByteArray(), "get_packet_nothing_queued")
	expect_eq(c.get_packet_error(), ERR_UNAVAILABLE, "get_packet_error_unavailable")
	mark("client_on_active")
	expect_eq(c.create_client(url()), ERR_ALREADY_IN_USE, "create_client_while_connected")
	expect_eq(c.create_server(port + 5), ERR_ALREADY_IN_USE, "create_server_while_connected")
	mark("unknown_peer")
	expect_eq(c.get_peer(12345), null, "get_peer_unknown")
	expect_eq(str(c.get_peer_address(12345)), "", "get_peer_address_unknown")
	expect_eq(c.get_peer_port(12345), 0, "get_peer_port_unknown")
	mark("client_too_big")
	expect_eq(c.put_packet(pattern(BIG, 4)), ERR_OUT_OF_MEMORY, "put_65536_out_of_memory")
	mark("end")
	# The largest packet the built-in accepts on an idle connection: outbound_buffer_size bytes
	# (65535 by default; get_max_packet_size() is not exposed to scripts).
	var max_size: int = c.get_outbound_buffer_size()
	put_value("cid", id)
	put_value("client_max", max_size)
	expect_eq(c.put_packet(PackedByteArray()), OK_, "put_empty")
	expect_eq(c.put_packet(pattern(max_size, 77)), OK_, "put_outbound_buffer_size_bytes")
	# The max-size packet may still fill the outbound buffer: retry "after" until accepted.
	var after_err := -1
	var tries := func() -> bool:
		after_err = c.put_packet(text("after"))
		return after_err == OK_
	check(await wait_until(tries, 5.0, "put after"), "put_after", "last error %d" % after_err)

	var received := await receive_until(c, text("after"), "server_packets_arrived")
	var want: Array = []
	want.append(text("after"))
	var got_pk: Array = received.map(func(r: Array) -> PackedByteArray: return r[1])
	check(got_pk == want, "received_from_server",
			"got %s, expected %s" % [got_pk.map(func(x: Variant) -> String: return _show(x)), want.map(func(x: Variant) -> String: return _show(x))])
	check(received.all(func(r: Array) -> bool: return r[0] == 1), "packet_peer_is_1",
			"sources %s" % [received.map(func(r: Array) -> int: return r[0])])

	# Other URL forms: no scheme, localhost, a path with a query, a trailing slash.
	var forms := ["127.0.0.1:%d" % port, "localhost:%d" % port, "ws://localhost:%d" % port,
			"ws://127.0.0.1:%d/some/path?x=1&y=two" % port, "ws://127.0.0.1:%d/" % port]
	for i in forms.size():
		var u: String = forms[i]
		var q: Object = make_peer()
		expect_eq(q.create_client(u), OK_, "url_form_%d_create" % i)
		polled.append(q)
		if check(await wait_status(q, CONNECTED, 5.0), "url_form_%d_connects" % i,
				"%s: status %d" % [u, q.get_connection_status()]):
			check(q.get_unique_id() >= 2, "url_form_%d_id" % i, "id %d" % q.get_unique_id())
		drop_peer(q)
	expect_eq(count("peer", "peer_disconnected"), 0, "no_disconnect")
	await barrier("done")
