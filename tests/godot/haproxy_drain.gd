## haproxy_drain: three rust servers (roles a, b, c on port+0, +1, +2) behind one real HAProxy
## frontend (tests/haproxy_drain_hook.py: roundrobin, `send-proxy-v2` from 127.0.0.2,
## `option httpchk GET /healthz` with `check-send-proxy`), 200 raw Python clients through it,
## and server a draining with shutdown() while the others keep their players.
##   a, b, c  proxy_protocol on, trusting only 127.0.0.2, health_path "/healthz",
##            shutdown_delay DELAY. For each new peer: sends it "<role> <address>:<port>" from
##            get_peer_address / get_peer_port (the hook compares that with the client's own
##            socket), counts a peer whose address is not 127.0.0.1, whose port is 0 or whose
##            get_connected_host differs (must be none); echoes every packet.
##   a        on the hook's flag `drain`: shutdown(TIMEOUT, 1001, "server restarting") -> OK;
##            during the delay no peer has left yet; then every peer leaves by its close
##            handshake: shutdown_completed(0), DISCONNECTED
##   b, c     on the flag `count`, publish their peer count (the hook checks b + c == 200)
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
	p.proxy_protocol = true
	p.trusted_proxies = PackedStringArray(["127.0.0.2"])
	p.shutdown_delay = DELAY
	expect_eq(p.shutdown_delay, DELAY, "shutdown_delay_set")
	p.peer_connected.connect(_on_connected.bind(p))
	expect_eq(p.create_server(port + SERVERS.find(role)), OK_, "create_server")
	polled.append(p)
	flag("ready_" + role)
	check(await wait_until(_step.bind(p), 80.0, "the hook"), "hook_done", "py_done never came")
	check(_seen > 0, "peers_seen", "%d" % _seen)
	check(_bad.is_empty(), "every_peer_address_is_the_client",
			"%d of %d wrong: %s" % [_bad.size(), _seen, _bad.slice(0, 5)])
	info("%s saw %d connections" % [role, _seen])
	if role == "a":
		expect_eq(_left_in_delay, 0, "no_peer_left_during_the_delay")
		if check(_completed.size() == 1, "shutdown_completed", "%s" % [_completed]):
			expect_eq(_completed[0], 0, "no_peer_cut_at_the_timeout")
		expect_eq(count("srv", "peer_disconnected"), _seen, "every_peer_left")
		expect_eq(p.get_connection_status(), DISCONNECTED, "disconnected_after")
	await barrier("done", 20.0)


## One frame of a server: echo, and what the hook's flags ask. True once the hook is done.
func _step(p: Object) -> bool:
	if p.get_connection_status() != DISCONNECTED:
		for r in drain(p):
			p.set_target_peer(r[0])
			p.put_packet(r[1])
	if role == "a" and not _draining and has_flag("drain"):
		_draining = true
		_t_drain = Time.get_ticks_msec()
		expect_eq(p.shutdown(TIMEOUT, 1001, "server restarting"), OK_, "shutdown")
		flag("drain_started")
	# Just before the delay ends: nobody has been told to leave yet.
	if _draining and _left_in_delay < 0 and Time.get_ticks_msec() - _t_drain > DELAY * 800:
		_left_in_delay = count("srv", "peer_disconnected")
	if not _completed.is_empty() and not has_flag("drained"):
		flag("drained")
	if role != "a" and has_flag("count") and not has_flag("count_" + role):
		put_value("peers_" + role, p.get_peer_ids().size())
		flag("count_" + role)
	return has_flag("py_done")
