## haproxy_drain: three rust servers (roles a, b, c on port+0, +1, +2) behind one real HAProxy
## frontend (tests/haproxy_drain_hook.py: roundrobin, `send-proxy-v2` from 127.0.0.2,
## `option httpchk GET /healthz` with `check-send-proxy`), 200 raw Python clients through it,
## and server a draining with shutdown() while the others keep their players.
##   a, b, c  proxy_protocol on, trusting only 127.0.0.2, health_path "/healthz" answered to
##            127.0.0.2 only (health_allow), shutdown_delay DELAY. For each new peer: sends it "<role> <address>:<port>" from
##            get_peer_address / get_peer_port (the hook compares that with the client's own
##            socket), counts a peer whose address is not 127.0.0.1, whose port is 0 or whose
##            get_connected_host differs (must be none); echoes every packet.
##   a        on the hook's flag `drain`: shutdown(TIMEOUT, 1001, "server restarting") -> OK;
##            during the delay no peer has left yet and is_listening() is still true; then
##            every peer leaves by its close handshake (is_listening() false from the first
##            departure): shutdown_completed(0), DISCONNECTED, is_listening() false
##   b, c     on the flag `count`, publish their peer count (the hook checks b + c == 200)
##   a        trigger `sigterm` (the row haproxy_drain_sigterm): a has shutdown_on_sigterm on
##            and the hook sends SIGTERM to its Godot process; its termination_requested
##            handler calls the same shutdown() (so the automatic one is skipped), then a
##            reports and quits without waiting for the hook (which times it)
##   py       everything else: the split, the addresses, HAProxy's view of a (DOWN on a 503
##            before its listener closes), the 1001s and the reconnections
## Roles: a, b, c (rust servers), and "py".
extends "res://tests/lib/base.gd"

const SERVERS := ["a", "b", "c"]
## Seconds between shutdown() and the listener closing: HAProxy checks every 200 ms.
const DELAY := 2.0
const TIMEOUT := 10.0

var _seen := 0
var _bad: Array = []
var _draining := false
var _t_drain := 0
var _left_in_delay := -1
var _completed: Array = []
var _listening_checked_draining := false


func run() -> void:
	if role in SERVERS:
		await run_game_server()
	else:
		await super()


func _on_connected(id: int, p: Object) -> void:
	var addr: String = p.get_peer_address(id)
	var peer_port: int = p.get_peer_port(id)
	_seen += 1
	if addr != "127.0.0.1" or peer_port <= 0 or p.get_peer(id).get_connected_host() != addr:
		_bad.append("%s:%d (host %s)" % [addr, peer_port, p.get_peer(id).get_connected_host()])
	p.set_target_peer(id)
	p.put_packet(("%s %s:%d" % [role, addr, peer_port]).to_utf8_buffer())


func run_game_server() -> void:
	if not check(is_rust(), "server_class", "haproxy_drain needs the rust class as the server"):
		return
	var p: Object = make_peer()
	watch(p, "srv")
	p.shutdown_completed.connect(func(forced: int) -> void: _completed.append(forced))
	p.health_path = "/healthz"
	# HAProxy's checks come from its own address (their PROXY header names no client).
	p.health_allow = PackedStringArray(["127.0.0.2"])
	p.proxy_protocol = true
	p.trusted_proxies = PackedStringArray(["127.0.0.2"])
	p.shutdown_delay = DELAY
	expect_eq(p.shutdown_delay, DELAY, "shutdown_delay_set")
	if _sigterm() and role == "a":
		p.shutdown_on_sigterm = true
		p.termination_requested.connect(func(sig: int) -> void:
			expect_eq(sig, 15, "termination_requested_sigterm")
			_start_drain(p))
	p.peer_connected.connect(_on_connected.bind(p))
	# The first peer gone during the drain: the listener closed before the close frames.
	p.peer_disconnected.connect(func(_id: int) -> void:
		if _draining and not _listening_checked_draining:
			_listening_checked_draining = true
			expect_eq(p.is_listening(), false, "not_listening_while_draining"))
	expect_eq(p.create_server(port + SERVERS.find(role)), OK_, "create_server")
	polled.append(p)
	put_value("pid_" + role, OS.get_process_id())
	flag("ready_" + role)
	check(await wait_until(_step.bind(p), 80.0, "the hook"), "hook_done",
			"shutdown_completed never came" if _sigterm() else "py_done never came")
	check(_seen > 0, "peers_seen", "%d" % _seen)
	check(_bad.is_empty(), "every_peer_address_is_the_client",
			"%d of %d wrong: %s" % [_bad.size(), _seen, _bad.slice(0, 5)])
	info("%s saw %d connections" % [role, _seen])
	if role == "a":
		expect_eq(_left_in_delay, 0, "no_peer_left_during_the_delay")
		if check(_completed.size() == 1, "shutdown_completed", "%s" % [_completed]):
			expect_eq(_completed[0], 0, "no_peer_cut_at_the_timeout")
		expect_eq(count("srv", "peer_disconnected"), _seen, "every_peer_left")
		check(_listening_checked_draining, "is_listening_checked_while_draining")
		expect_eq(p.get_connection_status(), DISCONNECTED, "disconnected_after")
		expect_eq(p.is_listening(), false, "not_listening_after")
	if _sigterm() and role == "a":
		# As deploy/dedicated_server.gd: quit once drained (the hook times the exit).
		flag("bar_done.a")
		return
	await barrier("done", 20.0)


## Trigger `sigterm` (the row's argument): the hook sends SIGTERM to a's Godot process.
func _sigterm() -> bool:
	return args.get("trigger", "flag") == "sigterm"


## a's drain: shutdown() with the delay, on the hook's flag or in termination_requested.
func _start_drain(p: Object) -> void:
	_draining = true
	_t_drain = Time.get_ticks_msec()
	expect_eq(p.is_listening(), true, "listening_before")
	expect_eq(p.shutdown(TIMEOUT, 1001, "server restarting"), OK_, "shutdown")
	expect_eq(p.is_listening(), true, "listening_at_the_start_of_the_delay")
	flag("drain_started")


## One frame of a server: echo, and what the hook's flags ask. True once the hook is done.
func _step(p: Object) -> bool:
	if p.get_connection_status() != DISCONNECTED:
		for r in drain(p):
			p.set_target_peer(r[0])
			p.put_packet(r[1])
	if role == "a" and not _draining and not _sigterm() and has_flag("drain"):
		_start_drain(p)
	# Just before the delay ends: nobody has been told to leave yet, the listener still accepts.
	if _draining and _left_in_delay < 0 and Time.get_ticks_msec() - _t_drain > DELAY * 800:
		_left_in_delay = count("srv", "peer_disconnected")
		expect_eq(p.is_listening(), true, "listening_late_in_the_delay")
	if not _completed.is_empty() and not has_flag("drained"):
		flag("drained")
	if role != "a" and has_flag("count") and not has_flag("count_" + role):
		put_value("peers_" + role, p.get_peer_ids().size())
		flag("count_" + role)
	if _sigterm() and role == "a":
		return not _completed.is_empty()
	return has_flag("py_done")
