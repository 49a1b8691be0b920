## connect: server/client status and ids, peer and SceneMultiplayer signals, peer address/port,
## and one SceneMultiplayer raw packet each way (the client reports its id in-band).
## Roles: server, client.
extends "res://tests/lib/base.gd"


## Watches `mp` as "mp" and returns the array that its packets are appended to, as
## [from, bytes].
func record_packets(mp: SceneMultiplayer) -> Array:
	watch(mp, "mp")
	var packets: Array = []
	mp.peer_packet.connect(func(id: int, pkt: PackedByteArray) -> void: packets.append([id, pkt]))
	return packets


func run_server() -> void:
	var p: Object = make_peer()
	watch(p, "peer")
	var mp := root.multiplayer as SceneMultiplayer
	var packets := record_packets(mp)

	expect_eq(p.get_connection_status(), DISCONNECTED, "fresh_status")
	expect_eq(p.create_server(port), OK_, "create_server")
	expect_eq(p.get_connection_status(), CONNECTED, "status_after_create_server")
	expect_eq(p.get_unique_id(), 1, "unique_id")
	mp.multiplayer_peer = p
	expect_eq(mp.get_unique_id(), 1, "mp_unique_id")
	expect_eq(mp.is_server(), true, "mp_is_server")
	flag("server_ready")

	if not check(await wait_signal_count("peer", "peer_connected", 1, 10.0), "peer_connected",
			"no peer_connected within 10s"):
		return
	var cid: int = got("peer", "peer_connected")[0]
	check(cid >= 2 and cid < 2147483648, "client_id_range", "id %d" % cid)
	expect_eq(got("mp", "peer_connected"), [cid], "mp_peer_connected")
	expect_eq(Array(mp.get_peers()), [cid], "mp_get_peers")
	var ws: Object = p.get_peer(cid)
	check(ws != null, "get_peer_non_null", "get_peer(%d) is null" % cid)
	expect_eq(str(p.get_peer_address(cid)), "127.0.0.1", "get_peer_address")
	var pp: int = p.get_peer_port(cid)
	check(pp > 0 and pp < 65536 and pp != port, "get_peer_port", "port %d (server port %d)" % [pp, port])

	# The client reports its id through a SceneMultiplayer raw packet: the packet's source must
	# be that id.
	if check(await wait_until(func() -> bool: return packets.size() >= 1, 10.0, "client report"),
			"client_report_received", "no packet from the client"):
		expect_eq(packets[0][0], cid, "report_source_is_client_id")
		expect_eq(packets[0][1], u32(cid), "report_content_is_client_id")
	expect_eq(mp.send_bytes(u32(cid) + "srv".to_utf8_buffer(), cid), OK_, "send_bytes_to_client")
	await barrier("done")
	expect_eq(count("peer", "peer_connected"), 1, "one_peer_connected_signal")


func run_client() -> void:
	var p: Object = make_peer()
	watch(p, "peer")
	var mp := root.multiplayer as SceneMultiplayer
	var packets := record_packets(mp)
	if not await wait_flag("server_ready"):
		return
	expect_eq(p.create_client(url()), OK_, "create_client")
	expect_eq(p.get_connection_status(), CONNECTING, "status_connecting")
	expect_eq(p.get_unique_id(), 0, "unique_id_while_connecting")
	mp.multiplayer_peer = p
	if not check(await wait_signal_count("mp", "connected_to_server", 1, 10.0),
			"connected_to_server", "no connected_to_server within 10s; events %s" % [events]):
		return
	expect_eq(p.get_connection_status(), CONNECTED, "status_connected")
	var id: int = p.get_unique_id()
	check(id >= 2 and id < 2147483648, "unique_id_range", "id %d" % id)
	expect_eq(mp.get_unique_id(), id, "mp_unique_id")
	expect_eq(mp.is_server(), false, "mp_is_server")
	expect_eq(got("peer", "peer_connected"), [1], "peer_connected_1")
	expect_eq(got("mp", "peer_connected"), [1], "mp_peer_connected_1")
	expect_eq(count("mp", "connection_failed"), 0, "no_connection_failed")
	expect_eq(Array(mp.get_peers()), [1], "mp_get_peers")
	check(p.get_peer(1) != null, "get_peer_1_non_null", "get_peer(1) is null")
	expect_eq(str(p.get_peer_address(1)), "127.0.0.1", "get_peer_address_1")
	expect_eq(p.get_peer_port(1), port, "get_peer_port_1")

	expect_eq(mp.send_bytes(u32(id), 1), OK_, "send_bytes_report")
	if check(await wait_until(func() -> bool: return packets.size() >= 1, 10.0, "server echo"),
			"server_packet_received", "no packet from the server"):
		expect_eq(packets[0][0], 1, "server_packet_source")
		expect_eq(packets[0][1], u32(id) + "srv".to_utf8_buffer(), "server_packet_content")
	await barrier("done")
