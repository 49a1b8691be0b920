## proxy_protocol: RustWebSocketMultiplayerPeer's `proxy_protocol` against raw clients in
## tests/proxy_protocol_hook.py (barrier party "py"), which write PROXY protocol v1 and v2
## headers by hand from 127.0.0.1. The server process runs three rust servers, all with
## handshake_timeout 1.0:
##   trusted   port+0  proxy_protocol on,  trusted_proxies ["127.0.0.1"], a handshake handler
##   untrusted port+1  proxy_protocol on,  trusted_proxies ["10.0.0.1"] (127.0.0.1 is not)
##   off       port+2  proxy_protocol off, trusted_proxies ["127.0.0.1"]
## For each new peer the server sends one packet "<requested url>|<get_peer_address>:
## <get_peer_port>|<get_connected_host>:<get_connected_port>|<what the handshake handler saw>",
## which the hook compares with the client the header names; every packet it gets it sends
## back. The refusals (a header from an untrusted address or with proxy_protocol off; a
## trusted connection with no header, a malformed, over-long or truncated one) must each print
## an error naming the cause (suite.py, mark "refusals"), while clients already connected to
## both servers keep working.
## Roles: server (rust only), and "py".
extends "res://tests/lib/base.gd"

## Server key -> [port offset, proxy_protocol, trusted_proxies].
const SERVERS := {
	"trusted": [0, true, ["127.0.0.1"]],
	"untrusted": [1, true, ["10.0.0.1"]],
	"off": [2, false, ["127.0.0.1"]],
}

## Handshake handler: request path -> "address:port" it was given.
var seen := {}
var _servers: Array = []


func teardown() -> void:
	for p in _servers:
		p.set_handshake_handler(Callable())
	_servers.clear()


func _on_handshake(h: Object) -> void:
	seen[h.get_path()] = "%s:%d" % [h.get_remote_address(), h.get_remote_port()]
	h.accept()


func _on_connected(id: int, p: Object) -> void:
	var handle: Object = p.get_peer(id)
	var url: String = handle.get_requested_url()
	var path := url.substr(url.find("/", len("ws://")))
	var report := "%s|%s:%d|%s:%d|%s" % [url, p.get_peer_address(id), p.get_peer_port(id),
			handle.get_connected_host(), handle.get_connected_port(), seen.get(path, "-")]
	p.set_target_peer(id)
	expect_eq(p.put_packet(report.to_utf8_buffer()), OK_, "put_report")


func run_server() -> void:
	if not check(is_rust(), "server_class", "proxy_protocol is a property of the rust class"):
		return
	for key in SERVERS:
		var p: Object = make_peer()
		expect_eq(p.proxy_protocol, false, "proxy_protocol_default_false_" + key)
		p.proxy_protocol = SERVERS[key][1]
		expect_eq(p.proxy_protocol, SERVERS[key][1], "proxy_protocol_set_" + key)
		p.trusted_proxies = PackedStringArray(SERVERS[key][2])
		p.handshake_timeout = 1.0
		if key == "trusted":
			p.set_handshake_handler(_on_handshake)
		p.peer_connected.connect(_on_connected.bind(p))
		expect_eq(p.create_server(port + SERVERS[key][0]), OK_, "create_server_" + key)
		polled.append(p)
		_servers.append(p)
	mark("refusals")
	flag("server_ready")
	var echo := func() -> bool:
		for p in _servers:
			for r in drain(p):
				p.set_target_peer(r[0])
				p.put_packet(r[1])
		return has_flag("py_done")
	check(await wait_until(echo, 25.0, "the hook's cases"), "hook_done", "py_done never came")
	mark("end")
	await barrier("done", 10.0)
