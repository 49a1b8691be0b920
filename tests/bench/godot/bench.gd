## Benchmark workloads for tests/bench/run_bench.py: one headless Godot process per role.
## Over 500 lines because it is one script for every workload, run from outside the test
## project (a copy of godot-project per run), so it cannot share the test library.
##
##   godot --headless --path godot-project -s <abs path>/bench.gd -- \
##         workload=throughput role=server cls=rust port=N size=1024 warmup=0.5 duration=2 ...
##
## cls: rust (RustWebSocketMultiplayerPeer) | builtin (WebSocketMultiplayerPeer) | enet
## (ENetMultiplayerPeer). Workloads and roles:
##   throughput  server = receiver (counts in a GDScript get_packet loop), client = sender;
##               with `tls_dir=DIR` over wss (the server writes its certificate into DIR)
##   rtt         server echoes 32 B packets in the frame they arrive, client times them
##   rpc         client makes reliable @rpc calls to the server, which counts them
##   idle        server only: poll() cost and connection counts while raw clients (Python)
##               connect in stages; the runner reads the server's VmRSS between stages
##   fanout      server only: broadcasts a snapshot to raw clients (Python) at 60 Hz, and
##               drains (counts) whatever they send (the game workload: inputs at 30 Hz);
##               with `payload=game` the snapshot is var_to_bytes of 100 moving entities,
##               remade each tick (the compression workload)
##
## `deflate=1` turns on compression_enabled (rust only; both ends of a throughput pair get it),
## `deflate_level=N` sets its compression_level (default 6), `deflate_nct=1` turns on
## compression_no_context_takeover.
## throughput `payload=json|random`: the sender rotates 16 pre-made messages of `size` bytes,
## a leaderboard JSON document or random bytes, instead of one fixed pattern.
##
## Output (stdout): `@@READY ...` once listening, `@@WINDOW start|end` (throughput receiver:
## the runner samples both processes' CPU time there), `@@STAGE {json}`, `@@RESULT {json}`,
## `@@ERROR text`, `@@DONE`. Every process ends by itself (watchdog `timeout=`).
##
## Over 500 lines for one reason: every benchmark process is this one script started with a
## role, so the workloads share its peer setup, frame pacing, watchdog and output lines.
##
## Flow control: senders keep at most `window_pkts` packets / `window_bytes` bytes unacknowledged
## (the receiver acknowledges its cumulative count once per frame), so no queue overflows and
## nothing is dropped whatever the class; a put_packet error is still counted and ends the
## frame's sending. The WebSocket classes are given the same buffer sizes (`inbuf`, `outbuf`,
## `maxq`).
extends SceneTree

const CLASSES := {
	"rust": "RustWebSocketMultiplayerPeer",
	"builtin": "WebSocketMultiplayerPeer",
	"enet": "ENetMultiplayerPeer",
}

# Control packets are exactly CTRL_SIZE bytes: [tag, u64 value]. Data packets are never 9 bytes.
const CTRL_SIZE := 9
const T_FIN := 1     # sender -> receiver: total number of data packets sent
const T_ACK := 2     # receiver -> sender: cumulative number of data packets received
const T_STOP := 3    # receiver -> sender: the measurement window is over, stop sending
const T_DONE := 4    # receiver -> sender: everything arrived, you may exit
const RTT_SIZE := 32

const RPC_NODE_SRC := """
extends Node
var calls := 0
var acked := 0
var stop := false
var fin := -1
var done := false
var client := 0

@rpc("any_peer", "call_remote", "reliable")
func hit(_i: int) -> void:
	calls += 1

@rpc("any_peer", "call_remote", "reliable")
func ack(n: int) -> void:
	acked = n

@rpc("any_peer", "call_remote", "reliable")
func stop_sending() -> void:
	stop = true

@rpc("any_peer", "call_remote", "reliable")
func finished(total: int) -> void:
	fin = total

@rpc("any_peer", "call_remote", "reliable")
func all_done() -> void:
	done = true
"""

var A: Dictionary = {}
var workload := ""
var role := ""
var cls := ""
var port := 0
var peer: MultiplayerPeer = null
var _deadline_ms := 0
var _finished := false
var _connected := 0
var _rpc_node: Node = null


func _initialize() -> void:
	for a in OS.get_cmdline_user_args():
		var kv: PackedStringArray = a.split("=", true, 1)
		A[kv[0]] = kv[1] if kv.size() > 1 else ""
	workload = A.get("workload", "")
	role = A.get("role", "server")
	cls = A.get("cls", "rust")
	port = int(A.get("port", "0"))
	OS.low_processor_usage_mode_sleep_usec = int(A.get("sleep_usec", "0"))
	_deadline_ms = Time.get_ticks_msec() + int(float(A.get("timeout", "30")) * 1000.0)
	process_frame.connect(_watchdog)
	_main.call_deferred()


