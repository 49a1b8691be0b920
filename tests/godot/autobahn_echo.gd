## Echo server for Autobahn|Testsuite (tests/autobahn/run_autobahn.py; not a test scenario):
## RustWebSocketMultiplayerPeer in raw mode (godot_protocol = false) on 127.0.0.1, sending every
## message back to its sender as the same frame type with send_bytes(id, data, was_string_packet()),
## which (unlike put_packet) can also send empty messages and text with NUL bytes.
##
##   godot --headless --path godot-project -s res://tests/autobahn_echo.gd -- port=9001 \
##         stop=/tmp/stop-file [buffer=33554432] [sleep_usec=100] [compression=1] [threshold=0] [level=6]
##
## Prints READY once listening (or FAILED and quits), quits when the stop file exists, and
## prints how many messages it echoed. Buffers and max_queued_packets are raised for the suite's
## 16 MiB messages and its bursts of thousands of small ones. With compression=1 it accepts
## permessage-deflate offers, compressing messages of `threshold` bytes and up.
extends SceneTree

var peer: Object
var stop_file: String = ""
var echoed: int = 0
var failed: int = 0
var compression := false
var threshold := 0
var level := 6
var pace = preload("res://tests/lib/idle_pace.gd").new()


func _initialize() -> void:
	var args := {}
	for a in OS.get_cmdline_user_args():
		var kv: PackedStringArray = a.split("=", true, 1)
		args[kv[0]] = kv[1] if kv.size() > 1 else ""
	stop_file = args.get("stop", "")
	pace.busy_usec = int(args.get("sleep_usec", "100"))
	OS.low_processor_usage_mode_sleep_usec = pace.busy_usec
	var buffer := int(args.get("buffer", str(32 * 1024 * 1024)))
	compression = args.get("compression", "0") == "1"
	threshold = int(args.get("threshold", "0"))
	level = int(args.get("level", "6"))
	peer = ClassDB.instantiate("RustWebSocketMultiplayerPeer")
	if peer == null:
		print("FAILED: RustWebSocketMultiplayerPeer is not registered (extension not loaded?)")
		quit(1)
		return
	peer.godot_protocol = false
	peer.inbound_buffer_size = buffer
	peer.outbound_buffer_size = buffer
	peer.max_queued_packets = 1 << 20
	# permessage-deflate for cases 12.* and 13.* (the suite offers or accepts it only there).
	peer.compression_enabled = compression
	peer.compression_threshold = threshold
	peer.compression_level = level
	var err: int = peer.create_server(int(args.get("port", "9001")), "127.0.0.1")
	if err != OK:
		print("FAILED: create_server returned %d" % err)
		quit(1)
		return
	print("READY")
	process_frame.connect(_frame)


func _frame() -> void:
	if stop_file != "" and FileAccess.file_exists(stop_file):
		process_frame.disconnect(_frame)
		print("echoed %d messages, %d refused by send_bytes" % [echoed, failed])
		peer.close()
		peer = null
		quit(0)
		return
	peer.poll()
	var handled := 0
	while peer.get_available_packet_count() > 0:
		handled += 1
		var src: int = peer.get_packet_peer()
		var pkt: PackedByteArray = peer.get_packet()
		# send_bytes: the same frame type, and empty messages too (put_packet cannot send those).
		var err: int = peer.send_bytes(src, pkt, peer.was_string_packet())
		if err == OK:
			echoed += 1
		else:
			failed += 1
	pace.frame(handled)
