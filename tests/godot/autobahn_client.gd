## Echo client for Autobahn|Testsuite's fuzzing server (tests/autobahn/run_autobahn_client.py;
## not a test scenario): RustWebSocketMultiplayerPeer in raw mode (godot_protocol = false) runs
## every case (`/runCase?case=N`), sending each message back as the same frame type with
## send_bytes(1, data, was_string_packet()), then asks the server to write its reports.
##
##   godot --headless --path godot-project -s res://tests/autobahn_client.gd -- \
##         url=ws://127.0.0.1:9001 agent=RustWebSocketMultiplayerPeer [buffer=33554432] \
##         [compression=1] [threshold=0] [level=6]
##
## With compression=1 every connection offers permessage-deflate (the suite's server accepts
## it in cases 12.* and 13.* only), compressing messages of `threshold` bytes and up.
##
## Prints `CASES n`, one `CASE i` line per case, and `DONE` (or FAILED and quits with 1).
extends SceneTree

var peer: Object
var base := ""
var agent := ""
var buffer := 32 * 1024 * 1024
var phase := "count"
var case_count := 0
var case_index := 0
var echoed := 0
var deadline := 0
var count_tries := 0
var compression := false
var threshold := 0
var level := 6
var pace = preload("res://tests/lib/idle_pace.gd").new()


func _initialize() -> void:
	var args := {}
	for a in OS.get_cmdline_user_args():
		var kv: PackedStringArray = a.split("=", true, 1)
		args[kv[0]] = kv[1] if kv.size() > 1 else ""
	base = args.get("url", "ws://127.0.0.1:9001")
	agent = args.get("agent", "RustWebSocketMultiplayerPeer")
	buffer = int(args.get("buffer", str(buffer)))
	compression = args.get("compression", "0") == "1"
	threshold = int(args.get("threshold", "0"))
	level = int(args.get("level", "6"))
	OS.low_processor_usage_mode_sleep_usec = 100
	if not _open("/getCaseCount"):
		return
	process_frame.connect(_frame)


func _open(path: String) -> bool:
	peer = ClassDB.instantiate("RustWebSocketMultiplayerPeer")
	if peer == null:
		print("FAILED: RustWebSocketMultiplayerPeer is not registered (extension not loaded?)")
		quit(1)
		return false
	peer.godot_protocol = false
	peer.inbound_buffer_size = buffer
	peer.outbound_buffer_size = buffer
	peer.max_queued_packets = 1 << 20
	# permessage-deflate for cases 12.* and 13.* (the suite offers or accepts it only there).
	peer.compression_enabled = compression
	peer.compression_threshold = threshold
	peer.compression_level = level
	# wstest answers the upgrade in Python after building the case's frames (9.3.1 and 9.4.1
	# make 65,536 of them): on a loaded machine that took over the default 3 s.
	peer.handshake_timeout = 30.0
	var err: int = peer.create_client(base + path)
	if err != OK:
		print("FAILED: create_client(%s) returned %d" % [path, err])
		quit(1)
		return false
	# A case that hangs is the server's to judge; this only keeps the run finite. The
	# permessage-deflate cases (12.*, 13.*: 1000 messages of up to 128 KiB) take the suite's
	# Python about a minute on a loaded machine, and it allows them up to 480 s.
	deadline = Time.get_ticks_msec() + 500000
	return true


func _frame() -> void:
	peer.poll()
	var handled := 0
	while peer.get_available_packet_count() > 0:
		handled += 1
		var pkt: PackedByteArray = peer.get_packet()
		if phase == "count":
			case_count = int(pkt.get_string_from_utf8())
		elif phase == "case":
			if peer.send_bytes(1, pkt, peer.was_string_packet()) == OK:
				echoed += 1
	pace.frame(handled)
	var status: int = peer.get_connection_status()
	var over := status == MultiplayerPeer.CONNECTION_DISCONNECTED
	if not over and Time.get_ticks_msec() > deadline:
		print("TIMEOUT in %s %d" % [phase, case_index])
		peer.close()
		over = true
	if not over:
		return
	match phase:
		"count":
			print("CASES %d" % case_count)
			# The count and the server's close can land in one poll(), and a client's
			# disconnect drops its unread packets (as the built-in's does): ask again.
			count_tries += 1
			if case_count <= 0 and count_tries < 30:
				_open("/getCaseCount")
				return
			if case_count <= 0:
				print("FAILED: no case count from the server")
				quit(1)
				return
			phase = "case"
			case_index = 1
			_open("/runCase?case=%d&agent=%s" % [case_index, agent])
		"case":
			print("CASE %d" % case_index)
			case_index += 1
			if case_index <= case_count:
				_open("/runCase?case=%d&agent=%s" % [case_index, agent])
			else:
				phase = "report"
				_open("/updateReports?agent=%s" % agent)
		"report":
			print("echoed %d messages" % echoed)
			print("DONE")
			process_frame.disconnect(_frame)
			peer = null
			quit(0)