func argf(key: String, def: float) -> float:
	return float(A.get(key, str(def)))


func argi(key: String, def: int) -> int:
	return int(A.get(key, str(def)))


func _watchdog() -> void:
	if not _finished and Time.get_ticks_msec() > _deadline_ms:
		print("@@ERROR %s.%s watchdog: timed out" % [workload, role])
		finish(3)


func _main() -> void:
	var class_name_: String = CLASSES.get(cls, "")
	if class_name_ == "" or not ClassDB.class_exists(class_name_):
		print("@@ERROR class %s (%s) is not available" % [cls, class_name_])
		finish(2)
		return
	match workload:
		"throughput":
			if role == "server":
				await tp_server()
			else:
				await tp_client()
		"rtt":
			if role == "server":
				await rtt_server()
			else:
				await rtt_client()
		"rpc":
			if role == "server":
				await rpc_server()
			else:
				await rpc_client()
		"idle":
			await idle_server()
		"fanout":
			await fanout_server()
		_:
			print("@@ERROR unknown workload %s" % workload)
	finish(0)


func finish(code: int) -> void:
	if _finished:
		return
	_finished = true
	if root.multiplayer != null and root.multiplayer.multiplayer_peer != null:
		root.multiplayer.multiplayer_peer = null
	if _rpc_node != null:
		_rpc_node.queue_free()
		_rpc_node = null
	if peer != null:
		peer.close()
		peer = null
	print("@@DONE")
	quit(code)


func result(d: Dictionary) -> void:
	d["workload"] = workload
	d["role"] = role
	d["cls"] = cls
	print("@@RESULT " + JSON.stringify(d))


## This thread's [time on a CPU, time waiting for one] in ns and its number of times it got a
## CPU (Linux schedstat; zeros elsewhere). The run time is as of the thread's last scheduler
## event, not of the call: thread_cpu_us() is exact.
func schedstat() -> PackedInt64Array:
	var f := FileAccess.open("/proc/thread-self/schedstat", FileAccess.READ)
	if f == null:
		return PackedInt64Array([0, 0, 0])
	var parts := f.get_line().split(" ")
	return PackedInt64Array([int(parts[0]), int(parts[1]), int(parts[2])])


## Parts of a fan-out frame, each a per-frame series ("switches": context switches in the frame).
## "voluntary" / "involuntary": the thread gave up the CPU (blocked) / was preempted.
## "runtime": CPU time of the addon's runtime threads (rust-websocket*) in the frame, as of
## their last scheduler event (exact for a thread that ran and went to sleep in the frame).
const FRAME_KEYS := ["oncpu", "runq", "blocked", "poll", "drain", "put", "runtime", "switches",
		"voluntary", "involuntary"]
const COUNT_KEYS := ["switches", "voluntary", "involuntary"]
var _cpu_clock: Object = null


## This thread's CPU time in µs (the addon's CLOCK_THREAD_CPUTIME_ID helper), -1 without it.
func thread_cpu_us() -> int:
	if _cpu_clock == null:
		if not ClassDB.class_has_method("RustWebSocketMultiplayerPeer", "get_thread_cpu_usec"):
			return -1
		_cpu_clock = ClassDB.instantiate("RustWebSocketMultiplayerPeer")
	return _cpu_clock.get_thread_cpu_usec()


## This thread's [voluntary, involuntary] context switches so far (Linux; zeros elsewhere).
func ctxt_switches() -> PackedInt64Array:
	var out := PackedInt64Array([0, 0])
	var f := FileAccess.open("/proc/thread-self/status", FileAccess.READ)
	if f == null:
		return out
	while not f.eof_reached():  # proc files have no length: read line by line
		var line := f.get_line()
		if line.begins_with("voluntary_ctxt_switches:"):
			out[0] = int(line.get_slice(":", 1))
		elif line.begins_with("nonvoluntary_ctxt_switches:"):
			out[1] = int(line.get_slice(":", 1))
	return out


## Thread ids of this process's runtime threads (named rust-websocket*; none for the built-in).
func runtime_threads() -> PackedStringArray:
	var out := PackedStringArray()
	for tid in DirAccess.get_directories_at("/proc/self/task"):
		var f := FileAccess.open("/proc/self/task/%s/comm" % tid, FileAccess.READ)
		if f != null and f.get_line().begins_with("rust-websocket"):
			out.append(tid)
	return out


## The summed schedstat run time (ns) of threads `tids` of this process.
func runtime_run_ns(tids: PackedStringArray) -> int:
	var total := 0
	for tid in tids:
		var f := FileAccess.open("/proc/self/task/%s/schedstat" % tid, FileAccess.READ)
		if f != null:
			total += int(f.get_line().get_slice(" ", 0))
	return total


