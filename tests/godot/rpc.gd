## rpc: SceneMultiplayer RPCs end to end. The server has /root/Test; the client process runs
## two clients, each with its own SceneMultiplayer rooted at /root/C1 and /root/C2 with a
## Test node below, so every process sees the node at the relative path "Test".
## Checks server->client (rpc_id and rpc to all), client->server with get_remote_sender_id(),
## client->client through the server relay with the first client's id as sender, and that the
## server relay announces the clients to each other.
## Roles: server, client.
extends "res://tests/lib/base.gd"

const RpcNode := preload("res://tests/lib/rpc_node.gd")


func make_test_node(parent: Node) -> Node:
	var n: Node = RpcNode.new()
	n.name = "Test"
	parent.add_child(n)
	return n


func run_server() -> void:
	var p: Object = make_peer()
	var mp := root.multiplayer as SceneMultiplayer
	watch(mp, "mp")
	var node := make_test_node(root)
	serve_root(p)
	if not check(await wait_signal_count("mp", "peer_connected", 2, 10.0), "two_clients",
			"mp peer_connected %s" % [got("mp", "peer_connected")]):
		return
	var c1: int = await get_value("c1_id")
	var c2: int = await get_value("c2_id")
	var connected := got("mp", "peer_connected")
	connected.sort()
	var reported := [c1, c2]
	reported.sort()
	expect_eq(connected, reported, "client_ids_match")

	expect_eq(node.rpc_id(c1, "to_client", "hello-c1", pattern(1000, 5)), OK_, "rpc_id_to_c1")
	expect_eq(node.rpc("to_client", "broadcast", {"k": [1, 2.5, "x"], "v": Vector2i(3, 4)}), OK_,
			"rpc_to_all")
	if check(await wait_until(func() -> bool: return node.calls_of("to_server").size() >= 2,
			10.0, "to_server x2"), "to_server_calls", "calls %s" % [node.calls]):
		var senders: Array = []
		for c in node.calls_of("to_server"):
			expect_eq(c[1], c[2], "remote_sender_is_caller_%s" % ("c1" if c[2] == c1 else "c2"))
			expect_eq(c[3], pattern(300, c[2] & 0xFFFF), "to_server_payload")
			senders.append(c[1])
		senders.sort()
		expect_eq(senders, reported, "to_server_senders")
	await barrier("done")
	expect_eq(node.calls_of("to_peer").size(), 0, "relay_not_delivered_to_server")
	expect_eq(node.calls.size(), 2, "server_call_count")


func run_client() -> void:
	var ps: Array = []
	var mps: Array = []
	var nodes: Array = []
	if not await wait_flag("server_ready"):
		return
	for i in 2:
		var p: Object = make_peer()
		ps.append(p)
		expect_eq(p.create_client(url()), OK_, "create_client_%d" % (i + 1))
		var mp := attach_multiplayer(p, "/root/C%d" % (i + 1))
		mps.append(mp)
		watch(mp, "mp%d" % (i + 1))
		nodes.append(make_test_node(root.get_node("C%d" % (i + 1))))
	var both := func() -> bool:
		return count("mp1", "connected_to_server") == 1 and count("mp2", "connected_to_server") == 1
	if not check(await wait_until(both, 10.0, "both connected"), "both_connected",
			"events %s" % [events]):
		return
	var id1: int = ps[0].get_unique_id()
	var id2: int = ps[1].get_unique_id()
	put_value("c1_id", id1)
	put_value("c2_id", id2)
	expect_eq(mps[0].get_unique_id(), id1, "mp_unique_id_c1")
	expect_eq(nodes[0].multiplayer.get_unique_id(), id1, "node_multiplayer_is_custom")
	# The server relay announces the other client.
	var announced := func() -> bool:
		return mps[0].get_peers().has(id2) and mps[1].get_peers().has(id1)
	if check(await wait_until(announced, 10.0, "relay peer announcements"), "relay_announces_peers",
			"c1 peers %s, c2 peers %s" % [mps[0].get_peers(), mps[1].get_peers()]):
		var p1 := Array(mps[0].get_peers())
		p1.sort()
		var want := [1, id2]
		want.sort()
		expect_eq(p1, want, "c1_peers")
		expect_eq(got("mp1", "peer_connected").has(id2), true, "c1_peer_connected_c2")

	for i in 2:
		var me: int = [id1, id2][i]
		expect_eq(nodes[i].rpc_id(1, "to_server", me, pattern(300, me & 0xFFFF)), OK_,
				"rpc_to_server_c%d" % (i + 1))
	expect_eq(nodes[0].rpc_id(id2, "to_peer", id1, "relayed-1"), OK_, "rpc_c1_to_c2")
	expect_eq(nodes[1].rpc_id(id1, "to_peer", id2, "relayed-2"), OK_, "rpc_c2_to_c1")

	var n1: Node = nodes[0]
	var n2: Node = nodes[1]
	var all_in := func() -> bool:
		return (n1.calls_of("to_client").size() >= 2 and n1.calls_of("to_peer").size() >= 1
				and n2.calls_of("to_client").size() >= 1 and n2.calls_of("to_peer").size() >= 1)
	check(await wait_until(all_in, 10.0, "rpcs on clients"), "client_calls_arrived",
			"c1 %s | c2 %s" % [n1.calls, n2.calls])
	await frames(5)
	# c1: rpc_id from the server, rpc to all, relayed call from c2.
	var c1_to_client: Array = n1.calls_of("to_client")
	if c1_to_client.size() == 2:
		expect_eq(c1_to_client[0], ["to_client", 1, "hello-c1", pattern(1000, 5)], "c1_rpc_id_from_server")
		expect_eq(c1_to_client[1], ["to_client", 1, "broadcast", {"k": [1, 2.5, "x"], "v": Vector2i(3, 4)}],
				"c1_rpc_broadcast")
	else:
		check(false, "c1_to_client_count", "calls %s" % [c1_to_client])
	expect_eq(n1.calls_of("to_peer"), [["to_peer", id2, id2, "relayed-2"]], "c1_relay_sender_is_c2")
	# c2: only the broadcast (the rpc_id went to c1 alone), and c1's relayed call.
	expect_eq(n2.calls_of("to_client"), [["to_client", 1, "broadcast", {"k": [1, 2.5, "x"], "v": Vector2i(3, 4)}]],
			"c2_only_broadcast")
	expect_eq(n2.calls_of("to_peer"), [["to_peer", id1, id1, "relayed-1"]], "c2_relay_sender_is_c1")
	await barrier("done")
