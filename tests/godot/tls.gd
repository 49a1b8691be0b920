## tls: wss:// with certificates made by Godot's Crypto (RSA 2048, self-signed "CN=localhost":
## CA:TRUE, no subjectAltName), passed from the server to the client as a PEM file in `dir`.
##
## Roles server/client (every pairing): SceneMultiplayer RPCs both ways over wss, the server's
## get_requested_url() says wss://; then the client's verification cases, each with its own
## peer and SceneMultiplayer: name mismatch, untrusted certificate, plain ws:// client on the wss
## server -> connection_failed well before handshake_timeout; common_name_override,
## client_unsafe() and client_unsafe(cert) -> connected; client_unsafe(other cert) -> failed.
## The first connection keeps working throughout. (tls_local.gd, one class alone, extends this.)
extends "res://tests/lib/base.gd"

const RpcNode := preload("res://tests/lib/rpc_node.gd")
const CERT_FILE := "server_cert.pem"
const KEY_FILE := "server_key.pem"


func make_test_node(parent: Node) -> Node:
	var n: Node = RpcNode.new()
	n.name = "Test"
	parent.add_child(n)
	return n


func make_cert(cn: String = "localhost") -> Array:
	var crypto := Crypto.new()
	var key := crypto.generate_rsa(2048)
	var cert := crypto.generate_self_signed_certificate(key, "CN=%s,O=rwsmp tests,C=US" % cn)
	return [key, cert]


func write_text(name: String, text: String) -> void:
	var f := FileAccess.open(sync_dir.path_join(name), FileAccess.WRITE)
	f.store_string(text)
	f.close()


func wss_url(host: String = "localhost", p: int = -1) -> String:
	return "wss://%s:%d/" % [host, port if p < 0 else p]


# ------------------------------------------------------------------------------------------
# server / client

func run_server() -> void:
	var t0 := Time.get_ticks_msec()
	var kc := make_cert()
	info("generated an RSA 2048 key and certificate in %d ms" % (Time.get_ticks_msec() - t0))
	var key: CryptoKey = kc[0]
	var cert: X509Certificate = kc[1]
	# PEM files, as a game would ship or load them.
	write_text(KEY_FILE, key.save_to_string())
	write_text(CERT_FILE, cert.save_to_string())
	var loaded_key := CryptoKey.new()
	expect_eq(loaded_key.load(sync_dir.path_join(KEY_FILE)), OK_, "load_key_pem")
	var loaded_cert := X509Certificate.new()
	expect_eq(loaded_cert.load(sync_dir.path_join(CERT_FILE)), OK_, "load_cert_pem")

	var p: Object = make_peer()
	watch(p, "peer")
	var mp := root.multiplayer as SceneMultiplayer
	watch(mp, "mp")
	var node := make_test_node(root)
	expect_eq(p.create_server(port, "*", TLSOptions.server(loaded_key, loaded_cert)), OK_,
			"create_server_tls")
	expect_eq(p.get_connection_status(), CONNECTED, "status_after_create_server")
	mp.multiplayer_peer = p
	flag("server_ready")

	if not check(await wait_signal_count("mp", "peer_connected", 1, 10.0), "client_connected",
			"no peer_connected"):
		return
	var cid: int = got("mp", "peer_connected")[0]
	expect_eq(await get_value("cid"), cid, "client_id_matches")
	var ws: Object = p.get_peer(cid)
	if check(ws != null, "get_peer", "null"):
		expect_eq(ws.get_requested_url(), "wss://localhost:%d/" % port, "server_requested_url_wss")
	expect_eq(node.rpc_id(cid, "to_client", "hello-tls", pattern(3000, 7)), OK_, "rpc_to_client")
	if check(await wait_until(func() -> bool: return node.calls_of("to_server").size() >= 1,
			10.0, "to_server"), "to_server_arrived", "calls %s" % [node.calls]):
		expect_eq(node.calls_of("to_server")[0], ["to_server", cid, cid, pattern(2000, cid & 0xFFFF)],
				"to_server_call")
	await barrier("rpc_done")

	# The client's verification cases run now; three of them connect (and leave again).
	await barrier("cases_done", 30.0)
	check(await wait_signal_count("mp", "peer_connected", 4, 5.0), "only_verified_clients_connected",
			"mp peer_connected %s" % [got("mp", "peer_connected")])
	# The first client is unaffected.
	expect_eq(node.rpc_id(cid, "to_client", "still-here", pattern(10, 1)), OK_, "rpc_after_cases")
	check(await wait_until(func() -> bool: return node.calls_of("to_server").size() >= 2,
			10.0, "second to_server"), "client_still_connected", "calls %s" % [node.calls])
	await barrier("done")