func now_us() -> int:
	return Time.get_ticks_usec()


# --------------------------------------------------------------------------------------------
# Peers

func new_peer() -> MultiplayerPeer:
	var p: MultiplayerPeer = ClassDB.instantiate(CLASSES[cls])
	if cls != "enet":
		if A.has("inbuf"):
			p.set("inbound_buffer_size", int(A["inbuf"]))
		if A.has("outbuf"):
			p.set("outbound_buffer_size", int(A["outbuf"]))
		if A.has("maxq"):
			p.set("max_queued_packets", int(A["maxq"]))
		p.set("handshake_timeout", argf("handshake_timeout", 10.0))
		if A.get("deflate", "0") == "1":
			if cls != "rust":
				print("@@ERROR deflate=1: only the rust class has compression_enabled")
			p.set("compression_enabled", true)
			p.set("compression_level", argi("deflate_level", 6))
			p.set("compression_no_context_takeover", A.get("deflate_nct", "0") == "1")
	p.peer_connected.connect(func(_id: int) -> void: _connected += 1)
	p.peer_disconnected.connect(func(_id: int) -> void: _connected -= 1)
	return p


func start_server() -> bool:
	peer = new_peer()
	var err: int
	if cls == "enet":
		var e := peer as ENetMultiplayerPeer
		e.set_bind_ip("127.0.0.1")
		err = e.create_server(port, argi("max_clients", 32))
	elif A.has("tls_dir"):
		var opts := tls_server_options(A["tls_dir"])
		if opts == null:
			return false
		err = peer.call("create_server", port, "127.0.0.1", opts)
	else:
		err = peer.call("create_server", port, "127.0.0.1")
	if err != OK:
		print("@@ERROR create_server(%d) failed: %d" % [port, err])
		return false
	print("@@READY pid=%d port=%d" % [OS.get_process_id(), port])
	return true


## wss: an RSA 2048 key and a self-signed certificate (CN=localhost) from Godot's Crypto, written
## to `dir` as PEM files for the client, then loaded back as a game would ship them.
func tls_server_options(dir: String) -> TLSOptions:
	var crypto := Crypto.new()
	var gen_key := crypto.generate_rsa(2048)
	var gen_cert := crypto.generate_self_signed_certificate(gen_key, "CN=localhost,O=rwsmp bench,C=US")
	if gen_key.save(dir.path_join("key.pem")) != OK or gen_cert.save(dir.path_join("cert.pem")) != OK:
		print("@@ERROR could not write the PEM files into %s" % dir)
		return null
	var key := CryptoKey.new()
	var cert := X509Certificate.new()
	if key.load(dir.path_join("key.pem")) != OK or cert.load(dir.path_join("cert.pem")) != OK:
		print("@@ERROR could not load the PEM files back from %s" % dir)
		return null
	return TLSOptions.server(key, cert)


func start_client() -> bool:
	peer = new_peer()
	var err: int
	if cls == "enet":
		err = (peer as ENetMultiplayerPeer).create_client("127.0.0.1", port)
	elif A.has("tls_dir"):
		# The server's self-signed certificate, trusted as is, its name checked (CN=localhost).
		var cert := X509Certificate.new()
		if cert.load(String(A["tls_dir"]).path_join("cert.pem")) != OK:
			print("@@ERROR could not load %s/cert.pem" % A["tls_dir"])
			return false
		err = peer.call("create_client", "wss://127.0.0.1:%d" % port,
				TLSOptions.client(cert, "localhost"))
	else:
		err = peer.call("create_client", "ws://127.0.0.1:%d" % port)
	if err != OK:
		print("@@ERROR create_client failed: %d" % err)
		return false
	if workload == "rpc":
		root.multiplayer.multiplayer_peer = peer  # it polls the peer from now on
	var end := Time.get_ticks_msec() + 10000
	while peer.get_connection_status() != MultiplayerPeer.CONNECTION_CONNECTED:
		if Time.get_ticks_msec() > end or peer.get_connection_status() == MultiplayerPeer.CONNECTION_DISCONNECTED:
			print("@@ERROR could not connect (status %d)" % peer.get_connection_status())
			return false
		if workload != "rpc":
			peer.poll()
		await process_frame
	return true


## Polls (raw peer) until `n` peers are connected.
func wait_peers(n: int, timeout_s: float) -> bool:
	var end := Time.get_ticks_msec() + int(timeout_s * 1000.0)
	while _connected < n:
		if Time.get_ticks_msec() > end or _finished:
			print("@@ERROR only %d of %d peers connected" % [_connected, n])
			return false
		peer.poll()
		await process_frame
	return true


static func ctrl(tag: int, value: int) -> PackedByteArray:
	var b := PackedByteArray()
	b.resize(CTRL_SIZE)
	b[0] = tag
	b.encode_u64(1, value)
	return b


