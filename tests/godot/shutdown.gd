## shutdown: RustWebSocketMultiplayerPeer.shutdown(timeout, code, reason), the graceful drain,
## with three clients: two of the pairing's class (client process) and a raw Python client
## that reads everything but never answers the close frame (tests/shutdown_hook.py, "py").
##   server   once all three are connected it broadcasts PACKETS packets of 1000 bytes and
##            calls shutdown(1.5, 1001, "going away") at once: OK, is_listening() false, a
##            second call -> ERR_UNCONFIGURED; peer_disconnected for each of the three,
##            shutdown_completed(1) (the Python client was cut) 1.3-3.0 s later, DISCONNECTED;
##            shutdown_delay -1 is refused with an error (stays 0: the listener closes at once)
##   client   each client gets the packets in order (all of them; from the built-in, which
##            drops those that arrive with the close, a prefix), then the close: peer_disconnected(1)
##            with get_peer(1).get_close_code() 1001 and reason "going away"
##   py       the same packets and close frame; the TCP connection is cut at the timeout;
##            a new connection after shutdown() is refused at once (listener closed)
## Roles: server (rust), client (both classes), and "py".
extends "res://tests/lib/base.gd"

const PACKETS := 50
const CLIENTS := 2
const ERR_UNCONFIGURED_ := 3

var completed: Array = []   # [msec, forced_peers]


func run_server() -> void:
	if not check(is_rust(), "server_class", "shutdown() is a method of the rust class"):
		return
	var s: Object = make_peer()
	watch(s, "srv")
	s.shutdown_completed.connect(func(forced: int) -> void:
		completed.append([Time.get_ticks_msec(), forced]))
	mark("bad_shutdown_delay")
	s.shutdown_delay = -1.0
	mark("end")
	expect_eq(s.shutdown_delay, 0.0, "bad_shutdown_delay_ignored")
	expect_eq(s.create_server(port), OK_, "create_server")
	polled.append(s)
	flag("server_ready")
	if not check(await wait_signal_count("srv", "peer_connected", CLIENTS + 1, 10.0),
			"all_connected", "%d connected" % count("srv", "peer_connected")):
		await barrier("done", 10.0)
		return
	if not check(await wait_until(func() -> bool: return has_flag("py_ready"), 10.0, "py"),
			"py_ready"):
		await barrier("done", 10.0)
		return
	s.set_target_peer(0)
	for i in PACKETS:
		s.put_packet(pattern(1000, i))
	var t0 := Time.get_ticks_msec()
	expect_eq(s.shutdown(1.5, 1001, "going away"), OK_, "shutdown")
	flag("shutdown_started")
	expect_eq(s.is_listening(), false, "not_listening_while_draining")
	mark("shutdown_twice")
	expect_eq(s.shutdown(), ERR_UNCONFIGURED_, "shutdown_twice_refused")
	mark("end")
	var done := func() -> bool: return not completed.is_empty()
	if check(await wait_until(done, 5.0, "shutdown_completed"), "shutdown_completed"):
		var took: int = completed[0][0] - t0
		check(took >= 1300 and took <= 3000, "completed_at_timeout", "after %d ms" % took)
		expect_eq(completed[0][1], 1, "one_peer_forced")
		expect_eq(count("srv", "peer_disconnected"), CLIENTS + 1, "every_peer_reported")
		expect_eq(s.get_connection_status(), DISCONNECTED, "disconnected_after")
		expect_eq(completed.size(), 1, "completed_once")
	await barrier("done", 10.0)


func run_client() -> void:
	if not await wait_flag("server_ready", 10.0):
		return
	var clients: Array = []
	var closes := {}   # index -> [code, reason]
	var inbox := {}    # index -> Array of PackedByteArray
	for i in CLIENTS:
		var c: Object = make_peer()
		c.peer_disconnected.connect(func(id: int) -> void:
			closes[i] = [c.get_peer(id).get_close_code(), c.get_peer(id).get_close_reason()])
		expect_eq(c.create_client(url()), OK_, "create_client_%d" % i)
		polled.append(c)
		clients.append(c)
		inbox[i] = []
	for i in CLIENTS:
		check(await wait_status(clients[i], CONNECTED, 10.0), "connected_%d" % i)
	var closed := func() -> bool:
		for i in CLIENTS:
			for r in drain(clients[i]):
				inbox[i].append(r[1])
		return closes.size() == CLIENTS
	check(await wait_until(closed, 10.0, "the server's close"), "closed_by_server",
			"closes %s" % [closes])
	for i in CLIENTS:
		var ok: bool = inbox[i].size() <= PACKETS
		for n in min(inbox[i].size(), PACKETS):
			ok = ok and inbox[i][n] == pattern(1000, n)
		# The built-in client drops what it received in the poll that sees the close (README,
		# "Where it deliberately differs"): from it, an in-order prefix is all one can ask.
		if is_rust():
			ok = ok and inbox[i].size() == PACKETS
		check(ok, "packets_in_order_%d" % i,
				"%d of %d packets" % [inbox[i].size(), PACKETS])
		info("client %d got %d of %d packets" % [i, inbox[i].size(), PACKETS])
		expect_eq(closes.get(i, []), [1001, "going away"], "close_code_and_reason_%d" % i)
	await barrier("done", 10.0)
