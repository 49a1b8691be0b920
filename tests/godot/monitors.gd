## monitors: RustWebSocketMultiplayerPeer.add_performance_monitors(), one process (a rust server
## with heartbeat_interval 0.1 and two rust clients):
##   add -> OK and the 7 "RustWebSocket/<name>" custom monitors exist; adding again -> 22;
##   "peers" = the number of connected clients (0, 1, 2, then 1 after one leaves);
##   bytes/packets in/out per second over a measured interval (baseline read first) match what
##   was sent, within 20%; queued_bytes_out 0 when idle; rtt_ms in (0, 100) after 0.5 s;
##   another peer under "Net" registers "Net/<name>" beside them; remove_performance_monitors()
##   removes them (and they can be added again); a freed peer (last reference dropped, two
##   frames later) leaves none behind.
## Role: main.
extends "res://tests/lib/base.gd"

const NAMES := ["peers", "bytes_in_per_s", "bytes_out_per_s", "packets_in_per_s",
		"packets_out_per_s", "queued_bytes_out", "rtt_ms"]


func monitors_present(category: String) -> Array:
	return NAMES.filter(func(n: String) -> bool:
		return Performance.has_custom_monitor(category + "/" + n))


func mon(name: String) -> Variant:
	return Performance.get_custom_monitor("RustWebSocket/" + name)


func near(actual: float, expected: float, name: String) -> bool:
	var ok := expected > 0.0 and absf(actual - expected) <= 0.2 * expected
	return check(ok, name, "got %.1f, expected %.1f +-20%%" % [actual, expected])