func drain_frames(seconds: float) -> void:
	var end := Time.get_ticks_msec() + int(seconds * 1000.0)
	while Time.get_ticks_msec() < end and not _finished:
		peer.poll()
		while peer.get_available_packet_count() > 0:
			peer.get_packet()
		await process_frame


## The rust class's traffic totals (payload and wire bytes); empty for the other classes.
func traffic() -> Dictionary:
	if peer == null or not peer.has_method("get_stats"):
		return {}
	return peer.call("get_stats")


## What moved between two traffic() readings: `payload_bytes_in/out` (decompressed) and
## `wire_bytes_in/out` (as sent), absent for the classes without get_stats.
func traffic_delta(a: Dictionary, b: Dictionary) -> Dictionary:
	if a.is_empty() or b.is_empty():
		return {}
	return {"payload_bytes_in": int(b["bytes_in"]) - int(a["bytes_in"]),
			"payload_bytes_out": int(b["bytes_out"]) - int(a["bytes_out"]),
			"wire_bytes_in": int(b["wire_bytes_in"]) - int(a["wire_bytes_in"]),
			"wire_bytes_out": int(b["wire_bytes_out"]) - int(a["wire_bytes_out"]),
			"packets_out": int(b["packets_out"]) - int(a["packets_out"])}


const NAME_HEADS := ["Ash", "Bran", "Cor", "Dag", "El", "Fen", "Gal", "Hal", "Ira", "Jor",
		"Kel", "Lor", "Mar", "Nyx", "Or", "Pyr", "Quin", "Ros", "Syl", "Tor", "Ul", "Vex"]
const NAME_TAILS := ["a", "en", "wyn", "ric", "ia", "dor", "eth", "ion", "us", "ka", "mir"]
const GUILDS := ["Iron Wolves", "Night Owls", "Crimson Tide", "Frostborn", "Sunforge",
		"Silent Blades", "Stormcallers", ""]


## A leaderboard as a game server would send it: JSON of players (name, guild, score, level,
## wins, losses, last seen), version `v` of it (scores and order move between versions, the
## players stay), padded with spaces to exactly `size` bytes.
func leaderboard_json(v: int, size: int) -> PackedByteArray:
	var rng := RandomNumberGenerator.new()
	rng.seed = 1234  # the same players in every version
	var players := []
	for i in 400:
		players.append({"player_id": 100000 + rng.randi_range(0, 899999),
				"name": NAME_HEADS[rng.randi() % NAME_HEADS.size()] + NAME_TAILS[rng.randi() % NAME_TAILS.size()] + str(rng.randi_range(1, 999)),
				"guild": GUILDS[rng.randi() % GUILDS.size()], "base": rng.randi_range(1000, 90000),
				"level": rng.randi_range(1, 60)})
	rng.seed = 777 + v  # what changed since the last version
	for p in players:
		p["score"] = p["base"] + rng.randi_range(0, 2500) * (v + 1)
	players.sort_custom(func(a: Dictionary, b: Dictionary) -> bool: return a["score"] > b["score"])
	var doc := {"season": 14, "board": "ranked_solo", "version": 5000 + v, "entries": []}
	var text := ""
	for i in players.size():
		var p: Dictionary = players[i]
		doc["entries"].append({"rank": i + 1, "player_id": p["player_id"], "name": p["name"],
				"guild": p["guild"], "score": p["score"], "level": p["level"],
				"wins": p["score"] / 300 + rng.randi_range(0, 20),
				"losses": p["score"] / 450 + rng.randi_range(0, 20),
				"last_seen": "2026-12-%02dT%02d:%02d:%02dZ" % [rng.randi_range(1, 3), rng.randi_range(0, 23), rng.randi_range(0, 59), rng.randi_range(0, 59)]})
		var t := JSON.stringify(doc)
		if t.length() > size:
			break
		text = t
	var out := text.to_utf8_buffer()
	var pad := size - out.size()
	out.resize(size)
	for i in pad:
		out[size - pad + i] = 0x20
	return out


