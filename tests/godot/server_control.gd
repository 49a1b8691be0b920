## server_control: what only RustWebSocketMultiplayerPeer has on the server (run with a rust
## server against both client classes). Two clients A and B in the client process, each with
## its own SceneMultiplayer; the server is a raw polled peer (no SceneMultiplayer, so nothing
## but the scenario's packets is counted). Every side sets supported_protocols ["p1"].
##   open     client_connected(id, "p1") right after peer_connected, per client; has_peer,
##            is_listening, get_peer_ids (sorted), get_peer_stats before any traffic (all 0,
##            rtt_ms -1 with heartbeat off, connected_since_unix_ms between create_server and
##            now), get_stats {peer_count 2, 0...}; a rust client: is_listening false,
##            has_peer(1), get_peer_ids [1], get_close_code -1 while open
##   traffic  A sends 10 + 300 + 5000 bytes, B 7 bytes (put_packet); the server sends A two
##            SceneMultiplayer raw packets of 100 and 1200 bytes, B one of 50 -> per-peer stats
##            exact (packets/bytes in and out, queues 0) and get_stats totals; a rust client's
##            own get_peer_stats(1) mirror them
##   step A   A: get_peer(1).close(4005, "leaving") -> server: client_close_request(A, 4005,
##            "leaving"), peer_disconnected(A), client_disconnected(A, true), in that order
##   step B   server disconnect_peer_with_code(B, 4006, "kicked") -> has_peer(B) still true
##            until a poll; B: server_disconnected, 4006 / "kicked" through get_peer(1) in its
##            peer_disconnected(1) handler (a rust client also through get_close_code() /
##            get_close_reason() on the multiplayer peer once DISCONNECTED); server:
##            client_disconnected(B, true), no client_close_request for B
##   end      get_stats keeps the departed peers' traffic with peer_count 0; after close()
##            is_listening() is false
## Roles: server, client.
extends "res://tests/lib/base.gd"

const NAMES := ["A", "B"]
## Client -> server packet sizes (put_packet on the client peer: these exact bytes on the wire).
const UP := {"A": [10, 300, 5000], "B": [7]}
## Server -> client payload sizes; each goes out as SceneMultiplayer's raw command byte (3) plus
## the payload, so the wire sizes are these + 1.
const DOWN := {"A": [99, 1199], "B": [49]}
const CMD_RAW := 3
const STAT_KEYS := ["bytes_in", "bytes_out", "connected_since_unix_ms", "packets_in",
		"packets_out", "queued_bytes_out", "queued_packets_out", "rtt_ms", "wire_bytes_in",
		"wire_bytes_out"]
const TOTAL_KEYS := ["bytes_in", "bytes_out", "packets_in", "packets_out", "peer_count",
		"queued_bytes_out", "queued_packets_out", "wire_bytes_in", "wire_bytes_out"]

## Client: key -> handler records of peer_disconnected (see _record).
var seen: Dictionary = {}
## Client: name -> Array of payloads received through SceneMultiplayer peer_packet.
var received: Dictionary = {"A": [], "B": []}


func teardown() -> void:
	seen.clear()


static func sum(a: Array) -> int:
	var s := 0
	for v in a:
		s += v
	return s


static func sorted_keys(d: Dictionary) -> Array:
	var k := d.keys()
	k.sort()
	return k


## The server's signals concerning peer `id`, in order.
func has_logged(sig: String, id: int) -> bool:
	return siglog.any(func(e: Array) -> bool: return e[0] == sig and e[1] == id)


func expect_stats(d: Dictionary, want: Dictionary, who: String) -> void:
	for k in want:
		expect_eq(d.get(k), want[k], "%s_%s" % [who, k])


