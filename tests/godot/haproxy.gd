## haproxy: a rust server behind a real HAProxy in TCP mode (started by tests/haproxy_hook.py),
## which connects to it from 127.0.0.2 and starts each connection with a PROXY protocol
## header: `send-proxy-v2` on port+5, `send-proxy` (v1) on port+6. The server has
## proxy_protocol on and trusts only 127.0.0.2, so it must report the clients (127.0.0.1, their
## own ports) and never HAProxy's address.
##   server   for each new peer: get_peer_address is 127.0.0.1 (not 127.0.0.2) and
##            get_peer_port is not 0; sends it "<address>:<port>"; echoes every packet
##   client   one client through each frontend (the pairing's class): CONNECTED, reads the
##            report (127.0.0.1), a 20000-byte packet comes back intact
##   py       raw clients through both frontends check the exact port as well; HAProxy's
##            `option httpchk GET /healthz` (health_path, PROXY header on the checks too) sees
##            the server UP, DOWN (503) while it refuses new connections, UP again
## Roles: server (rust), client (both classes), and "py".
extends "res://tests/lib/base.gd"

const FRONTENDS := {"v2": 5, "v1": 6}
## Connections the server must see: 2 Godot clients, 2 raw Python clients.
const EXPECTED_PEERS := 4

var _reports := 0


func _on_connected(id: int, p: Object) -> void:
	var addr: String = p.get_peer_address(id)
	var peer_port: int = p.get_peer_port(id)
	expect_eq(addr, "127.0.0.1", "peer_%d_address_is_the_client" % _reports)
	check(peer_port > 0, "peer_%d_port" % _reports, "port %d" % peer_port)
	expect_eq(p.get_peer(id).get_connected_host(), addr, "peer_%d_connected_host" % _reports)
	p.set_target_peer(id)
	expect_eq(p.put_packet(("%s:%d" % [addr, peer_port]).to_utf8_buffer()), OK_, "put_report")
	_reports += 1


func run_server() -> void:
	if not check(is_rust(), "server_class", "haproxy needs the rust class as the server"):
		return
	var p: Object = make_peer()
	p.health_path = "/healthz"
	p.proxy_protocol = true
	p.trusted_proxies = PackedStringArray(["127.0.0.2"])
	p.peer_connected.connect(_on_connected.bind(p))
	expect_eq(p.create_server(port), OK_, "create_server")
	polled.append(p)
	flag("server_ready")
	var echo := func() -> bool:
		for r in drain(p):
			p.set_target_peer(r[0])
			p.put_packet(r[1])
		# HAProxy's health check follows refuse_new_connections (haproxy_hook asks).
		if has_flag("refuse") and not has_flag("refusing"):
			p.refuse_new_connections = true
			flag("refusing")
		if has_flag("accept") and not has_flag("accepting"):
			p.refuse_new_connections = false
			flag("accepting")
		return has_flag("haproxy_failed") or (_reports >= EXPECTED_PEERS
				and has_flag("clients_done") and has_flag("py_done"))
	await wait_until(echo, 20.0, "every client through HAProxy")
	if check(not has_flag("haproxy_failed"), "haproxy_ready", "the python hook says why"):
		expect_eq(_reports, EXPECTED_PEERS, "peers_seen")
	await barrier("done", 10.0)


func run_client() -> void:
	var ready := func() -> bool: return has_flag("haproxy_ready") or has_flag("haproxy_failed")
	await wait_until(ready, 15.0, "HAProxy")
	if not check(has_flag("haproxy_ready"), "haproxy_ready", "the python hook says why"):
		await barrier("done", 10.0)
		return
	var clients := {}
	for key in FRONTENDS:
		var c: Object = make_peer()
		expect_eq(c.create_client("ws://127.0.0.1:%d/" % (port + FRONTENDS[key])), OK_,
				key + ".create_client")
		polled.append(c)
		clients[key] = c
	for key in clients:
		var c: Object = clients[key]
		if not check(await wait_status(c, CONNECTED, 10.0), key + ".connected",
				"status %d" % c.get_connection_status()):
			continue
		var got_pk: Array = []
		var take := func() -> bool:
			got_pk.append_array(drain(c))
			return got_pk.size() >= 1
		if not check(await wait_until(take, 5.0, "report"), key + ".report", "none"):
			continue
		var report: String = got_pk[0][1].get_string_from_utf8()
		expect_eq(report.get_slice(":", 0), "127.0.0.1", key + ".server_saw_the_client")
		c.set_target_peer(1)
		var big := pattern(20000, FRONTENDS[key])
		expect_eq(c.put_packet(big), OK_, key + ".put_big")
		got_pk.clear()
		var echoed := func() -> bool:
			got_pk.append_array(drain(c))
			return got_pk.size() >= 1
		check(await wait_until(echoed, 5.0, "echo") and got_pk[0][1] == big, key + ".echo",
				"%d packets" % got_pk.size())
	flag("clients_done")
	await barrier("done", 10.0)