## A game's world for the `payload=game` snapshot: 100 entities that walk, run, stop and turn
## a little each tick, seeded so every class sends the same sequence.
class World:
	var ids := PackedInt32Array()
	var pos := PackedVector3Array()
	var vel := PackedVector3Array()
	var state := PackedInt32Array()  # 0 idle, 1 walk, 2 run, 3 attack
	var rng := RandomNumberGenerator.new()

	func _init(n: int) -> void:
		rng.seed = 42
		for i in n:
			ids.append(1000 + i)
			pos.append(Vector3(rng.randf_range(-200, 200), 0.0, rng.randf_range(-200, 200)))
			state.append(rng.randi_range(0, 3))
			vel.append(velocity_for(state[i], rng.randf_range(0, TAU)))

	func velocity_for(s: int, heading: float) -> Vector3:
		var speed: float = [0.0, 1.5, 5.0, 0.5][s]
		return Vector3(cos(heading), 0.0, sin(heading)) * speed

	func step(dt: float) -> void:
		for i in ids.size():
			if rng.randf() < 1.0 / 120.0:  # about every 2 s an entity changes what it does
				state[i] = rng.randi_range(0, 3)
				vel[i] = velocity_for(state[i], rng.randf_range(0, TAU))
			elif state[i] != 0:
				vel[i] = vel[i].rotated(Vector3.UP, rng.randf_range(-0.05, 0.05))
			pos[i] += vel[i] * dt

	func snapshot() -> PackedByteArray:
		var entities := []
		for i in ids.size():
			entities.append({"id": ids[i], "pos": pos[i], "vel": vel[i], "state": state[i]})
		return var_to_bytes({"entities": entities})


# --------------------------------------------------------------------------------------------
# 1. One-way throughput, client -> server

func tp_server() -> void:
	if not start_server() or not await wait_peers(1, 15.0):
		return
	var warmup_us := int(argf("warmup", 0.5) * 1e6)
	var duration_us := int(argf("duration", 2.0) * 1e6)
	var n := 0          # data packets received
	var b := 0          # data bytes received
	var first_us := -1
	var win_start := -1
	var n0 := 0
	var b0 := 0
	var stopped := false
	var res := {}
	var fin := -1
	var last_ack := 0
	var frames := 0
	var stats0 := {}
	var end_ms := Time.get_ticks_msec() + int(argf("timeout", 30.0) * 1000.0)
	while not _finished:
		peer.poll()
		while peer.get_available_packet_count() > 0:
			var p: PackedByteArray = peer.get_packet()
			var sz := p.size()
			if sz == CTRL_SIZE:
				if p[0] == T_FIN:
					fin = p.decode_u64(1)
			else:
				n += 1
				b += sz
		var t := now_us()
		frames += 1
		if first_us < 0 and n > 0:
			first_us = t
		if win_start < 0 and first_us >= 0 and t - first_us >= warmup_us:
			win_start = t
			n0 = n
			b0 = b
			frames = 0
			stats0 = traffic()
			print("@@WINDOW start")
		if win_start >= 0 and not stopped and t - win_start >= duration_us:
			var secs := (t - win_start) / 1e6
			res = {"packets": n - n0, "bytes": b - b0, "seconds": secs,
					"pps": (n - n0) / secs, "mbps": (b - b0) / secs / 1e6,
					"frames": frames, "size": argi("size", 0)}
			res.merge(traffic_delta(stats0, traffic()))
			stopped = true
			print("@@WINDOW end")
			peer.put_packet(ctrl(T_STOP, 0))
		if n != last_ack:
			last_ack = n
			peer.put_packet(ctrl(T_ACK, n))
		if fin >= 0 and n >= fin:
			break
		if Time.get_ticks_msec() > end_ms:
			break
		await process_frame
	res["received_total"] = n
	res["sent_total"] = fin
	res["complete"] = fin >= 0 and n == fin
	result(res)
	peer.put_packet(ctrl(T_DONE, n))
	await drain_frames(0.3)


func tp_client() -> void:
	if not await start_client():
		return
	var size := argi("size", 1024)
	var payload := PackedByteArray()
	payload.resize(size)
	for i in size:
		payload[i] = i & 0xFF
	if size == CTRL_SIZE:
		payload.resize(size + 1)
		size += 1
	var pool: Array[PackedByteArray] = []
	match A.get("payload", ""):
		"json":
			for v in 16:
				pool.append(leaderboard_json(v, size))
		"random":
			var crypto := Crypto.new()
			for v in 16:
				pool.append(crypto.generate_random_bytes(size))
	var next := 0
	var win_pkts := argi("window_pkts", 16384)
	var win_bytes := argi("window_bytes", 2 * 1024 * 1024)
	win_pkts = maxi(1, mini(win_pkts, win_bytes / size))
	var sent := 0
	var acked := 0
	var errors := 0
	var stop := false
	var fin_sent := false
	var done := false
	while not _finished and not done:
		peer.poll()
		while peer.get_available_packet_count() > 0:
			var p: PackedByteArray = peer.get_packet()
			if p.size() == CTRL_SIZE:
				match p[0]:
					T_ACK: acked = p.decode_u64(1)
					T_STOP: stop = true
					T_DONE: done = true
		if stop:
			if not fin_sent:
				if peer.put_packet(ctrl(T_FIN, sent)) == OK:
					fin_sent = true
		else:
			var room := win_pkts - (sent - acked)
			for i in room:
				if not pool.is_empty():
					payload = pool[next]
					next = (next + 1) % pool.size()
				if peer.put_packet(payload) != OK:
					errors += 1
					break
				sent += 1
		await process_frame
	result({"sent": sent, "put_errors": errors, "size": size})


