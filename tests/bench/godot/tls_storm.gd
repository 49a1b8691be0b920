## TLS connection storm, server side, for tests/bench/tls_storm.py: one headless Godot process.
##
##   godot --headless --path <project> -s <abs path>/tls_storm.gd -- \
##         cls=rust port=N dir=/tmp/... clients=200 idle=2 bound=30 after=2 sleep_usec=0 timeout=90
##
## cls: rust (RustWebSocketMultiplayerPeer) | builtin (WebSocketMultiplayerPeer).
##
## 1. Makes an RSA 2048 key and a self-signed certificate (CN=localhost) with Godot's Crypto,
##    as tests/godot/tls.gd does, writes them as PEM files into `dir` (the clients trust
##    dir/cert.pem), loads them back and listens with create_server(port, "127.0.0.1",
##    TLSOptions.server(key, cert)). Prints `@@READY`.
## 2. Polls (not measured) until the runner creates dir/idle.
## 3. Idle baseline: `idle` seconds of frames with nobody connecting. Prints `@@IDLE {json}`.
## 4. Prints `@@STORM` (the runner then releases the clients at once) and measures until all
##    `clients` peers are connected, the runner creates dir/stop (every client has its id or
##    gave up), or `bound` seconds. Prints `@@RESULT {json}`.
## 5. After the storm: `after` seconds of frames with the admitted peers connected and idle.
##    Prints `@@AFTER {json}`, then `@@DONE`, and exits.
##
## Each frame of a measured phase: `frame_us` = time between consecutive process_frame signals
## (the whole main-loop iteration: engine work, this script, the sleep if any) and `poll_us` =
## the peer's poll() alone. The peer is polled by this script (no SceneMultiplayer), once per
## frame, the same way for both classes. Frames are uncapped by default
## (OS.low_processor_usage_mode_sleep_usec = sleep_usec = 0; Godot sleeps what is left of that
## budget after each frame). Every measured phase checks for a flag file every 20 ms, so they
## carry the same overhead. `stall` = frames longer than sleep_usec + 1 ms; their summed time is
## reported.
extends SceneTree

const CLASSES := {
	"rust": "RustWebSocketMultiplayerPeer",
	"builtin": "WebSocketMultiplayerPeer",
}
const STOP_CHECK_US := 20000
const SPIKE_US := 10000      # frames longer than this are listed (time, frame, poll)
const MAX_SPIKES := 400

var A: Dictionary = {}
var cls := ""
var port := 0
var dir := ""
var peer: MultiplayerPeer = null
var _deadline_ms := 0
var _finished := false
var _connected := 0
var _disconnected := 0
var _phase_t0 := 0
var _connect_us := PackedInt64Array()   # storm phase: peer_connected times since its start


func _initialize() -> void:
	for a in OS.get_cmdline_user_args():
		var kv: PackedStringArray = a.split("=", true, 1)
		A[kv[0]] = kv[1] if kv.size() > 1 else ""
	cls = A.get("cls", "rust")
	port = int(A.get("port", "0"))
	dir = A.get("dir", "")
	OS.low_processor_usage_mode_sleep_usec = int(A.get("sleep_usec", "0"))
	_deadline_ms = Time.get_ticks_msec() + int(float(A.get("timeout", "90")) * 1000.0)
	process_frame.connect(_watchdog)
	_main.call_deferred()


func _watchdog() -> void:
	if not _finished and Time.get_ticks_msec() > _deadline_ms:
		print("@@ERROR watchdog: timed out")
		finish(3)


func finish(code: int) -> void:
	if _finished:
		return
	_finished = true
	if peer != null:
		peer.close()
		peer = null
	print("@@DONE")
	quit(code)


