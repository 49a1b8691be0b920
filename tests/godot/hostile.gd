## hostile: a server of one class under hostile and broken clients written in Python
## (tests/hostile_hook.py, which drives every case and makes most checks), while a normal Godot
## client of the same class keeps exchanging packets with it.
##
## server   create_server(port) with handshake_timeout from `handshake_timeout=` (default 1.0),
##          publishes its pid (put_value "pid_server"), then obeys commands from the hook: the
##          hook writes `val_cmd_<n>` (JSON {"op": ...}), the server answers in `val_resp_<n>`
##          (JSON). Every frame it drains its packets: those starting with "NORM" (the normal
##          client's) are echoed to their sender; those from a peer under an `order_begin`
##          command must carry a little-endian u32 sequence number 0, 1, 2, ...; the rest are
##          kept (the first 16 per peer) for the `packets` command.
##   ops    mark {name}                    prints @@MARK name (stderr checks follow it)
##          stats                          connected / disconnected totals, live peers, echoes
##          wait_gone {id, timeout}        until peer_disconnected(id)
##          wait_live {count, timeout}     until at most `count` peers are connected
##          packets {id}                   what arrived from id
##          fill {id, size, max, ms, retry_ms}   put_packet to id until it fails (a client
##                                         that never reads), then one retry every 100 ms for
##                                         retry_ms
##          order_begin {id} / order_report {id, expect, timeout}
##          end
## client   the normal client: every 10 ms a "NORM" packet with a sequence number; checks the
##          echoes come back complete and in order; publishes {"rx", "tx", "bad", "stall_ms"}
##          (the longest wait for an echo so far) in `val_normal` every 100 ms; when the hook
##          sets flag `end`, stops sending and checks every packet came back.
## Roles: server, client (and "py", the hook, as a barrier party).
extends "res://tests/lib/base.gd"

const NORM := [78, 79, 82, 77]  # "NORM"

var srv: Object
var live: Dictionary = {}          # id -> msec connected
var gone: Dictionary = {}          # id -> msec disconnected (the last 2048-4096)
var n_connected: int = 0
var n_disconnected: int = 0
var recv_count: Dictionary = {}    # id -> packets received (not NORM, not ordered)
var recv_first: Dictionary = {}    # id -> Array of the first 16 packets (hex)
var recv_text: Dictionary = {}     # id -> Array of was_string_packet for those
var ordered: Dictionary = {}       # id -> {"next", "bad", "first_bad", "count"}
var echoed: int = 0
var echo_fail: int = 0


# --------------------------------------------------------------------------------------------
# Server

func _on_connected(id: int) -> void:
	n_connected += 1
	live[id] = Time.get_ticks_msec()


func _on_disconnected(id: int) -> void:
	n_disconnected += 1
	live.erase(id)
	gone[id] = Time.get_ticks_msec()
	if gone.size() >= 4096:  # bounded, or the lifecycle soak would measure this script
		for k in gone.keys().slice(0, 2048):
			gone.erase(k)


func _pump() -> void:
	if srv == null:
		return
	var norm := PackedByteArray(NORM)
	while srv.get_available_packet_count() > 0:
		var src: int = srv.get_packet_peer()
		var pkt: PackedByteArray = srv.get_packet()
		if pkt.size() >= 8 and pkt.slice(0, 4) == norm:
			srv.set_target_peer(src)
			if srv.put_packet(pkt) == OK_:
				echoed += 1
			else:
				echo_fail += 1
		elif ordered.has(src):
			var o: Dictionary = ordered[src]
			o["count"] += 1
			var seq: int = pkt.decode_u32(0) if pkt.size() >= 4 else -1
			if seq == o["next"]:
				o["next"] += 1
			else:
				if o["bad"] == 0:
					o["first_bad"] = "packet #%d: seq %d, expected %d (%d bytes)" % [
							o["count"] - 1, seq, o["next"], pkt.size()]
				o["bad"] += 1
				o["next"] = seq + 1
		else:
			recv_count[src] = recv_count.get(src, 0) + 1
			if not recv_first.has(src):
				recv_first[src] = []
				recv_text[src] = []
			if recv_first[src].size() < 16:
				recv_first[src].append(pkt.slice(0, 256).hex_encode())
				recv_text[src].append(srv.was_string_packet() if srv.has_method("was_string_packet")
						else false)


