## heartbeat: RustWebSocketMultiplayerPeer.heartbeat_interval (0.5 s here) finds a peer that is
## still connected but no longer answers, because tests/process_hooks.py heartbeat_hook freezes its
## process with SIGSTOP. Argument parts= says what runs: "a" with a rust server, "b" with a rust
## client ("ab" for rust-srv/rust-cli).
##   a   server heartbeat_interval 0.5 with two clients, "frozen" (its own process) and
##       "steady": nobody is dropped while both answer (1.5 s), the server measures both RTTs
##       (0 <= rtt_ms < 100). The hook freezes the "frozen" process -> the server emits
##       peer_disconnected for it 0.4-1.5 s after the freeze (client_disconnected(id, false):
##       no close handshake); "steady" stays connected (no signal on either side, a packet still
##       arrives, rtt_ms still 0..100). The hook then resumes "frozen" (SIGCONT), which sees
##       the connection gone and exits within 5 s.
##   b   a rust client "hb" with heartbeat_interval 0.5 and a control client "ctl" without, both
##       with a SceneMultiplayer: both stay connected to the live server for 1.5 s (hb measures
##       rtt_ms 0..100, ctl reports -1). The hook freezes the server process -> hb reaches
##       DISCONNECTED with server_disconnected 0.4-1.5 s after the freeze, get_close_code()
##       -1 (not a clean close); ctl, without heartbeat, still reports CONNECTED. After the hook
##       resumes the server, it sees hb's peer_disconnected.
## Without SIGSTOP (not Linux) the hook says so and every process passes with a skip note.
## Roles: server, frozen (part a only), client.
extends "res://tests/lib/heartbeat_timing.gd"

var parts: String = ""
## Server (rust): client_disconnected(id, was_clean_close) as [id, clean].
var cd_log: Array = []


func run() -> void:
	parts = args.get("parts", "")
	put_value("pid_" + role, OS.get_process_id())
	var have: Variant = await get_value("sigstop", 15.0)
	if have == null:
		return
	if have == 0:
		check(true, "skipped_no_sigstop")
		info("SKIPPED: this platform has no SIGSTOP (see the hook's note)")
		return
	if role == "frozen":
		await run_frozen()
		# Leaves at once (the hook times its exit); the others' barrier "done" counts it in.
		flag("bar_done." + role)
	else:
		await super()


func _on_cd(id: int, clean: bool) -> void:
	cd_log.append([id, clean])


## The time (Time.get_ticks_msec) `key` recorded `sig` with argument `arg`, or -1.
func check_rtt(p: Object, id: int, name: String) -> void:
	var rtt: float = p.get_peer_stats(id).get("rtt_ms", -2.0)
	check(rtt >= 0.0 and rtt < 100.0, name, "rtt_ms %s" % rtt)
	info("%s: rtt_ms %.3f" % [name, rtt])


func run_server() -> void:
	var p: Object = make_peer()
	watch(p, "peer")
	if is_rust():
		expect_eq(p.heartbeat_interval, 0.0, "heartbeat_default_off")
		p.client_disconnected.connect(_on_cd)
		if "a" in parts:
			p.heartbeat_interval = INTERVAL
			expect_eq(p.heartbeat_interval, INTERVAL, "heartbeat_interval_set")
	expect_eq(p.create_server(port), OK_, "create_server")
	polled.append(p)
	flag("server_ready")
	if "a" in parts:
		await server_part_a(p)
	if "b" in parts:
		await server_part_b(p)
	await barrier("done", 15.0)


func server_part_a(p: Object) -> void:
	var fid: Variant = await get_value("id_frozen")
	var sid: Variant = await get_value("id_steady")
	if fid == null or sid == null or fid == 0 or sid == 0:
		flag("a_detected")
		return
	var both := func() -> bool:
		return got("peer", "peer_connected").has(fid) and got("peer", "peer_connected").has(sid)
	if not check(await wait_until(both, 5.0, "both clients"), "a_clients_connected",
			"events %s" % [events["peer"]]):
		flag("a_detected")
		return
	# Three heartbeats answered by both: nobody is dropped, both RTTs are measured.
	await sleep(3 * INTERVAL)
	expect_eq(got("peer", "peer_disconnected"), [], "a_no_drop_while_answering")
	check_rtt(p, fid, "a_rtt_frozen_before")
	check_rtt(p, sid, "a_rtt_steady_before")

	flag("freeze_client")
	if not await wait_flag("client_frozen", 10.0):
		flag("a_detected")
		return
	var t_frozen := Time.get_ticks_msec()
	if await expect_server_dropped(fid, t_frozen, "the freeze", "a_frozen_client_dropped",
			"a_drop_time", "a_detect_ms"):
		expect_eq(cd_log, [[fid, false]], "a_client_disconnected_not_clean")
	# The steady client is untouched.
	expect_eq(got("peer", "peer_disconnected"), [fid], "a_only_frozen_dropped")
	expect_eq(p.has_peer(sid), true, "a_steady_has_peer")
	expect_eq(p.get_peer_ids(), PackedInt32Array([sid]), "a_peer_ids_steady_only")
	check_rtt(p, sid, "a_rtt_steady_after")
	p.set_target_peer(sid)
	expect_eq(p.put_packet("alive".to_utf8_buffer()), OK_, "a_put_to_steady")
	flag("a_detected")
	await wait_flag("steady_checked", 15.0)