func _main() -> void:
	var class_name_: String = CLASSES.get(cls, "")
	if class_name_ == "" or not ClassDB.class_exists(class_name_):
		print("@@ERROR class %s (%s) is not available" % [cls, class_name_])
		finish(2)
		return
	if dir == "" or not DirAccess.dir_exists_absolute(dir):
		print("@@ERROR dir= must name an existing directory")
		finish(2)
		return
	var clients := int(A.get("clients", "200"))

	# Certificate, as a game would ship it: PEM files, loaded back.
	var t0 := Time.get_ticks_msec()
	var crypto := Crypto.new()
	var gen_key := crypto.generate_rsa(2048)
	var gen_cert := crypto.generate_self_signed_certificate(gen_key, "CN=localhost,O=rwsmp tls storm,C=US")
	var keygen_ms := Time.get_ticks_msec() - t0
	if gen_key.save(dir.path_join("key.pem")) != OK or gen_cert.save(dir.path_join("cert.pem")) != OK:
		print("@@ERROR could not write the PEM files into %s" % dir)
		finish(2)
		return
	var key := CryptoKey.new()
	var cert := X509Certificate.new()
	if key.load(dir.path_join("key.pem")) != OK or cert.load(dir.path_join("cert.pem")) != OK:
		print("@@ERROR could not load the PEM files back")
		finish(2)
		return

	peer = ClassDB.instantiate(class_name_)
	peer.peer_connected.connect(_on_peer_connected)
	peer.peer_disconnected.connect(func(_id: int) -> void: _disconnected += 1)
	var err: int = peer.call("create_server", port, "127.0.0.1", TLSOptions.server(key, cert))
	if err != OK:
		print("@@ERROR create_server(%d) with TLS failed: %d" % [port, err])
		finish(2)
		return
	print("@@READY pid=%d port=%d keygen_ms=%d handshake_timeout=%s" % [
			OS.get_process_id(), port, keygen_ms, str(peer.get("handshake_timeout"))])

	# Unmeasured: wait for the runner (its clients are started and waiting).
	var idle_flag := dir.path_join("idle")
	var next_check := 0
	while not _finished:
		var now := Time.get_ticks_usec()
		if now >= next_check:
			next_check = now + STOP_CHECK_US
			if FileAccess.file_exists(idle_flag):
				break
		peer.poll()
		await process_frame
	if _finished:
		return

	var idle := await measure(float(A.get("idle", "2")), -1, "stop")
	idle["connected"] = _connected
	print("@@IDLE " + JSON.stringify(idle))

	_connect_us.clear()
	print("@@STORM")
	var storm := await measure(float(A.get("bound", "30")), clients, "stop")
	if _finished:
		return
	storm["connected"] = _connected
	storm["disconnected"] = _disconnected
	storm["connect_ms"] = Array(_connect_us).map(func(us: int) -> float: return us / 1000.0)
	storm["keygen_ms"] = keygen_ms
	storm["cls"] = cls
	print("@@RESULT " + JSON.stringify(storm))
	var after_s := float(A.get("after", "2"))
	if after_s > 0:
		var after := await measure(after_s, -1, "no_such_flag")
		if _finished:
			return
		after["connected"] = _connected
		print("@@AFTER " + JSON.stringify(after))
	finish(0)


func _on_peer_connected(_id: int) -> void:
	_connected += 1
	if _phase_t0 > 0:
		_connect_us.append(Time.get_ticks_usec() - _phase_t0)


## Measures frames until `seconds` pass, dir/<flag> appears, or (want > 0) `want` peers are
## connected. Returns frame and poll() statistics.
func measure(seconds: float, want: int, flag: String) -> Dictionary:
	var frames := PackedInt32Array()
	var polls := PackedInt32Array()
	var spikes: Array = []
	var stop_flag := dir.path_join(flag)
	var why := "time"
	var t0 := Time.get_ticks_usec()
	_phase_t0 = t0
	var end := t0 + int(seconds * 1000000.0)
	var next_check := t0 + STOP_CHECK_US
	var last := t0
	while not _finished:
		await process_frame
		var now := Time.get_ticks_usec()
		var frame := now - last
		last = now
		var a := Time.get_ticks_usec()
		peer.poll()
		var p := Time.get_ticks_usec() - a
		while peer.get_available_packet_count() > 0:
			peer.get_packet()
		frames.append(frame)
		polls.append(p)
		if frame > SPIKE_US and spikes.size() < MAX_SPIKES:
			spikes.append([(now - t0) / 1000.0, frame, p])
		if want > 0 and _connected >= want:
			why = "all_connected"
			break
		if now >= end:
			break
		if now >= next_check:
			next_check = now + STOP_CHECK_US
			if FileAccess.file_exists(stop_flag):
				why = "stop_flag"
				break
	var elapsed := Time.get_ticks_usec() - t0
	return {
		"seconds": elapsed / 1000000.0,
		"ended_by": why,
		"frames": stats(frames),
		"poll": stats(polls),
		"fps": frames.size() / maxf(elapsed / 1000000.0, 0.000001),
		"spikes": spikes,
	}


func stats(a: PackedInt32Array) -> Dictionary:
	var stall := int(A.get("sleep_usec", "0")) + 1000
	var n := a.size()
	if n == 0:
		return {"n": 0}
	var s := a.duplicate()
	s.sort()
	var total := 0
	for v in s:
		total += v
	return {
		"n": n,
		"mean": float(total) / n,
		"p50": s[n / 2],
		"p90": s[mini(n - 1, n * 90 / 100)],
		"p99": s[mini(n - 1, n * 99 / 100)],
		"p999": s[mini(n - 1, n * 999 / 1000)],
		"max": s[n - 1],
		"stall_us": stall,
		"stalls": n - s.bsearch(stall, false),
		"stall_sum_us": _sum_from(s, s.bsearch(stall, false)),
		"over_16ms": n - s.bsearch(16667, false),
	}


func _sum_from(sorted: PackedInt32Array, i: int) -> int:
	var t := 0
	for k in range(i, sorted.size()):
		t += sorted[k]
	return t