func run_server() -> void:
	srv = make_peer()
	srv.peer_connected.connect(_on_connected)
	srv.peer_disconnected.connect(_on_disconnected)
	srv.handshake_timeout = float(args.get("handshake_timeout", "1.0"))
	expect_eq(srv.create_server(port), OK_, "create_server")
	polled.append(srv)
	process_frame.connect(_pump)  # after the base's poll (connected first)
	put_value("pid_server", OS.get_process_id())
	flag("server_ready")
	var n := 0
	var ended := false
	while not _finished:
		var path := _path("val_cmd_%d" % n)
		if not await wait_until(func() -> bool: return FileAccess.file_exists(path), 120.0,
				"hook command %d" % n):
			break
		var parsed: Variant = JSON.parse_string(FileAccess.get_file_as_string(path))
		if typeof(parsed) != TYPE_DICTIONARY:
			check(false, "command_%d" % n, "not a JSON object: %s" % FileAccess.get_file_as_string(path))
			break
		var cmd: Dictionary = parsed
		var resp: Dictionary = await do_cmd(cmd)
		_write_atomic("val_resp_%d" % n, JSON.stringify(resp))
		n += 1
		if cmd.get("op", "") == "end":
			ended = true
			break
	check(ended, "hook_ended", "the hook never sent `end` (%d commands)" % n)
	check(n > 1, "commands_run", "%d commands" % n)
	expect_eq(echo_fail, 0, "echo_put_packet_never_failed")
	info("echoed %d packets of the normal client; %d peers connected, %d disconnected" % [
			echoed, n_connected, n_disconnected])
	await barrier("done", 20.0)
	process_frame.disconnect(_pump)


func _wait_ms(cond: Callable, timeout_s: float, what: String) -> Array:
	var t0 := Time.get_ticks_msec()
	var ok: bool = await wait_until(cond, timeout_s, what)
	return [ok, Time.get_ticks_msec() - t0]


func do_cmd(cmd: Dictionary) -> Dictionary:
	var op: String = cmd.get("op", "")
	var id: int = int(cmd.get("id", 0))
	var timeout_s: float = float(cmd.get("timeout", 5.0))
	match op:
		"mark":
			mark(String(cmd.get("name", "")))
			return {}
		"stats":
			return {"connected": n_connected, "disconnected": n_disconnected, "live": live.size(),
					"echoed": echoed, "echo_fail": echo_fail}
		"wait_gone":
			var r: Array = await _wait_ms(func() -> bool: return gone.has(id), timeout_s,
					"peer_disconnected(%d)" % id)
			return {"gone": r[0], "ms": r[1], "live": live.has(id)}
		"wait_live":
			var most: int = int(cmd.get("count", 0))
			var r: Array = await _wait_ms(func() -> bool: return live.size() <= most, timeout_s,
					"at most %d peers" % most)
			return {"ok": r[0], "ms": r[1], "live": live.size(), "connected": n_connected,
					"disconnected": n_disconnected}
		"packets":
			return {"count": recv_count.get(id, 0), "first": recv_first.get(id, []),
					"text": recv_text.get(id, []), "live": live.has(id)}
		"order_begin":
			ordered[id] = {"next": 0, "bad": 0, "first_bad": "", "count": 0}
			return {}
		"order_report":
			var want: int = int(cmd.get("expect", 0))
			var r: Array = await _wait_ms(func() -> bool: return ordered[id]["count"] >= want,
					timeout_s, "%d ordered packets from %d" % [want, id])
			var o: Dictionary = ordered[id]
			return {"ok": r[0], "ms": r[1], "count": o["count"], "next": o["next"], "bad": o["bad"],
					"first_bad": o["first_bad"]}
		"fill":
			# The id greeting can reach the client before peer_connected is emitted here.
			await wait_until(func() -> bool: return live.has(id), 5.0, "peer_connected(%d)" % id)
			return await fill(id, int(cmd.get("size", 1000)), int(cmd.get("max", 100000)),
					int(cmd.get("ms", 5000)), int(cmd.get("retry_ms", 1000)))
		"end":
			return {}
	check(false, "unknown_op", "op %s" % op)
	return {"error": "unknown op %s" % op}


