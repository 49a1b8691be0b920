## slow_consumer: peers that read nothing cannot hold the server hostage (rust server alone;
## the Python side is slow_consumer_hook in tests/wire_hooks.py).
##
## port+0: heartbeat_interval 0.5 s. A raw client that never reads but sends a pong every
## 100 ms is dropped within the heartbeat's two intervals: only a pong carrying the outstanding
## ping's payload answers it.
## port+1: slow_peer_timeout 1.0 s, default buffers. A Godot client of the same class (in this
## process) and a raw client that never reads (4 KiB receive buffer). The server broadcasts
## 1000-byte numbered packets: every put_packet returns OK; the slow client is closed and
## reported (peer_disconnected) within a few seconds; the Godot client receives every packet,
## in order.
extends "res://tests/lib/base.gd"

const SIZE := 1000


func run_main() -> void:
	var hb: Object = make_peer()
	hb.heartbeat_interval = 0.5
	expect_eq(hb.create_server(port), OK_, "create_heartbeat_server")
	polled.append(hb)
	watch(hb, "hb")
	var srv: Object = make_peer()
	srv.slow_peer_timeout = 1.0
	expect_eq(srv.create_server(port + 1), OK_, "create_broadcast_server")
	polled.append(srv)
	watch(srv, "srv")
	var cli: Object = make_peer()
	expect_eq(cli.create_client("ws://127.0.0.1:%d/" % (port + 1)), OK_, "create_client")
	polled.append(cli)
	if not check(await wait_signal_count("srv", "peer_connected", 1, 10.0), "client_connected", ""):
		return
	flag("servers_ready")

	# 1. Unsolicited pongs do not keep a silent peer alive.
	if check(await wait_signal_count("hb", "peer_connected", 1, 10.0), "pong_spammer_connected", ""):
		var t0 := Time.get_ticks_msec()
		var dropped: bool = await wait_signal_count("hb", "peer_disconnected", 1, 5.0)
		check(dropped, "pong_spammer_dropped_by_heartbeat", "still connected after 5 s")
		info("pong spammer dropped after %d ms" % (Time.get_ticks_msec() - t0))

	# 2. A peer that reads nothing is closed; broadcasts to the others go on.
	flag("pongs_done")
	if not check(await wait_signal_count("srv", "peer_connected", 2, 10.0), "slow_connected", ""):
		return
	var slow_id: int = got("srv", "peer_connected")[1]
	var sent := 0
	var errors := 0
	var received := 0
	var out_of_order := 0
	var t1 := Time.get_ticks_msec()
	var slow_gone_at := -1
	mark("slow")
	while Time.get_ticks_msec() - t1 < 12000:
		if slow_gone_at < 0 and count("srv", "peer_disconnected") > 0:
			slow_gone_at = Time.get_ticks_msec()
		if slow_gone_at >= 0 and Time.get_ticks_msec() - slow_gone_at > 500:
			break
		for i in 4:
			var pk := PackedByteArray()
			pk.resize(SIZE)
			pk.encode_u32(0, sent)
			srv.set_target_peer(0)
			if srv.put_packet(pk) == OK_:
				sent += 1
			else:
				errors += 1
		while cli.get_available_packet_count() > 0:
			var got_pk: PackedByteArray = cli.get_packet()
			if got_pk.decode_u32(0) != received:
				out_of_order += 1
			received += 1
		await process_frame
	mark("end")
	expect_eq(errors, 0, "broadcasts_never_refused")
	if check(slow_gone_at >= 0, "slow_peer_closed", "not closed within 12 s (%d sent)" % sent):
		expect_eq(got("srv", "peer_disconnected"), [slow_id], "slow_peer_reported")
		info("slow peer reported after %d ms, %d packets broadcast" % [slow_gone_at - t1, sent])
	# Everything broadcast reaches the client that reads.
	var all_in := func() -> bool:
		while cli.get_available_packet_count() > 0:
			var got_pk: PackedByteArray = cli.get_packet()
			if got_pk.decode_u32(0) != received:
				out_of_order += 1
			received += 1
		return received >= sent
	check(await wait_until(all_in, 10.0, "every broadcast"), "reader_got_every_packet",
			"%d of %d" % [received, sent])
	expect_eq(out_of_order, 0, "reader_in_order")
	flag("done_slow")
	await barrier("done", 20.0)