# --------------------------------------------------------------------------------------------
# 3. Round trip: 32 B echoed by the server in the frame it arrives

func rtt_server() -> void:
	if not start_server() or not await wait_peers(1, 15.0):
		return
	var echoed := 0
	var bye := false
	while not _finished and not bye:
		peer.poll()
		while peer.get_available_packet_count() > 0:
			var p: PackedByteArray = peer.get_packet()
			if p.size() == RTT_SIZE:
				peer.put_packet(p)
				echoed += 1
			else:
				bye = true
		await process_frame
	result({"echoed": echoed})
	await drain_frames(0.2)


func rtt_client() -> void:
	if not await start_client():
		return
	var warm := argi("warm", 200)
	var count := argi("count", 5000)
	var ping := PackedByteArray()
	ping.resize(RTT_SIZE)
	var samples := PackedInt64Array()
	var got := 0
	var t_sent := now_us()
	peer.put_packet(ping)
	var frames := 0
	var timeouts := 0
	while not _finished and got < warm + count:
		peer.poll()
		frames += 1
		var replied := false
		while peer.get_available_packet_count() > 0:
			var p: PackedByteArray = peer.get_packet()
			if p.size() == RTT_SIZE:
				replied = true
		var t := now_us()
		if replied:
			if got >= warm:
				samples.append(t - t_sent)
			got += 1
			t_sent = now_us()
			peer.put_packet(ping)
		elif t - t_sent > 2000000:
			timeouts += 1
			t_sent = now_us()
			peer.put_packet(ping)
			if timeouts > 3:
				print("@@ERROR rtt: no echo for 2 s, 4 times")
				break
		await process_frame
	peer.put_packet(ctrl(T_FIN, got))
	var strs := PackedStringArray()
	for s in samples:
		strs.append(str(s))
	print("@@SAMPLES " + ",".join(strs))
	result({"round_trips": samples.size(), "frames": frames, "timeouts": timeouts})
	await drain_frames(0.2)


# --------------------------------------------------------------------------------------------
# 4. SceneMultiplayer: reliable @rpc calls client -> server

func make_rpc_node() -> Node:
	var s := GDScript.new()
	s.source_code = RPC_NODE_SRC
	s.reload()
	var n := Node.new()
	n.set_script(s)
	n.name = "Bench"
	root.add_child(n)
	_rpc_node = n
	return n


func rpc_server() -> void:
	var node := make_rpc_node()
	if not start_server():
		return
	root.multiplayer.multiplayer_peer = peer
	var end_ms := Time.get_ticks_msec() + 15000
	while root.multiplayer.get_peers().is_empty():
		if Time.get_ticks_msec() > end_ms or _finished:
			print("@@ERROR rpc: no client")
			return
		await process_frame
	var client: int = root.multiplayer.get_peers()[0]
	var warmup_us := int(argf("warmup", 0.5) * 1e6)
	var duration_us := int(argf("duration", 2.0) * 1e6)
	var first_us := -1
	var win_start := -1
	var c0 := 0
	var stopped := false
	var res := {}
	var last_ack := 0
	end_ms = Time.get_ticks_msec() + int(argf("timeout", 30.0) * 1000.0)
	while not _finished:
		await process_frame  # SceneMultiplayer polls and dispatches the calls
		var t := now_us()
		var calls: int = node.calls
		if first_us < 0 and calls > 0:
			first_us = t
		if win_start < 0 and first_us >= 0 and t - first_us >= warmup_us:
			win_start = t
			c0 = calls
		if win_start >= 0 and not stopped and t - win_start >= duration_us:
			var secs := (t - win_start) / 1e6
			res = {"calls": calls - c0, "seconds": secs, "cps": (calls - c0) / secs}
			stopped = true
			node.rpc_id(client, "stop_sending")
		if calls != last_ack:
			last_ack = calls
			node.rpc_id(client, "ack", calls)
		if node.fin >= 0 and calls >= node.fin:
			break
		if Time.get_ticks_msec() > end_ms:
			break
	res["received_total"] = node.calls
	res["sent_total"] = node.fin
	res["complete"] = node.fin >= 0 and node.calls == node.fin
	result(res)
	node.rpc_id(client, "all_done")
	var linger := Time.get_ticks_msec() + 300
	while Time.get_ticks_msec() < linger:
		await process_frame


