## stall: heartbeat_interval never drops a live peer because this side's game stopped reading.
## The stalling side blocks its main thread (OS.delay_msec, as a long level load would) after
## the other side has sent it more packets than it may hold (max_queued_packets 16): its
## reader pauses (backpressure) and cannot see the other side's pongs for a while. After the
## stall every packet arrives, in order, nobody was dropped, and the heartbeat still measures
## an RTT. Argument parts= says who stalls:
##   a   the rust server (heartbeat_interval 0.3) stalls 1.5 s; the client sent 200 packets
##   b   the rust client (heartbeat_interval 0.3) stalls 1.5 s; the server sent 200 packets
## The other side has no heartbeat: with one, it would drop the stalled side after two
## intervals without a pong, as Godot's WebSocketPeer heartbeat does (tests/suite.py runs a with
## a rust server, b with a built-in server and a rust client).
## Roles: server, client.
extends "res://tests/lib/base.gd"

const INTERVAL := 0.3
const STALL_MS := 1500
const N := 200

var p: Object
var other := 0


func run() -> void:
	var parts: String = args.get("parts", "")
	p = make_peer()
	watch(p, "peer")
	if (role == "server" and "a" in parts) or (role == "client" and "b" in parts):
		p.heartbeat_interval = INTERVAL
		p.max_queued_packets = 16
	other = await connect_raw(p, "peer")
	if other == 0:
		return
	for part in ["a", "b"]:
		if not part in parts:
			continue
		var stalling := "server" if part == "a" else "client"
		if role == stalling:
			await stall_and_read(part)
		else:
			await send_and_wait(part)
	await barrier("done", 20.0)


func send_and_wait(part: String) -> void:
	# A full outbound queue (max_queued_packets is 16 on a side that also stalls) refuses with
	# ERR_OUT_OF_MEMORY: try again next frame, as a game would.
	var i := 0
	var end := Time.get_ticks_msec() + 10000
	while i < N and Time.get_ticks_msec() < end:
		var pkt := PackedByteArray()
		pkt.resize(4)
		pkt.encode_u32(0, i)
		var err: int = p.put_packet(pkt)
		if err == OK_:
			i += 1
		elif err == ERR_OUT_OF_MEMORY:
			await process_frame
		else:
			break
	expect_eq(i, N, part + "_all_sent")
	flag(part + "_sent")
	await wait_flag(part + "_read", 20.0)
	expect_eq(got("peer", "peer_disconnected"), [], part + "_sender_saw_no_drop")
	expect_eq(p.get_connection_status(), CONNECTED, part + "_sender_still_connected")


func stall_and_read(part: String) -> void:
	if not await wait_flag(part + "_sent", 10.0):
		return
	# Let the packets arrive and the reader stop at 16, then hold the main thread for five
	# heartbeat intervals: no poll(), no get_packet().
	await sleep(0.3)
	OS.delay_msec(STALL_MS)
	var seen := [0, 0]  # packets, out of order
	var drain := func() -> bool:
		while p.get_available_packet_count() > 0:
			var pkt: PackedByteArray = p.get_packet()
			if pkt.size() != 4 or pkt.decode_u32(0) != seen[0]:
				seen[1] += 1
			seen[0] += 1
		return seen[0] >= N
	await wait_until(drain, 10.0, "the held packets")
	expect_eq(seen[0], N, part + "_all_packets_after_the_stall")
	expect_eq(seen[1], 0, part + "_in_order")
	expect_eq(got("peer", "peer_disconnected"), [], part + "_not_dropped")
	expect_eq(p.get_connection_status(), CONNECTED, part + "_still_connected")
	# The heartbeat goes on: pongs are read again, the peer stays.
	await sleep(4 * INTERVAL)
	expect_eq(got("peer", "peer_disconnected"), [], part + "_not_dropped_later")
	var rtt: float = p.get_peer_stats(other).get("rtt_ms", -2.0)
	check(rtt >= 0.0 and rtt < 100.0, part + "_rtt_after", "rtt_ms %s" % rtt)
	flag(part + "_read")