func run_server() -> void:
	var p: Object = make_peer()
	expect_eq(p.is_listening(), false, "fresh_not_listening")
	expect_eq(p.get_peer_ids(), PackedInt32Array(), "fresh_get_peer_ids")
	p.supported_protocols = PackedStringArray(["p1"])
	log_server_signals(p)
	var t_create_ms := int(Time.get_unix_time_from_system() * 1000.0)
	expect_eq(p.create_server(port), OK_, "create_server")
	polled.append(p)
	expect_eq(p.is_listening(), true, "is_listening")
	expect_eq(p.get_peer_ids(), PackedInt32Array(), "get_peer_ids_no_clients")
	flag("server_ready")

	var ids := await client_ids(NAMES)
	if ids.is_empty():
		return
	var a: int = ids["A"]
	var b: int = ids["B"]
	var both_in := func() -> bool:
		return has_logged("client_connected", a) and has_logged("client_connected", b)
	if not check(await wait_until(both_in, 5.0, "client_connected for A and B"),
			"client_connected_A_B", "log %s, ids %s" % [siglog, ids]):
		return
	for n in NAMES:
		var id: int = ids[n]
		expect_eq(log_of(id), [["peer_connected", id], ["client_connected", id, "p1"]],
				"signals_%s_connected" % n)
		expect_eq(p.has_peer(id), true, "has_peer_" + n)
		var ws: Object = p.get_peer(id)
		if check(ws != null, "get_peer_%s_non_null" % n, "null"):
			expect_eq(ws.get_selected_protocol(), "p1", "selected_protocol_" + n)
	expect_eq(p.has_peer(1), false, "has_peer_1_on_server")
	expect_eq(p.has_peer(123456), false, "has_peer_unknown")
	var sorted_ids := [a, b]
	sorted_ids.sort()
	expect_eq(p.get_peer_ids(), PackedInt32Array(sorted_ids), "get_peer_ids_sorted")

	var now_ms := int(Time.get_unix_time_from_system() * 1000.0)
	for n in NAMES:
		var st: Dictionary = p.get_peer_stats(ids[n])
		expect_eq(sorted_keys(st), STAT_KEYS, "peer_stats_keys_" + n)
		expect_stats(st, {"bytes_in": 0, "bytes_out": 0, "packets_in": 0, "packets_out": 0,
				"queued_packets_out": 0, "queued_bytes_out": 0, "rtt_ms": -1},
				"open_stats_" + n)
		var since: int = st.get("connected_since_unix_ms", 0)
		check(since >= t_create_ms - 5 and since <= now_ms + 5, "connected_since_" + n,
				"connected_since_unix_ms %d, create_server at %d, now %d" % [since, t_create_ms,
				now_ms])
	mark("peer_stats_unknown")
	expect_eq(p.get_peer_stats(123456), {}, "peer_stats_unknown_empty")
	mark("end")
	var st0: Dictionary = p.get_stats()
	expect_eq(sorted_keys(st0), TOTAL_KEYS, "stats_keys")
	expect_stats(st0, {"peer_count": 2, "bytes_in": 0, "bytes_out": 0, "packets_in": 0,
			"packets_out": 0, "queued_packets_out": 0, "queued_bytes_out": 0}, "open_totals")
	await barrier("open_checked")

	# Traffic: the server's packets are SceneMultiplayer raw commands the clients can read.
	for n in NAMES:
		p.set_target_peer(ids[n])
		var k := 0
		for size in DOWN[n]:
			var pkt := PackedByteArray([CMD_RAW]) + pattern(size, 100 + k)
			expect_eq(p.put_packet(pkt), OK_, "put_packet_to_%s_%d" % [n, k])
			k += 1
	var got_pk: Array = []
	var want_count := UP["A"].size() + UP["B"].size()
	var all_up := func() -> bool:
		got_pk.append_array(drain(p))
		return got_pk.size() >= want_count
	check(await wait_until(all_up, 5.0, "client packets"), "client_packets_arrived",
			"got %d of %d packets" % [got_pk.size(), want_count])
	for n in NAMES:
		var mine: Array = got_pk.filter(func(r: Array) -> bool: return r[0] == ids[n]).map(
				func(r: Array) -> PackedByteArray: return r[1])
		var want: Array = []
		for k in UP[n].size():
			want.append(pattern(UP[n][k], (1 if n == "A" else 10) + k))
		check(mine == want, "packets_from_" + n, "got %s, expected %s" % [
				mine.map(func(x: Variant) -> String: return _show(x)),
				want.map(func(x: Variant) -> String: return _show(x))])
	# Counters move after the socket write: wait until the clients have the packets and the
	# queues are empty.
	if not await wait_flag("clients_received", 10.0):
		return
	var drained := func() -> bool:
		return p.get_peer_stats(a).get("queued_packets_out", -1) == 0 \
				and p.get_peer_stats(b).get("queued_packets_out", -1) == 0
	check(await wait_until(drained, 5.0, "queues drained"), "queues_drained",
			"A %s, B %s" % [p.get_peer_stats(a), p.get_peer_stats(b)])
	var totals := {"bytes_in": 0, "bytes_out": 0, "packets_in": 0, "packets_out": 0}
	for n in NAMES:
		var want := {"packets_in": UP[n].size(), "bytes_in": sum(UP[n]),
				"packets_out": DOWN[n].size(), "bytes_out": sum(DOWN[n]) + DOWN[n].size(),
				"queued_packets_out": 0, "queued_bytes_out": 0, "rtt_ms": -1}
		var st: Dictionary = p.get_peer_stats(ids[n])
		info("server: get_peer_stats(%s) = %s" % [n, st])
		expect_stats(st, want, "traffic_stats_" + n)
		for k in totals:
			totals[k] += want[k]
	var st1: Dictionary = p.get_stats()
	info("server: get_stats() = %s" % [st1])
	var want_totals := totals.duplicate()
	want_totals.merge({"peer_count": 2, "queued_packets_out": 0, "queued_bytes_out": 0})
	expect_stats(st1, want_totals, "traffic_totals")
	await barrier("traffic_checked")

	# step A: client A closes with 4005 "leaving".
	if check(await wait_until(has_logged.bind("client_disconnected", a), 5.0,
			"client_disconnected(A)"), "A_client_disconnected", "log %s" % [siglog]):
		expect_eq(log_of(a), [["peer_connected", a], ["client_connected", a, "p1"],
				["client_close_request", a, 4005, "leaving"], ["peer_disconnected", a],
				["client_disconnected", a, true]], "signals_A_client_close")
		expect_eq(p.has_peer(a), false, "has_peer_A_after_close")
		expect_eq(p.get_peer_ids(), PackedInt32Array([b]), "get_peer_ids_after_A")
	await barrier("A_done")

	# step B: the server closes B with 4006 "kicked".
	p.disconnect_peer_with_code(b, 4006, "kicked")
	expect_eq(p.has_peer(b), true, "has_peer_B_until_poll")
	if check(await wait_until(has_logged.bind("client_disconnected", b), 5.0,
			"client_disconnected(B)"), "B_client_disconnected", "log %s" % [siglog]):
		expect_eq(log_of(b), [["peer_connected", b], ["client_connected", b, "p1"],
				["peer_disconnected", b], ["client_disconnected", b, true]],
				"signals_B_server_close")
		expect_eq(p.has_peer(b), false, "has_peer_B_after_close")
		expect_eq(p.get_peer_ids(), PackedInt32Array(), "get_peer_ids_after_B")
	# The departed peers' traffic stays in the totals.
	var st2: Dictionary = p.get_stats()
	info("server: get_stats() after both left = %s" % [st2])
	want_totals["peer_count"] = 0
	expect_stats(st2, want_totals, "departed_totals")
	await barrier("B_done")

	p.close()
	expect_eq(p.is_listening(), false, "not_listening_after_close")
	expect_eq(p.get_peer_ids(), PackedInt32Array(), "get_peer_ids_after_close")
	await barrier("done")


