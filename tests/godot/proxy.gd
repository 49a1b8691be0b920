## proxy: RustWebSocketMultiplayerPeer's trusted_proxies behind a real nginx (started by
## tests/proxy_hook.py on 127.0.0.1). The server process runs four rust servers:
##   trusted   port+0  trusted_proxies ["127.0.0.1"]
##   untrusted port+1  none (the default: X-Forwarded-For is ignored)
##   other     port+2  ["10.0.0.1"] (a different proxy address)
##   cidr      port+3  ["127.0.0.1", "192.0.2.0/24"], and a handshake handler that records what
##                     it sees (the forwarded address and the header nginx sent)
##   default   port+4  ["127.0.0.1"] without trust_forwarded_port (trusted and untrusted have
##                     it on): X-Forwarded-Port is ignored
## and first checks that "10.9.9.9/0" (host bits set) is refused with 31.
## nginx forwards port+5/6/7 to trusted/untrusted/other with `X-Forwarded-For "203.0.113.7"`
## and port+8/9 to trusted/cidr with `$proxy_add_x_forwarded_for` (the client's own header plus
## nginx's $remote_addr, 127.0.0.1). The client process connects, with both classes, once per
## case of CASES (through nginx, or straight to a server with a header of its own); each client
## sends its label and a 20000-byte packet, the server checks get_peer_address(id) and
## get_peer(id).get_connected_host() against the case and answers "ack:<label>:<address>" and a
## 20000-byte packet, which the client checks: packets cross the proxy both ways. Meanwhile
## the hook's raw clients send "port?<label>" and get "port:<label>:<address>:<port>" from
## get_peer_address / get_peer_port (X-Forwarded-Port, read only with trust_forwarded_port,
## checked by the hook); a port that is not one is ignored with a warning (the row's
## rust_stderr).
## Roles: server (rust), client (both classes), and "py" (the hook, which runs nginx).
extends "res://tests/lib/base.gd"

const RUST_CLASS := "RustWebSocketMultiplayerPeer"
const CHAIN := "X-Forwarded-For: 198.51.100.9, 192.0.2.66"
const FORGED := "X-Forwarded-For: 198.51.100.20"
const NON_ASCII := "X-Forwarded-For: 6.6.6.6ÿ, 198.51.100.9"

## Server key -> [port offset, trusted_proxies, trust_forwarded_port]. "default" takes
## port+4 once the typo server has failed to.
const SERVERS := {
	"trusted": [0, ["127.0.0.1"], true],
	"untrusted": [1, [], true],
	"other": [2, ["10.0.0.1"], false],
	"cidr": [3, ["127.0.0.1", "192.0.2.0/24"], false],
	"default": [4, ["127.0.0.1"], false],
}

## [label, port offset the client connects to, server key, client handshake_headers, the
## address the server must report]. Offsets 5-9 are nginx (tests/proxy_hook.py).
const CASES := [
	["nginx_fixed_trusted", 5, "trusted", [], "203.0.113.7"],
	["nginx_fixed_untrusted", 6, "untrusted", [], "127.0.0.1"],
	["nginx_fixed_other_proxy", 7, "other", [], "127.0.0.1"],
	# nginx sends "198.51.100.9, 192.0.2.66, 127.0.0.1": the rightmost entry that is not a
	# trusted proxy. 127.0.0.1 (the client as nginx sees it) is trusted here, so 192.0.2.66.
	["nginx_chain_trusted", 8, "trusted", [CHAIN], "192.0.2.66"],
	# ... and with 192.0.2.0/24 trusted too, 198.51.100.9.
	["nginx_chain_cidr", 9, "cidr", [CHAIN], "198.51.100.9"],
	# Bytes >= 0x80 in the client's own header ("ÿ" is C3 BF) are never reached: the address is
	# decided once, from one parse, for get_peer_address and the handshake handler alike.
	["nginx_non_ascii_cidr", 9, "cidr", [NON_ASCII], "198.51.100.9"],
	["direct_trusted", 0, "trusted", [], "127.0.0.1"],
	# Straight from a trusted address: the header is believed (trust is by the TCP peer).
	["direct_trusted_forged", 0, "trusted", [FORGED], "198.51.100.20"],
	["direct_untrusted_forged", 1, "untrusted", [FORGED], "127.0.0.1"],
]

