## metrics: RustWebSocketMultiplayerPeer's `metrics_path` read by tests/metrics_hook.py (barrier
## party "py") and parsed there with prometheus_client's text parser.
##   port+0  metrics_path "/metrics", heartbeat 0.1 s: a rust client in this process sends 5
##           packets of 10 bytes (echoed) and stays; the hook's raw client sends 3 packets and
##           closes with 1000; the hook also sends one bad request (a failed handshake) and
##           an upgrade on /deny, which the handshake handler rejects (403). Then
##           this side publishes get_stats() and the hook checks the scrape against it.
##   port+1  metrics_path "/metrics", metrics_allow ["10.0.0.0/8"]: 127.0.0.1 gets 403
##   port+3  metrics_path, proxy_protocol on, trusting 127.0.0.1 only, handshake_timeout 1 s:
##           the hook refuses one connection per cause (no header, a malformed one, half of one,
##           one from 127.0.0.2) and reads proxy_header_failures_total{cause} 1 each
##   port+4  metrics_path over wss:// (a self-signed certificate), handshake_timeout 1 s: the
##           hook fails one TLS handshake per cause (plain HTTP, a client that refuses the
##           certificate, a silent socket, one closed at once), then reads
##           tls_failures_total{cause} over TLS (1 each, other 0)
##   invalid metrics_path "metrics" -> create_server 31 naming metrics_path; metrics_allow
##           "nonsense" -> 31 naming metrics_allow; health_path equal to it -> 31
## Roles: server (rust only), and "py".
extends "res://tests/lib/base.gd"


func run_server() -> void:
	if not check(is_rust(), "server_class", "metrics_path is a property of the rust class"):
		return
	var bad: Object = make_peer()
	expect_eq(bad.metrics_path, "", "metrics_path_default_empty")
	bad.metrics_path = "metrics"
	expect_server_refused(bad, port + 2, "bad_metrics_path")
	bad.metrics_path = "/metrics"
	bad.metrics_allow = PackedStringArray(["nonsense"])
	expect_server_refused(bad, port + 2, "bad_metrics_allow")
	bad.metrics_allow = PackedStringArray()
	bad.health_path = "/metrics"
	expect_server_refused(bad, port + 2, "same_paths")
	mark("end")
	drop_peer(bad)

	var s: Object = make_peer()
	s.metrics_path = "/metrics"
	s.heartbeat_interval = 0.1
	expect_eq(s.create_server(port), OK_, "create_server_metrics")
	s.set_handshake_handler(func(h: Object) -> bool: return h.get_path() != "/deny")
	var walled: Object = make_peer()
	walled.metrics_path = "/metrics"
	walled.metrics_allow = PackedStringArray(["10.0.0.0/8"])
	expect_eq(walled.create_server(port + 1), OK_, "create_server_walled")
	var proxied: Object = make_peer()
	proxied.metrics_path = "/metrics"
	proxied.proxy_protocol = true
	proxied.trusted_proxies = PackedStringArray(["127.0.0.1"])
	proxied.handshake_timeout = 1.0
	expect_eq(proxied.create_server(port + 3), OK_, "create_server_proxied")
	var crypto := Crypto.new()
	var key := crypto.generate_rsa(2048)
	var cert := crypto.generate_self_signed_certificate(key, "CN=localhost,O=rwsmp tests,C=US")
	var secure: Object = make_peer()
	secure.metrics_path = "/metrics"
	secure.handshake_timeout = 1.0
	expect_eq(secure.create_server(port + 4, "*", TLSOptions.server(key, cert)), OK_,
			"create_server_tls")
	var c: Object = make_peer()
	expect_eq(c.create_client(url()), OK_, "create_client")
	polled.append_array([s, walled, proxied, secure, c])
	var echoed := [0]
	var echo := func() -> void:
		for r in drain(s):
			s.set_target_peer(r[0])
			s.put_packet(r[1])
		echoed[0] += drain(c).size()
	check(await wait_status(c, 2, 10.0), "client_connected")
	for i in 5:
		c.put_packet(PackedByteArray([1, 2, 3, 4, 5, 6, 7, 8, 9, i]))
	flag("server_ready")
	var traffic_done := func() -> bool:
		echo.call()
		return echoed[0] >= 5 and has_flag("py_traffic_done") and s.get_stats()["peer_count"] == 1
	check(await wait_until(traffic_done, 15.0, "echoes, the hook's traffic and its close"),
			"traffic_done", "echoed %d, stats %s" % [echoed[0], s.get_stats()])
	# A few heartbeat round trips of the rust client.
	var pinged := func() -> bool:
		echo.call()
		return s.get_peer_stats(s.get_peer_ids()[0]).get("rtt_ms", -1.0) >= 0.0
	check(await wait_until(pinged, 5.0, "a heartbeat round trip"), "rtt_measured")
	await sleep(0.5)
	echo.call()
	var stats: Dictionary = s.get_stats()
	info("get_stats: %s" % stats)
	put_value("stats", stats)
	flag("stats_ready")
	var finished := func() -> bool:
		echo.call()
		return has_flag("py_done")
	check(await wait_until(finished, 15.0, "the hook"), "hook_done", "py_done never came")
	await barrier("done", 10.0)