func run_client() -> void:
	if not await wait_flag("server_ready", 15.0):
		return
	var cert := X509Certificate.new()
	expect_eq(cert.load(sync_dir.path_join(CERT_FILE)), OK_, "load_cert_pem")

	var p: Object = make_peer()
	var mp := root.multiplayer as SceneMultiplayer
	watch(mp, "mp")
	var node := make_test_node(root)
	var t0 := Time.get_ticks_msec()
	expect_eq(p.create_client(wss_url(), TLSOptions.client(cert)), OK_, "create_client_tls")
	expect_eq(p.get_connection_status(), CONNECTING, "connecting")
	mp.multiplayer_peer = p
	if not check(await wait_signal_count("mp", "connected_to_server", 1, 10.0), "connected",
			"events %s" % [events]):
		return
	info("wss connect (RSA 2048, pinned self-signed) took %d ms" % (Time.get_ticks_msec() - t0))
	var me: int = p.get_unique_id()
	put_value("cid", me)
	var ws: Object = p.get_peer(1)
	if check(ws != null, "get_peer_1", "null"):
		expect_eq(ws.get_requested_url(), wss_url(), "client_requested_url")
	expect_eq(node.rpc_id(1, "to_server", me, pattern(2000, me & 0xFFFF)), OK_, "rpc_to_server")
	if check(await wait_until(func() -> bool: return node.calls_of("to_client").size() >= 1,
			10.0, "to_client"), "to_client_arrived", "calls %s" % [node.calls]):
		expect_eq(node.calls_of("to_client")[0], ["to_client", 1, "hello-tls", pattern(3000, 7)],
				"to_client_call")
	await barrier("rpc_done")

	var other: X509Certificate = make_cert()[1]
	await attempt("tls_name_mismatch", wss_url("127.0.0.1"), TLSOptions.client(cert), false)
	await attempt("tls_untrusted", wss_url(), TLSOptions.client(other), false)
	await attempt("tls_plain_on_wss", "ws://localhost:%d/" % port, null, false)
	await attempt("tls_unsafe_wrong_chain", wss_url("127.0.0.1"), TLSOptions.client_unsafe(other),
			false)
	await attempt("tls_override", wss_url("127.0.0.1"), TLSOptions.client(cert, "localhost"), true)
	await attempt("tls_unsafe_chain", wss_url("127.0.0.1"), TLSOptions.client_unsafe(cert), true)
	await attempt("tls_unsafe", wss_url("127.0.0.1"), TLSOptions.client_unsafe(), true)
	mark("end")
	await barrier("cases_done", 30.0)

	check(await wait_until(func() -> bool: return node.calls_of("to_client").size() >= 2,
			10.0, "second to_client"), "still_connected", "calls %s" % [node.calls])
	expect_eq(node.rpc_id(1, "to_server", me, pattern(2000, me & 0xFFFF)), OK_, "rpc_again")
	expect_eq(count("mp", "server_disconnected"), 0, "never_disconnected")
	await barrier("done")


## One connection attempt with its own peer and SceneMultiplayer; checks the outcome and, for
## failures, that they come well before handshake_timeout (3 s).
func attempt(name: String, u: String, opts: TLSOptions, should_connect: bool) -> void:
	mark(name)
	var c: Object = make_peer()
	var mp := attach_multiplayer(null, "/root/" + name)
	watch(mp, name)
	var t0 := Time.get_ticks_msec()
	expect_eq(c.create_client(u, opts), OK_, name + "_create_client")
	mp.multiplayer_peer = c
	var decided := func() -> bool:
		return count(name, "connected_to_server") + count(name, "connection_failed") > 0
	if not check(await wait_until(decided, 10.0, name), name + "_outcome", "events %s" % [events]):
		return
	var ms := Time.get_ticks_msec() - t0
	if should_connect:
		info("%s: connected in %d ms" % [name, ms])
		expect_eq(count(name, "connected_to_server"), 1, name + "_connected")
	else:
		info("%s: connection_failed in %d ms" % [name, ms])
		expect_eq(count(name, "connection_failed"), 1, name + "_connection_failed")
		expect_eq(c.get_connection_status(), DISCONNECTED, name + "_disconnected")
		check(ms < 1500, name + "_fails_fast", "%d ms" % ms)
	mp.multiplayer_peer = null
	drop_peer(c)