var handshakes: Array = []
var _servers: Array = []


func run() -> void:
	if role == "server" and not check(is_rust(), "server_class",
			"proxy needs %s as the server" % RUST_CLASS):
		return
	await super()


func teardown() -> void:
	for p in _servers:
		p.set_handshake_handler(Callable())
	_servers.clear()


func _proxy_failed() -> bool:
	return has_flag("proxy_failed")


func _labels() -> Dictionary:
	var out := {}
	var n := 0
	for cls in [BUILTIN_CLASS, RUST_CLASS]:
		for c in CASES:
			# Only the built-in sends header bytes that are not ASCII (tungstenite refuses).
			if c[3] == [NON_ASCII] and cls == RUST_CLASS:
				continue
			out["%s|%s" % [c[0], cls]] = {"case": c, "cls": cls, "n": n}
			n += 1
	return out


func run_server() -> void:
	# A range with host bits set would trust far more than meant ("/0" trusts everyone).
	var typo: Object = make_peer()
	typo.trusted_proxies = PackedStringArray(["10.9.9.9/0"])
	mark("cidr_typo")
	expect_eq(typo.create_server(port + 4), ERR_INVALID_PARAMETER, "cidr_host_bits_refused")
	mark("end")
	expect_eq(typo.get_connection_status(), DISCONNECTED, "cidr_typo_not_listening")
	drop_peer(typo)
	var by_key := {}
	for key in SERVERS:
		var p: Object = make_peer()
		var trusted := PackedStringArray(SERVERS[key][1])
		p.trusted_proxies = trusted
		expect_eq(p.trusted_proxies, trusted, "trusted_proxies_" + key)
		expect_eq(p.trust_forwarded_port, false, "trust_forwarded_port_default_" + key)
		p.trust_forwarded_port = SERVERS[key][2]
		if key == "cidr":
			p.set_handshake_handler(func(h: Object) -> void:
				handshakes.append([h.get_remote_address(), h.get_header("x-forwarded-for")])
				h.accept())
		expect_eq(p.create_server(port + SERVERS[key][0]), OK_, "create_server_" + key)
		polled.append(p)
		_servers.append(p)
		by_key[key] = p
	flag("server_ready")

	var labels := _labels()
	var inbox := {}   # [key, id] -> Array of PackedByteArray
	var done := {}    # label -> true
	var pump := func() -> bool:
		for key in by_key:
			var p: Object = by_key[key]
			for r in drain(p):
				var text: String = r[1].get_string_from_utf8()
				if text.begins_with("port?"):  # a raw client of tests/proxy_hook.py
					p.set_target_peer(r[0])
					p.put_packet(("port:%s:%s:%d" % [text.substr(5), p.get_peer_address(r[0]),
							p.get_peer_port(r[0])]).to_utf8_buffer())
					continue
				var k := [key, r[0]]
				if not inbox.has(k):
					inbox[k] = []
				inbox[k].append(r[1])
				if inbox[k].size() != 2:
					continue
				var label: String = inbox[k][0].get_string_from_utf8()
				if not check(labels.has(label), "known_label", "label %s from %s" % [label, k]):
					continue
				var spec: Dictionary = labels[label]
				var c: Array = spec["case"]
				var id: int = r[0]
				expect_eq(key, c[2], label + ".server")
				var addr: String = p.get_peer_address(id)
				expect_eq(addr, c[4], label + ".get_peer_address")
				expect_eq(p.get_peer(id).get_connected_host(), c[4], label + ".connected_host")
				info("%s: address %s port %d" % [label, addr, p.get_peer_port(id)])
				expect_eq(inbox[k][1], pattern(20000, spec["n"]), label + ".big_packet")
				p.set_target_peer(id)
				expect_eq(p.put_packet(("ack:%s:%s" % [label, addr]).to_utf8_buffer()), OK_,
						label + ".put_ack")
				expect_eq(p.put_packet(pattern(20000, 100 + spec["n"])), OK_, label + ".put_big")
				done[label] = true
		return (done.size() >= labels.size() and has_flag("ports_done")) or _proxy_failed()
	mark("forwarded_port")
	await wait_until(pump, 25.0, "every client's packets and the hook's port cases")
	mark("end")
	if check(not _proxy_failed(), "proxy_ready", "nginx did not start (the python hook says why)"):
		check(done.size() == labels.size(), "all_clients_served",
				"served %s" % [done.keys()])
		# Three handshakes through nginx on port+9: the chain from each client class, and the
		# non-ASCII header from the built-in client.
		var chain := ["198.51.100.9", "198.51.100.9, 192.0.2.66, 127.0.0.1"]
		var hs_want := [chain, chain, ["198.51.100.9", "6.6.6.6ÿ, 198.51.100.9, 127.0.0.1"]]
		hs_want.sort()
		handshakes.sort()
		expect_eq(handshakes, hs_want, "cidr_handshake_handler_saw")
	await barrier("done", 20.0)