## put_packet to `id` (a client that never reads) until the queue stays full: a few hundred
## per frame; after a refusal, one try every 20 ms; done when nothing was accepted for 500 ms
## (or `max` packets / `ms` milliseconds). Then one retry every 100 ms for `retry_ms`.
## Packets carry a u32 sequence number.
func fill(id: int, size: int, most: int, ms: int, retry_ms: int) -> Dictionary:
	var pkt := PackedByteArray()
	pkt.resize(size)
	var sent := 0
	var err := OK_
	var refusals := 0
	var first_refusal := -1
	var t0 := Time.get_ticks_msec()
	var last_ok := t0
	while sent < most and Time.get_ticks_msec() - t0 < ms and not _finished:
		srv.set_target_peer(id)
		for i in 256:
			pkt.encode_u32(0, sent)
			err = srv.put_packet(pkt)
			if err != OK_:
				refusals += 1
				if first_refusal < 0:
					first_refusal = sent
				break
			sent += 1
			last_ok = Time.get_ticks_msec()
			if sent >= most:
				break
		if err == OK_:
			await process_frame
		elif err != ERR_OUT_OF_MEMORY or Time.get_ticks_msec() - last_ok >= 500:
			break
		else:
			await sleep(0.02)
	var fill_ms := Time.get_ticks_msec() - t0
	var buffered := -1
	var handle: Object = srv.get_peer(id)
	if handle != null:
		buffered = handle.get_current_outbound_buffered_amount()
	var retry_ok := 0
	var retry_fail := 0
	var t1 := Time.get_ticks_msec()
	while Time.get_ticks_msec() - t1 < retry_ms and not _finished:
		await sleep(0.1)
		srv.set_target_peer(id)
		pkt.encode_u32(0, sent + retry_ok)
		if srv.put_packet(pkt) == OK_:
			retry_ok += 1
		else:
			retry_fail += 1
	return {"sent": sent, "err": err, "ms": fill_ms, "refusals": refusals,
			"first_refusal": first_refusal, "buffered": buffered, "retry_ok": retry_ok,
			"retry_fail": retry_fail, "live": live.has(id)}


# --------------------------------------------------------------------------------------------
# Normal client

func run_client() -> void:
	if not await wait_flag("server_ready", 15.0):
		return
	var c: Object = make_peer()
	watch(c, "cli")
	if not await connect_client(c):
		return
	var tx := 0
	var rx := 0
	var bad := 0
	var put_fail := 0
	var stall_ms := 0
	var last_progress := Time.get_ticks_msec()
	var next_send := 0
	var next_publish := 0
	var pkt := PackedByteArray(NORM)
	pkt.resize(40)
	var sending := true
	var end_at := 0
	while not _finished:
		var now := Time.get_ticks_msec()
		if sending and has_flag("end"):
			sending = false
			end_at = now
		if sending and now >= next_send:
			next_send = now + 10
			pkt.encode_u32(4, tx)
			if c.put_packet(pkt) == OK_:
				if tx == rx:
					last_progress = now
				tx += 1
			else:
				put_fail += 1
		while c.get_available_packet_count() > 0:
			var got_pkt: PackedByteArray = c.get_packet()
			var seq: int = got_pkt.decode_u32(4) if got_pkt.size() >= 8 else -1
			if seq != rx:
				bad += 1
			rx = seq + 1
			last_progress = now
		if tx > rx:
			stall_ms = maxi(stall_ms, now - last_progress)
		if now >= next_publish or (not sending and rx >= tx):
			next_publish = now + 100
			_write_atomic("val_normal", JSON.stringify({"rx": rx, "tx": tx, "bad": bad,
					"stall_ms": stall_ms, "put_fail": put_fail, "status": c.get_connection_status()}))
		if not sending and (rx >= tx or now - end_at > 5000):
			break
		await process_frame
	expect_eq(c.get_connection_status(), CONNECTED, "still_connected")
	expect_eq(rx, tx, "every_packet_echoed")
	expect_eq(bad, 0, "echoes_in_order")
	info("normal client: %d packets echoed, longest wait for an echo %d ms, %d put_packet refusals"
			% [rx, stall_ms, put_fail])
	await barrier("done", 20.0)
