## health: RustWebSocketMultiplayerPeer's `health_path` against raw HTTP clients in
## tests/health_hook.py (barrier party "py").
##   health    port+0  health_path "/healthz": a plain GET (or HEAD, or HTTP/1.0 as HAProxy's
##                     httpchk sends it) is answered 200 "ok" by the runtime; once the server
##                     sets refuse_new_connections, 503, and a new WebSocket client gets 503
##                     at once while a connected one keeps its packets echoed; back to 200 and
##                     upgrades once it is turned off again. Other paths, other methods and an
##                     upgrade on /healthz itself go on to the WebSocket handshake as before.
##   plain     port+1  no health_path (the default ""): GET /healthz is 400 as before
##   denied    port+3  health_allow ["10.0.0.0/8"]: a check from 127.0.0.1 gets what any other
##                     plain request gets (400; 503 while refusing), as if there were no path
##   allowed   port+4  health_allow ["127.0.0.1"]: 200, then 503 while refusing
##   proxied   port+5  proxy_protocol on, trusting 127.0.0.1, health_allow ["192.0.2.0/24"]:
##                     the address checked is the client the PROXY header names
##   invalid   "healthz" (no leading /) -> create_server 31 with an error naming health_path;
##             health_allow ["10.9.9.9/8"] -> 31 naming health_allow (metrics_allow's parser)
## Roles: server (rust only), and "py".
extends "res://tests/lib/base.gd"


func run_server() -> void:
	if not check(is_rust(), "server_class", "health_path is a property of the rust class"):
		return
	var bad: Object = make_peer()
	bad.health_path = "healthz"
	expect_server_refused(bad, port + 2, "bad_health_path")
	bad.health_path = "/healthz"
	bad.health_allow = PackedStringArray(["10.9.9.9/8"])
	expect_server_refused(bad, port + 2, "bad_health_allow")
	mark("end")
	drop_peer(bad)

	var s: Object = make_peer()
	expect_eq(s.health_path, "", "health_path_default_empty")
	s.health_path = "/healthz"
	expect_eq(s.create_server(port), OK_, "create_server_health")
	var plain: Object = make_peer()
	expect_eq(plain.create_server(port + 1), OK_, "create_server_plain")
	expect_eq(s.health_allow, PackedStringArray(), "health_allow_default_empty")
	var limited := {3: ["10.0.0.0/8"], 4: ["127.0.0.1"], 5: ["192.0.2.0/24"]}
	var refusing: Array = [s]
	for offset in limited:
		var p: Object = make_peer()
		p.health_path = "/healthz"
		p.health_allow = PackedStringArray(limited[offset])
		if offset == 5:
			p.proxy_protocol = true
			p.trusted_proxies = PackedStringArray(["127.0.0.1"])
		expect_eq(p.create_server(port + offset), OK_, "create_server_allow_%d" % offset)
		polled.append(p)
		refusing.append(p)
	polled.append_array([s, plain])
	var echo := func() -> void:
		for p in [s, plain]:
			for r in drain(p):
				p.set_target_peer(r[0])
				p.put_packet(r[1])
	flag("server_ready")
	for step in [["refuse", true, "refusing"], ["accept", false, "accepting"]]:
		var asked := func() -> bool:
			echo.call()
			return has_flag(step[0]) or has_flag("py_done")
		await wait_until(asked, 15.0, "the hook asking to " + step[0])
		for p in refusing:
			p.refuse_new_connections = step[1]
		flag(step[2])
	var finished := func() -> bool:
		echo.call()
		return has_flag("py_done")
	check(await wait_until(finished, 15.0, "the hook"), "hook_done", "py_done never came")
	await barrier("done", 10.0)