## Connected to a client's peer_disconnected: reads get_peer(id) inside the handler.
func _record(id: int, c: Object, key: String) -> void:
	var live: Object = c.get_peer(id)
	var rec := {"id": id, "live_null": live == null}
	if live != null:
		rec["code"] = live.get_close_code()
		rec["reason"] = live.get_close_reason()
	if not seen.has(key):
		seen[key] = []
	seen[key].append(rec)


func _on_mp_packet(from: int, pkt: PackedByteArray, n: String) -> void:
	received[n].append([from, pkt])


func run_client() -> void:
	if not await wait_flag("server_ready"):
		return
	var cs := {}
	var mps := {}
	for n in NAMES:
		var c: Object = make_peer()
		cs[n] = c
		c.supported_protocols = PackedStringArray(["p1"])
		c.peer_disconnected.connect(_record.bind(c, n))
		var mp := connect_named(c, n)
		mp.peer_packet.connect(_on_mp_packet.bind(n))
		mps[n] = mp
	if not await publish_ids(cs):
		return
	for n in NAMES:
		var c: Object = cs[n]
		var ws: Object = c.get_peer(1)
		if check(ws != null, "get_peer_1_%s_non_null" % n, "null"):
			expect_eq(ws.get_selected_protocol(), "p1", "selected_protocol_" + n)
		if is_rust():
			expect_eq(c.is_listening(), false, "rust_client_not_listening_" + n)
			expect_eq(c.has_peer(1), true, "rust_has_peer_1_" + n)
			expect_eq(c.get_peer_ids(), PackedInt32Array([1]), "rust_get_peer_ids_" + n)
			expect_eq(c.get_close_code(), -1, "rust_close_code_while_open_" + n)
			expect_eq(c.get_close_reason(), "", "rust_close_reason_while_open_" + n)
	await barrier("open_checked")

	for n in NAMES:
		var k := 0
		for size in UP[n]:
			expect_eq(cs[n].put_packet(pattern(size, (1 if n == "A" else 10) + k)), OK_,
					"put_packet_%s_%d" % [n, k])
			k += 1
	var all_down := func() -> bool:
		return received["A"].size() >= DOWN["A"].size() and received["B"].size() >= DOWN["B"].size()
	if check(await wait_until(all_down, 5.0, "server packets"), "server_packets_arrived",
			"A %d, B %d" % [received["A"].size(), received["B"].size()]):
		for n in NAMES:
			var want: Array = []
			for k in DOWN[n].size():
				want.append([1, pattern(DOWN[n][k], 100 + k)])
			check(received[n] == want, "packets_to_" + n, "got %s" % [received[n].map(
					func(r: Array) -> String: return "%d:%s" % [r[0], _show(r[1])])])
	flag("clients_received")
	if is_rust():
		for n in NAMES:
			var c: Object = cs[n]
			var empty := func() -> bool:
				return c.get_peer_stats(1).get("queued_packets_out", -1) == 0
			check(await wait_until(empty, 5.0, "client queue drained"), "rust_queue_drained_" + n,
					"%s" % [c.get_peer_stats(1)])
			var st: Dictionary = c.get_peer_stats(1)
			info("client %s: get_peer_stats(1) = %s" % [n, st])
			expect_stats(st, {"packets_out": UP[n].size(), "bytes_out": sum(UP[n]),
					"packets_in": DOWN[n].size(), "bytes_in": sum(DOWN[n]) + DOWN[n].size(),
					"queued_packets_out": 0, "queued_bytes_out": 0, "rtt_ms": -1},
					"rust_client_stats_" + n)
			var tot: Dictionary = c.get_stats()
			expect_stats(tot, {"peer_count": 1, "packets_out": UP[n].size(),
					"bytes_out": sum(UP[n]), "packets_in": DOWN[n].size(),
					"bytes_in": sum(DOWN[n]) + DOWN[n].size()}, "rust_client_totals_" + n)
	await barrier("traffic_checked")

	# step A: A leaves with 4005 "leaving".
	var ws_a: Object = cs["A"].get_peer(1)
	if ws_a != null:
		ws_a.close(4005, "leaving")
	ws_a = null
	if check(await wait_signal_count("mpA", "server_disconnected", 1, 5.0), "A_server_disconnected",
			"events %s, status %d" % [events["mpA"], cs["A"].get_connection_status()]):
		expect_eq(cs["A"].get_connection_status(), DISCONNECTED, "A_status_disconnected")
		if is_rust():
			expect_eq(cs["A"].get_close_code(), 4005, "rust_A_close_code_after")
			expect_eq(cs["A"].get_close_reason(), "leaving", "rust_A_close_reason_after")
	expect_eq(cs["B"].get_connection_status(), CONNECTED, "B_unaffected_by_A")
	await barrier("A_done")

	# step B: the server kicks B with 4006 "kicked".
	if check(await wait_signal_count("mpB", "server_disconnected", 1, 5.0), "B_server_disconnected",
			"events %s, status %d" % [events["mpB"], cs["B"].get_connection_status()]):
		expect_eq(cs["B"].get_connection_status(), DISCONNECTED, "B_status_disconnected")
		expect_eq(got("pB", "peer_disconnected"), [1], "B_peer_disconnected_1")
		var r := only_record(seen.get("B", []), "B", "client")
		if not r.is_empty():
			if check(not r["live_null"], "B_get_peer_1_in_handler", "get_peer(1) null in the handler"):
				expect_eq(r.get("code"), 4006, "B_close_code_in_handler")
				expect_eq(r.get("reason"), "kicked", "B_close_reason_in_handler")
		if is_rust():
			expect_eq(cs["B"].get_close_code(), 4006, "rust_B_close_code_after")
			expect_eq(cs["B"].get_close_reason(), "kicked", "rust_B_close_reason_after")
			expect_eq(cs["B"].has_peer(1), false, "rust_B_has_peer_1_after")
			expect_eq(cs["B"].get_peer_ids(), PackedInt32Array(), "rust_B_get_peer_ids_after")
	await barrier("B_done")
	await barrier("done")
