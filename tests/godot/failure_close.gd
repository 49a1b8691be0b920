## failure_close: a rust server with the default inbound_buffer_size; the Python side
## (tests/failure_close_hook.py) is a third-party client, Python's `websockets`, that sends a
## message too big for it ten times and must read the 1009 close each time. Here: each of the
## ten connections is reported (peer_disconnected) with the error naming the limit.
extends "res://tests/lib/base.gd"


func run() -> void:
	var p: Object = make_peer()
	expect_eq(p.create_server(port), OK_, "create_server")
	polled.append(p)
	watch(p, "srv")
	mark("too_big")
	flag("server_ready")
	await barrier("done", 60.0)
	check(await wait_signal_count("srv", "peer_disconnected", 10, 5.0), "ten_reported",
			"peer_disconnected %s" % [got("srv", "peer_disconnected")])
	mark("end")
