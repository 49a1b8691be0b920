## wire: a server of one class against raw WebSocket clients written in Python (tests/wire_hooks.py
## wire_hook), which check the wire protocol itself: the 101 response, the first message (4-byte
## little-endian id, binary), a message over inbound_buffer_size closing that connection with 1009,
## text frames delivered as packets, an empty binary message (delivered as an empty packet by the
## rust class, dropped by the built-in), server packets as binary frames, and the close handshake.
## Roles: server (and "py", the hook, as a barrier party).
extends "res://tests/lib/base.gd"


func run_server() -> void:
	var p: Object = serve_raw()
	var id1: int = await get_value("id1")
	var id2: int = await get_value("id2")
	if id1 == 0 or id2 == 0:
		return
	# The id message may reach the client before the server's peer_connected is emitted (the
	# rust class sends it from its runtime; the built-in in the same poll).
	var both := func() -> bool:
		return got("peer", "peer_connected").has(id1) and got("peer", "peer_connected").has(id2)
	check(await wait_until(both, 5.0, "peer_connected for the raw clients"), "raw_clients_connected",
			"peer_connected %s, ids %d %d" % [got("peer", "peer_connected"), id1, id2])

	# conn2 sent a message bigger than inbound_buffer_size: it is closed, nothing delivered.
	check(await wait_until(func() -> bool: return got("peer", "peer_disconnected").has(id2), 5.0,
			"too-big connection closed"), "too_big_peer_disconnected",
			"events %s" % [events["peer"]])

	var received := await receive_until(p, "after".to_utf8_buffer(), "raw_packets_arrived")
	var want: Array = []
	if is_rust():
		want.append(PackedByteArray())  # deliberate difference: the built-in drops it
	want.append("txt".to_utf8_buffer())
	want.append("after".to_utf8_buffer())
	expect_packets(received, want, id1, "raw_packets", "raw_packet_peer")
	p.set_target_peer(id1)
	expect_eq(p.put_packet("srv".to_utf8_buffer()), OK_, "put_to_raw_client")
	check(await wait_until(func() -> bool: return got("peer", "peer_disconnected").has(id1), 5.0,
			"raw client close"), "raw_client_closed", "events %s" % [events["peer"]])
	var left := got("peer", "peer_disconnected")
	left.sort()
	var want_left := [id1, id2]
	want_left.sort()
	expect_eq(left, want_left, "peer_disconnected_both")
	expect_eq(drain(p), [], "nothing_else_received")
	await barrier("done", 15.0)
