## send_bytes: rust class alone, one process (server + client). Unlike put_packet (which the engine
## turns into a no-op for an empty array), send_bytes sends an empty message, and a text frame
## from raw bytes (NUL included); invalid UTF-8 with text = true is refused with 30. Role: main.
extends "res://tests/lib/base.gd"

const ERR_INVALID_DATA := 30


func run_main() -> void:
	var server: Object = make_peer()
	var client: Object = make_peer()
	expect_eq(client.send_bytes(1, PackedByteArray([1])), ERR_UNCONFIGURED, "unconnected_3")
	expect_eq(server.create_server(port, "127.0.0.1"), OK_, "create_server")
	expect_eq(client.create_client("ws://127.0.0.1:%d" % port), OK_, "create_client")
	polled.append(server)
	polled.append(client)
	var both_up := func() -> bool: return client.get_connection_status() == CONNECTED and server.get_peer_ids().size() == 1
	if not check(await wait_until(both_up, 5.0, "connected"), "connected"):
		return
	var cid: int = client.get_unique_id()
	# Server -> client: empty binary, then text with a NUL, then a marker.
	expect_eq(server.send_bytes(cid, PackedByteArray()), OK_, "send_empty")
	expect_eq(server.send_bytes(cid, PackedByteArray([0x61, 0x00, 0x62]), true), OK_, "send_text_nul")
	expect_eq(server.send_bytes(cid, PackedByteArray([0xff, 0xfe]), true), ERR_INVALID_DATA,
			"invalid_utf8_refused")
	expect_eq(server.send_bytes(cid, PackedByteArray([7, 7])), OK_, "send_marker")
	var got := await take(client, 3)
	expect_eq(got, [[0, false, []], [3, true, [0x61, 0x00, 0x62]], [2, false, [7, 7]]], "client_got")
	# Client -> server (the id argument is ignored on a client): an empty message arrives.
	expect_eq(client.send_bytes(1, PackedByteArray()), OK_, "client_send_empty")
	expect_eq(client.send_bytes(1, PackedByteArray([9])), OK_, "client_send_marker")
	var back := await take(server, 2)
	expect_eq(back, [[0, false, []], [1, false, [9]]], "server_got")


## The next n packets of `p`: [size, was_string_packet, bytes] (waits up to 5 s).
func take(p: Object, n: int) -> Array:
	var out: Array = []
	var deadline := Time.get_ticks_msec() + 5000
	while out.size() < n and Time.get_ticks_msec() < deadline:
		while p.get_available_packet_count() > 0:
			var pkt: PackedByteArray = p.get_packet()
			out.append([pkt.size(), p.was_string_packet(), Array(pkt)])
		if out.size() < n:
			await frames(1)
	return out
