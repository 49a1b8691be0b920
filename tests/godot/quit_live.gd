## quit_live: a process calls quit() while connected, without close() and with the peer still
## set as root.multiplayer.multiplayer_peer (no clean-up at all). tests/process_hooks.py quit_live_hook
## measures, from the moment quit() is called to the process's exit, that it takes < 2 s; the
## runner requires exit code 0 and no "leaked" messages. Modes (argument mode=):
##   server_first  the server quits with a client connected; the client sees server_disconnected
##   client_first  the client quits while connected; the server sees peer_disconnected
##   pending       like server_first, and Python holds a silent TCP connection and a half-sent
##                 HTTP request to the server (handshakes in progress) when it quits
## Roles: server, client.
extends "res://tests/lib/base.gd"

var mode: String = ""
var quitting_live := false


func run() -> void:
	mode = args.get("mode", "server_first")
	put_value("pid_" + role, OS.get_process_id())
	await super()


## The quitting process skips every clean-up of base.gd: the peer stays attached and open.
func finish() -> void:
	if not quitting_live:
		super()
		return
	if _finished:
		return
	_finished = true
	print("@@DONE failures=%d checks=%d" % [failures, checks_total])
	flag("quitting_" + role)
	quit(1 if failures > 0 else 0)


func run_server() -> void:
	var p: Object = make_peer()
	watch(p, "peer")
	var mp := root.multiplayer as SceneMultiplayer
	serve_root(p)
	if not check(await wait_signal_count("peer", "peer_connected", 1, 5.0), "client_connected",
			"events %s" % [events["peer"]]):
		return
	var cid: int = got("peer", "peer_connected")[0]
	if not await barrier("connected"):
		return
	if mode == "client_first":
		var t0 := Time.get_ticks_msec()
		if check(await wait_until(func() -> bool: return got("peer", "peer_disconnected").has(cid),
				5.0, "peer_disconnected after the client quit"), "peer_disconnected_after_client_quit",
				"events %s" % [events["peer"]]):
			info("peer_disconnected %d ms after the barrier" % (Time.get_ticks_msec() - t0))
		expect_eq(Array(mp.get_peers()), [], "mp_no_peers_left")
		return
	if mode == "pending":
		if not await wait_flag("raw_open", 5.0):
			return
		await sleep(0.3)  # let the server take the raw connections in
	expect_eq(p.get_connection_status(), CONNECTED, "status_connected_before_quit")
	expect_eq(Array(mp.get_peers()), [cid], "client_still_connected_before_quit")
	check(mp.multiplayer_peer == p, "peer_still_attached_before_quit", "")
	info("quitting while connected")
	quitting_live = true


func run_client() -> void:
	if not await wait_flag("server_ready"):
		return
	var c: Object = make_peer()
	watch(c, "peer")
	var mp := root.multiplayer as SceneMultiplayer
	watch(mp, "mp")
	expect_eq(c.create_client(url()), OK_, "create_client")
	mp.multiplayer_peer = c
	if not check(await wait_signal_count("mp", "connected_to_server", 1, 5.0), "connected",
			"events %s" % [events]):
		return
	if not await barrier("connected"):
		return
	if mode == "client_first":
		expect_eq(c.get_connection_status(), CONNECTED, "status_connected_before_quit")
		check(mp.multiplayer_peer == c, "peer_still_attached_before_quit", "")
		info("quitting while connected")
		quitting_live = true
		return
	var t0 := Time.get_ticks_msec()
	if check(await wait_signal_count("mp", "server_disconnected", 1, 5.0),
			"server_disconnected_after_server_quit", "events %s, status %d" % [events,
			c.get_connection_status()]):
		info("server_disconnected %d ms after the barrier" % (Time.get_ticks_msec() - t0))
		expect_eq(c.get_connection_status(), DISCONNECTED, "status_disconnected")
		expect_eq(got("peer", "peer_disconnected"), [1], "peer_disconnected_1")