func rpc_client() -> void:
	var node := make_rpc_node()
	if not await start_client():
		return
	# SceneMultiplayer learns about the server from a connection it saw itself: wait for it.
	var end_ms0 := Time.get_ticks_msec() + 10000
	while not root.multiplayer.get_peers().has(1):
		if Time.get_ticks_msec() > end_ms0 or _finished:
			print("@@ERROR rpc: SceneMultiplayer never saw the server")
			return
		await process_frame
	var window := argi("window_calls", 4096)
	var sent := 0
	var fin_sent := false
	var end_ms := Time.get_ticks_msec() + int(argf("timeout", 30.0) * 1000.0)
	while not _finished and not node.done and Time.get_ticks_msec() < end_ms:
		if node.stop:
			if not fin_sent:
				node.rpc_id(1, "finished", sent)
				fin_sent = true
		else:
			var room: int = window - (sent - node.acked)
			for i in room:
				node.rpc_id(1, "hit", sent)
				sent += 1
		await process_frame
	result({"sent": sent})


# --------------------------------------------------------------------------------------------
# 2 + 5. Idle connections: poll() cost per stage (the runner reads VmRSS between stages)

## Median per-poll cost in µs, timing batches of polls (a batch lasts >= ~1 ms so the 1 µs
## clock resolution does not matter).
func measure_poll(seconds: float) -> Dictionary:
	for i in 20:
		peer.poll()
	var t0 := now_us()
	for i in 20:
		peer.poll()
	var est := maxf((now_us() - t0) / 20.0, 0.05)
	var batch := clampi(int(ceil(1000.0 / est)), 1, 20000)
	var per := PackedFloat64Array()
	var total_polls := 0
	var end := now_us() + int(seconds * 1e6)
	while now_us() < end or per.size() < 5:
		var a := now_us()
		for i in batch:
			peer.poll()
		var d := now_us() - a
		per.append(float(d) / batch)
		total_polls += batch
		if per.size() >= 2000:
			break
	per.sort()
	var n := per.size()
	return {"poll_us": per[n / 2], "poll_us_p10": per[n / 10], "poll_us_p90": per[(n * 9) / 10],
			"batches": n, "batch": batch, "polls": total_polls}


func idle_server() -> void:
	if not start_server():
		return
	var stages: PackedStringArray = String(A.get("stages", "0,10,100,1000")).split(",", false)
	var seconds := argf("poll_seconds", 1.0)
	var settle_ms := int(argf("settle", 0.5) * 1000.0)
	for s in stages:
		var n := int(s)
		var end := Time.get_ticks_msec() + int(argf("stage_timeout", 60.0) * 1000.0)
		while _connected < n:
			if Time.get_ticks_msec() > end or _finished:
				print("@@ERROR idle: %d of %d peers connected" % [_connected, n])
				return
			peer.poll()
			await process_frame
		# Let the last handshakes finish and the runtime settle.
		var settle_end := Time.get_ticks_msec() + settle_ms
		while Time.get_ticks_msec() < settle_end:
			peer.poll()
			await process_frame
		var r := measure_poll(seconds)
		r["peers"] = _connected
		r["stage"] = n
		print("@@STAGE " + JSON.stringify(r))
		# Stay idle (polling) while the runner reads VmRSS and opens the next stage.
	result({"stages": stages.size()})


# --------------------------------------------------------------------------------------------
# 6. Fan-out: a snapshot broadcast to every client at 60 Hz