func run_client() -> void:
	if not await wait_flag("server_ready", 15.0):
		return
	var ready := func() -> bool: return has_flag("proxy_ready") or _proxy_failed()
	await wait_until(ready, 15.0, "nginx")
	if not check(not _proxy_failed() and has_flag("proxy_ready"), "proxy_ready",
			"nginx did not start (the python hook says why)"):
		await barrier("done", 20.0)
		return
	var labels := _labels()
	var clients := {}  # label -> peer
	for label in labels:
		var spec: Dictionary = labels[label]
		var c: Array = spec["case"]
		var p: Object = make_peer(spec["cls"])
		p.handshake_headers = PackedStringArray(c[3])
		expect_eq(p.create_client("ws://127.0.0.1:%d/" % (port + c[1])), OK_,
				label + ".create_client")
		polled.append(p)
		clients[label] = p
	var all_connected := func() -> bool:
		return clients.values().all(func(p: Object) -> bool:
			return p.get_connection_status() == CONNECTED)
	check(await wait_until(all_connected, 10.0, "every client connected"), "all_connected",
			"statuses %s" % [clients.keys().map(func(l: String) -> String:
				return "%s=%d" % [l, clients[l].get_connection_status()])])
	for label in clients:
		var p: Object = clients[label]
		if p.get_connection_status() != CONNECTED:
			continue
		expect_eq(p.put_packet(label.to_utf8_buffer()), OK_, label + ".put_label")
		expect_eq(p.put_packet(pattern(20000, labels[label]["n"])), OK_, label + ".put_big")

	var inbox := {}
	var pump := func() -> bool:
		for label in clients:
			if not inbox.has(label):
				inbox[label] = []
			for r in drain(clients[label]):
				inbox[label].append(r[1])
		return inbox.values().all(func(a: Array) -> bool: return a.size() >= 2)
	check(await wait_until(pump, 15.0, "every answer"), "all_answered",
			"answers %s" % [inbox.keys().map(func(l: String) -> String:
				return "%s=%d" % [l, inbox[l].size()])])
	for label in clients:
		var got_pk: Array = inbox.get(label, [])
		var spec: Dictionary = labels[label]
		var want := "ack:%s:%s" % [label, spec["case"][4]]
		expect_eq(got_pk[0].get_string_from_utf8() if got_pk.size() > 0 else "", want,
				label + ".ack")
		check(got_pk.size() == 2 and got_pk[1] == pattern(20000, 100 + spec["n"]),
				label + ".big_answer", "%d packets" % got_pk.size())
	await barrier("done", 20.0)