func server_part_b(p: Object) -> void:
	var hid: Variant = await get_value("id_hb", 20.0)
	if hid == null or hid == 0:
		return
	if not check(await wait_until(func() -> bool: return got("peer", "peer_connected").has(hid),
			5.0, "hb connected"), "b_hb_connected", "events %s" % [events["peer"]]):
		return
	# Frozen by the hook somewhere in here, until the client saw the server vanish.
	if not await wait_flag("server_resumed", 20.0):
		return
	var t_resumed := Time.get_ticks_msec()
	if check(await wait_until(func() -> bool: return got("peer", "peer_disconnected").has(hid),
			5.0, "hb's disconnection"), "b_hb_gone_after_resume",
			"events %s" % [events["peer"]]):
		info("server: hb's peer_disconnected %d ms after the server resumed"
				% (event_ms("peer", "peer_disconnected", hid) - t_resumed))
		if is_rust():
			check(cd_log.has([hid, false]), "b_hb_client_disconnected_not_clean",
					"client_disconnected %s, hb %d" % [cd_log, hid])


func run_frozen() -> void:
	if not await wait_flag("server_ready"):
		return
	var c: Object = make_peer()
	watch(c, "fz")
	if not await connect_client(c, 5.0):
		put_value("id_frozen", 0)
		return
	put_value("id_frozen", c.get_unique_id())
	# SIGSTOP somewhere in here; the hook sets the flag, then sends SIGCONT.
	if not await wait_flag("client_resumed", 20.0):
		return
	var t := Time.get_ticks_msec()
	if check(await wait_status(c, DISCONNECTED, 5.0), "disconnected_after_resume",
			"status %d, events %s" % [c.get_connection_status(), events["fz"]]):
		info("frozen client: DISCONNECTED %d ms after it was resumed" % (Time.get_ticks_msec() - t))
		expect_eq(got("fz", "peer_disconnected"), [1], "peer_disconnected_1")


func run_client() -> void:
	if not await wait_flag("server_ready"):
		return
	if "a" in parts:
		await client_part_a()
	if "b" in parts:
		await client_part_b()
	await barrier("done", 15.0)


func client_part_a() -> void:
	var c: Object = make_peer()
	watch(c, "steady")
	if not await connect_client(c, 5.0, "a_"):
		put_value("id_steady", 0)
		return
	put_value("id_steady", c.get_unique_id())
	if await wait_flag("a_detected", 20.0):
		var got_it := func() -> bool: return c.get_available_packet_count() > 0
		if check(await wait_until(got_it, 5.0, "the server's packet"), "a_steady_got_packet",
				"status %d" % c.get_connection_status()):
			expect_eq(c.get_packet(), "alive".to_utf8_buffer(), "a_steady_packet")
		expect_eq(c.get_connection_status(), CONNECTED, "a_steady_still_connected")
		expect_eq(got("steady", "peer_disconnected"), [], "a_steady_no_peer_disconnected")
	flag("steady_checked")
	drop_peer(c)


func client_part_b() -> void:
	var hb: Object = make_peer()
	var ctl: Object = make_peer()
	expect_eq(hb.heartbeat_interval, 0.0, "b_heartbeat_default_off")
	hb.heartbeat_interval = INTERVAL
	watch(hb, "hb")
	expect_eq(hb.create_client(url()), OK_, "b_create_client_hb")
	expect_eq(ctl.create_client(url()), OK_, "b_create_client_ctl")
	watch(attach_multiplayer(hb, "/root/HB"), "mpHB")
	watch(attach_multiplayer(ctl, "/root/CTL"), "mpCTL")
	var both := func() -> bool:
		return count("mpHB", "connected_to_server") == 1 and count("mpCTL", "connected_to_server") == 1
	if not check(await wait_until(both, 5.0, "hb and ctl connected"), "b_connected",
			"events %s" % [events]):
		put_value("id_hb", 0)
		return
	put_value("id_hb", hb.get_unique_id())
	# A live server answers: three heartbeats, no drop.
	await sleep(3 * INTERVAL)
	expect_eq(count("mpHB", "server_disconnected"), 0, "b_hb_kept_while_server_answers")
	expect_eq(hb.get_connection_status(), CONNECTED, "b_hb_connected_before_freeze")
	check_rtt(hb, 1, "b_hb_rtt")
	expect_eq(ctl.get_peer_stats(1).get("rtt_ms"), -1.0, "b_ctl_rtt_unmeasured")

	flag("freeze_server")
	if not await wait_flag("server_frozen", 10.0):
		return
	var t_frozen := Time.get_ticks_msec()
	if check(await wait_signal_count("mpHB", "server_disconnected", 1, 5.0), "b_server_disconnected",
			"no server_disconnected within 5 s of the freeze; status %d, events %s"
			% [hb.get_connection_status(), events["mpHB"]]):
		expect_found_in_time("mpHB", "server_disconnected", null, t_frozen, "the freeze",
				"b_detect_time", "b_detect_ms")
		expect_eq(hb.get_connection_status(), DISCONNECTED, "b_hb_status_disconnected")
		expect_eq(got("hb", "peer_disconnected"), [1], "b_hb_peer_disconnected_1")
		expect_eq(hb.get_close_code(), -1, "b_hb_close_code_not_clean")
		expect_eq(hb.get_close_reason(), "", "b_hb_close_reason_empty")
	# Without a heartbeat, nothing tells ctl that the server stopped answering.
	expect_eq(ctl.get_connection_status(), CONNECTED, "b_ctl_still_connected")
	expect_eq(count("mpCTL", "server_disconnected"), 0, "b_ctl_no_server_disconnected")
	flag("b_detected")
	await wait_flag("server_resumed", 15.0)