func fanout_server() -> void:
	if not start_server():
		return
	var n := argi("clients", 500)
	var end := Time.get_ticks_msec() + int(argf("stage_timeout", 60.0) * 1000.0)
	while _connected < n:
		if Time.get_ticks_msec() > end or _finished:
			print("@@ERROR fanout: %d of %d peers connected" % [_connected, n])
			return
		peer.poll()
		await process_frame
	print("@@STAGE " + JSON.stringify({"peers": _connected}))
	var hz := argi("hz", 60)
	var ticks := int(argf("duration", 10.0) * hz)
	var snapshot := PackedByteArray()
	snapshot.resize(argi("size", 1024))
	for i in snapshot.size():
		snapshot[i] = (i * 7) & 0xFF
	var world: World = World.new(100) if A.get("payload", "") == "game" else null
	var payload_bytes := 0
	var build_us := 0  # making the snapshots, the game's own work (the runner subtracts it)
	# A steady 60 Hz loop: the main loop sleeps between frames like a game's would.
	Engine.max_fps = hz
	for i in 30:
		peer.poll()
		await process_frame
	var costs := PackedFloat64Array()
	var put_errors := 0
	var received := 0
	var intervals := PackedFloat64Array()
	var prev := now_us()
	var t_start := prev
	# Each frame's wall time split three ways: the main thread's own CPU time (its thread CPU
	# clock, exact to the call; schedstat's run time only advances at scheduler events), time
	# runnable but waiting for a CPU (schedstat's run delay, counted when the thread gets the CPU
	# back) and the rest, time blocked (a lock, a syscall). And where the wall time went: poll(),
	# draining the inputs, put_packet. The clocks are read outside the timed part.
	var parts := {}
	for k in FRAME_KEYS:
		parts[k] = PackedFloat64Array()
	var runtime_tids := runtime_threads()
	var stats0 := traffic()
	print("@@WINDOW start")
	for tick in ticks:
		if world != null:  # the game's own work, outside the timed part
			var b0 := now_us()
			world.step(1.0 / hz)
			snapshot = world.snapshot()
			build_us += now_us() - b0
			payload_bytes += snapshot.size()
		var r0 := runtime_run_ns(runtime_tids)
		var v0 := ctxt_switches()
		var s0 := schedstat()
		var c0 := thread_cpu_us()
		var t0 := now_us()
		intervals.append((t0 - prev) / 1000.0)
		prev = t0
		peer.poll()
		var t1 := now_us()
		while peer.get_available_packet_count() > 0:
			peer.get_packet()
			received += 1
		var t2 := now_us()
		snapshot.encode_u32(0, tick)
		peer.set_target_peer(0)
		if peer.put_packet(snapshot) != OK:
			put_errors += 1
		var t3 := now_us()
		var c1 := thread_cpu_us()
		var s1 := schedstat()
		var v1 := ctxt_switches()
		var r1 := runtime_run_ns(runtime_tids)
		var wall_ms := (t3 - t0) / 1000.0
		var cpu_ms := (c1 - c0) / 1000.0 if c0 >= 0 else (s1[0] - s0[0]) / 1e6
		# Waits for a CPU just outside the timed part (reading the clocks) count in schedstat
		# but not in the wall time: at most what the wall time leaves.
		var runq_ms := clampf((s1[1] - s0[1]) / 1e6, 0.0, maxf(0.0, wall_ms - cpu_ms))
		costs.append(wall_ms)
		parts["oncpu"].append(cpu_ms)
		parts["runq"].append(runq_ms)
		parts["blocked"].append(maxf(0.0, wall_ms - cpu_ms - runq_ms))
		parts["poll"].append((t1 - t0) / 1000.0)
		parts["drain"].append((t2 - t1) / 1000.0)
		parts["put"].append((t3 - t2) / 1000.0)
		parts["switches"].append(float(s1[2] - s0[2]))
		parts["involuntary"].append(float(v1[1] - v0[1]))
		parts["runtime"].append((r1 - r0) / 1e6)
		parts["voluntary"].append(float(v1[0] - v0[0]))
		await process_frame
	var wall := (now_us() - t_start) / 1e6
	print("@@WINDOW end")
	# Keep polling (the built-in writes queued data in poll()) until the runner has counted.
	var linger := Time.get_ticks_msec() + int(argf("linger", 1.5) * 1000.0)
	while Time.get_ticks_msec() < linger:
		peer.poll()
		while peer.get_available_packet_count() > 0:
			peer.get_packet()
			received += 1
		await process_frame
	var traffic_out := traffic_delta(stats0, traffic())
	var sorted := costs.duplicate()
	sorted.sort()
	var isorted := intervals.duplicate()
	isorted.sort()
	var m := sorted.size()
	var mean := 0.0
	for c in costs:
		mean += c
	# Frames slower than 3x the median: what their time was made of (shares of their wall time).
	var slow := 0
	var slow_ms := 0.0
	var slow_sums := {}
	for k in FRAME_KEYS:
		slow_sums[k] = 0.0
	for i in m:
		if costs[i] > 3.0 * sorted[m / 2]:
			slow += 1
			slow_ms += costs[i]
			for k in FRAME_KEYS:
				slow_sums[k] += parts[k][i] if k in COUNT_KEYS else minf(parts[k][i], costs[i])
	var frame := {"cpu_clock": thread_cpu_us() >= 0, "slow_frames": slow}
	for k in FRAME_KEYS:
		var ks: PackedFloat64Array = parts[k].duplicate()
		ks.sort()
		var unit := "" if k in COUNT_KEYS else "_ms"
		frame[k + unit + "_p50"] = ks[m / 2]
		frame[k + unit + "_p99"] = ks[mini(m - 1, (m * 99) / 100)]
		if slow:
			frame["slow_" + k + "_share"] = slow_sums[k] / (float(slow) if k in COUNT_KEYS else slow_ms)
	frame.merge({"ticks": ticks, "peers": _connected, "put_errors": put_errors, "wall_s": wall,
			"received": received, "snapshot_bytes_mean": float(payload_bytes) / ticks if world != null else float(snapshot.size()),
			"traffic": traffic_out, "build_us": build_us,
			"ms_p50": sorted[m / 2], "ms_p99": sorted[mini(m - 1, (m * 99) / 100)],
			"ms_max": sorted[m - 1], "ms_mean": mean / m,
			"interval_ms_p50": isorted[m / 2], "interval_ms_p99": isorted[mini(m - 1, (m * 99) / 100)]})
	result(frame)
