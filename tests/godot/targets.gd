## targets: one server, three raw client peers (in one client process). Each client reports its
## id in-band; the server checks get_packet_peer() against it, then sends to 0 (all), to id A
## (only A), to -B (all but B), to an unknown id (ERR_INVALID_PARAMETER), and a final END to all.
## Each client checks exactly what it received, and that get_packet_peer() is 1. A client's own
## target_peer is ignored (its packet still goes to the server).
## Roles: server, client.
extends "res://tests/lib/base.gd"

const N_CLIENTS := 3
const TAG_ID := 0x49       # 'I' [tag, index, id u32]
const TAG_TGT := 0x54      # 'T' [tag, index, id u32], sent with a client target_peer set


static func msg(text: String) -> PackedByteArray:
	return text.to_utf8_buffer()


static func report(tag: int, index: int, id: int) -> PackedByteArray:
	var b := PackedByteArray([tag, index])
	b.append_array(u32(id))
	return b


func run_server() -> void:
	var p: Object = serve_raw()
	if not check(await wait_signal_count("peer", "peer_connected", N_CLIENTS, 10.0),
			"peer_connected_x3", "peer_connected: %s" % [got("peer", "peer_connected")]):
		return
	var connected: Array = got("peer", "peer_connected")
	var received := await receive(p, N_CLIENTS + 1, 10.0, "reports_received")
	if received.size() < N_CLIENTS + 1:
		return
	var by_index: Dictionary = {}
	var tgt_seen := false
	for r in received:
		var src: int = r[0]
		var pkt: PackedByteArray = r[1]
		if pkt.size() != 6 or (pkt[0] != TAG_ID and pkt[0] != TAG_TGT):
			check(false, "report_format", "unexpected packet %s" % _show(pkt))
			continue
		var reported: int = pkt.decode_u32(2)
		if pkt[0] == TAG_ID:
			expect_eq(src, reported, "packet_peer_is_reported_id_%d" % pkt[1])
			by_index[pkt[1]] = reported
		else:
			tgt_seen = true
			expect_eq(src, reported, "client_target_peer_ignored")
	check(tgt_seen, "client_target_peer_packet_arrived", "the client's targeted packet is missing")
	var ids: Array = [by_index.get(0, -1), by_index.get(1, -1), by_index.get(2, -1)]
	var sorted_ids := ids.duplicate()
	sorted_ids.sort()
	connected.sort()
	expect_eq(sorted_ids, connected, "reported_ids_match_peer_connected")

	var a: int = ids[0]
	var b: int = ids[1]
	p.set_target_peer(0)
	expect_eq(p.put_packet(msg("ALL")), OK_, "put_to_all")
	p.set_target_peer(a)
	expect_eq(p.put_packet(msg("ONLY")), OK_, "put_to_id")
	p.set_target_peer(-b)
	expect_eq(p.put_packet(msg("EXCEPT")), OK_, "put_to_all_but_id")
	var unknown := 12345
	while unknown in ids:
		unknown += 1
	p.set_target_peer(unknown)
	mark("unknown_target")
	expect_eq(p.put_packet(msg("NOBODY")), ERR_INVALID_PARAMETER, "put_to_unknown_id")
	mark("end")
	p.set_target_peer(MultiplayerPeer.TARGET_PEER_BROADCAST)
	expect_eq(p.put_packet(msg("END")), OK_, "put_end_to_all")
	await barrier("done")
	expect_eq(drain(p), [], "no_unexpected_packets")


func run_client() -> void:
	var ps: Array = []
	for i in N_CLIENTS:
		var c: Object = make_peer()
		ps.append(c)
	if not await wait_flag("server_ready"):
		return
	for i in N_CLIENTS:
		expect_eq(ps[i].create_client(url()), OK_, "create_client_%d" % i)
		polled.append(ps[i])
	var all_connected := func() -> bool:
		for c in ps:
			if c.get_connection_status() != CONNECTED:
				return false
		return true
	if not check(await wait_until(all_connected, 10.0, "3 clients connected"), "all_connected",
			"statuses %s" % [ps.map(func(c: Object) -> int: return c.get_connection_status())]):
		return
	var ids: Array = ps.map(func(c: Object) -> int: return c.get_unique_id())
	var distinct := {}
	for id in ids:
		distinct[id] = true
	check(distinct.size() == N_CLIENTS and ids.all(func(id: int) -> bool: return id >= 2),
			"ids_distinct", "ids %s" % [ids])
	for i in N_CLIENTS:
		expect_eq(ps[i].put_packet(report(TAG_ID, i, ids[i])), OK_, "put_report_%d" % i)
	# A client's target_peer does not matter: everything goes to the server.
	ps[2].set_target_peer(ids[0])
	expect_eq(ps[2].put_packet(report(TAG_TGT, 2, ids[2])), OK_, "put_with_client_target")

	var got_pk: Array = [[], [], []]
	var all_ended := func() -> bool:
		var done := true
		for i in N_CLIENTS:
			for r in drain(ps[i]):
				got_pk[i].append(r)
			if got_pk[i].is_empty() or got_pk[i][-1][1] != msg("END"):
				done = false
		return done
	check(await wait_until(all_ended, 10.0, "END on every client"), "all_got_end",
			"received %s" % [got_pk])
	var expected: Array = [["ALL", "ONLY", "EXCEPT", "END"], ["ALL", "END"], ["ALL", "EXCEPT", "END"]]
	var names := ["target_id", "excluded", "other"]
	for i in N_CLIENTS:
		var texts: Array = got_pk[i].map(func(r: Array) -> String: return r[1].get_string_from_utf8())
		expect_eq(texts, expected[i], "received_%s" % names[i])
		var srcs: Array = got_pk[i].map(func(r: Array) -> int: return r[0])
		check(srcs.all(func(s: int) -> bool: return s == 1), "packet_peer_is_1_%s" % names[i],
				"sources %s" % [srcs])
	await barrier("done")