func run_main() -> void:
	var s: Object = make_peer()
	watch(s, "S")
	s.heartbeat_interval = 0.1
	expect_eq(s.create_server(port, "127.0.0.1"), OK_, "create_server")
	polled.append(s)

	expect_eq(monitors_present("RustWebSocket"), [], "none_before_add")
	expect_eq(s.add_performance_monitors(), OK_, "add_monitors")
	expect_eq(monitors_present("RustWebSocket"), NAMES, "all_seven_added")
	mark("add_twice")
	expect_eq(s.add_performance_monitors(), ERR_ALREADY_IN_USE, "add_twice_already_in_use")
	mark("after_add_twice")
	expect_eq(monitors_present("RustWebSocket"), NAMES, "still_seven_after_second_add")
	expect_eq(mon("peers"), 0.0, "peers_0")
	expect_eq(mon("rtt_ms"), 0.0, "rtt_ms_0_without_peers")

	# Two clients.
	var clients: Array = []
	for i in 2:
		var c: Object = make_peer()
		expect_eq(c.create_client(url()), OK_, "create_client_%d" % i)
		polled.append(c)
		if not check(await wait_status(c, CONNECTED, 5.0), "client_%d_connected" % i,
				"status %d" % c.get_connection_status()):
			return
		check(await wait_signal_count("S", "peer_connected", i + 1, 5.0),
				"server_peer_connected_%d" % i, "events %s" % [events["S"]])
		clients.append(c)
		expect_eq(mon("peers"), float(i + 1), "peers_%d" % (i + 1))
	var a: Object = clients[0]
	var a_id: int = a.get_unique_id()
	expect_eq(s.get_peer_ids().size(), 2, "server_two_peer_ids")

	# Rates: baseline reads, then A sends 40 x 1000 B and the server sends 25 x 600 B to A.
	await frames(3)
	drain(s)
	drain(a)
	for n in ["bytes_in_per_s", "bytes_out_per_s", "packets_in_per_s", "packets_out_per_s"]:
		mon(n)
	var t0 := Time.get_ticks_usec()
	a.set_target_peer(1)
	for i in 40:
		a.put_packet(pattern(1000, i))
	s.set_target_peer(a_id)
	for i in 25:
		s.put_packet(pattern(600, i))
	var got_s: Array = []
	var got_a: Array = []
	var all_in := func() -> bool:
		got_s.append_array(drain(s))
		got_a.append_array(drain(a))
		return got_s.size() >= 40 and got_a.size() >= 25
	check(await wait_until(all_in, 5.0, "rate traffic"), "rate_traffic_delivered",
			"server got %d/40, client got %d/25" % [got_s.size(), got_a.size()])
	await sleep(0.5 - (Time.get_ticks_usec() - t0) / 1e6)  # ~0.5 s interval in all
	var t1 := Time.get_ticks_usec()
	all_in = Callable()  # it holds the server
	var bin: float = mon("bytes_in_per_s")
	var bout: float = mon("bytes_out_per_s")
	var pin: float = mon("packets_in_per_s")
	var pout: float = mon("packets_out_per_s")
	var dt := (Time.get_ticks_usec() - t0) / 1e6
	var dt_first := (t1 - t0) / 1e6
	info(("interval %.3f s: bytes_in_per_s %.1f, bytes_out_per_s %.1f, packets_in_per_s %.1f, "
			+ "packets_out_per_s %.1f") % [dt, bin, bout, pin, pout])
	near(bin, 40000.0 / dt_first, "bytes_in_per_s")
	near(bout, 15000.0 / dt, "bytes_out_per_s")
	near(pin, 40.0 / dt, "packets_in_per_s")
	near(pout, 25.0 / dt, "packets_out_per_s")
	expect_eq(mon("queued_bytes_out"), 0.0, "queued_bytes_out_idle")

	# RTT from heartbeat pings (interval 0.1 s).
	await sleep(0.5)
	var rtt: float = mon("rtt_ms")
	info("rtt_ms %.3f" % rtt)
	check(rtt > 0.0 and rtt < 100.0, "rtt_ms_measured", "rtt_ms %s" % rtt)
	var per_peer: Array = []
	for id in s.get_peer_ids():
		per_peer.append(s.get_peer_stats(id)["rtt_ms"])
	check(per_peer.all(func(r: float) -> bool: return r > 0.0 and r < 100.0),
			"peer_stats_rtt_measured", "per peer %s" % [per_peer])

	# A custom category on another peer, beside the first set.
	var n: Object = make_peer()
	expect_eq(n.add_performance_monitors("Net"), OK_, "add_net")
	expect_eq(monitors_present("Net"), NAMES, "net_all_seven")
	expect_eq(monitors_present("RustWebSocket"), NAMES, "default_kept_beside_net")
	expect_eq(Performance.get_custom_monitor("Net/peers"), 0.0, "net_peers_0")
	expect_eq(mon("peers"), 2.0, "peers_2_beside_net")
	n.remove_performance_monitors()
	expect_eq(monitors_present("Net"), [], "net_removed")
	expect_eq(monitors_present("RustWebSocket"), NAMES, "default_kept_after_net_removed")

	# One client leaves.
	drop_peer(clients[1])
	clients.remove_at(1)
	check(await wait_signal_count("S", "peer_disconnected", 1, 5.0), "server_peer_disconnected",
			"events %s" % [events["S"]])
	expect_eq(mon("peers"), 1.0, "peers_1_after_leave")

	# remove, add again, remove.
	s.remove_performance_monitors()
	expect_eq(monitors_present("RustWebSocket"), [], "removed")
	expect_eq(s.add_performance_monitors(), OK_, "add_after_remove")
	expect_eq(monitors_present("RustWebSocket"), NAMES, "readded")
	expect_eq(mon("peers"), 1.0, "peers_1_after_readd")
	s.remove_performance_monitors()
	expect_eq(monitors_present("RustWebSocket"), [], "removed_again")

	# Freed with its monitors registered: an unconnected peer, then the connected server.
	var f: Object = ClassDB.instantiate(peer_class)
	expect_eq(f.add_performance_monitors("Free"), OK_, "add_free")
	expect_eq(monitors_present("Free"), NAMES, "free_all_seven")
	var wf: WeakRef = weakref(f)
	f = null
	await frames(2)
	check(wf.get_ref() == null, "free_peer_freed", "still referenced")
	expect_eq(monitors_present("Free"), [], "free_removed_on_free")

	expect_eq(s.add_performance_monitors("Srv"), OK_, "add_srv")
	expect_eq(monitors_present("Srv"), NAMES, "srv_all_seven")
	expect_eq(Performance.get_custom_monitor("Srv/peers"), 1.0, "srv_peers_1")
	var ws: WeakRef = weakref(s)
	drop_peer(s)
	s = null
	await frames(2)
	check(ws.get_ref() == null, "server_peer_freed", "still referenced")
	expect_eq(monitors_present("Srv"), [], "srv_removed_on_free")
	check(await wait_status(a, DISCONNECTED, 5.0), "client_sees_server_gone",
			"status %d" % a.get_connection_status())
