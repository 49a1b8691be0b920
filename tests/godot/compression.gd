## compression: permessage-deflate with third-party peers (tests/compression_hook.py, Python's
## `websockets` and the raw client) and, unchanged, with the built-in peer.
## 1. A rust server with compression on echoes every message (raw mode): the hook's clients
##    negotiate the extension and get their messages back intact; a decompression bomb is
##    refused with 1009 and an error naming the limit; get_stats() tells the payload before
##    and after compression.
## 2. A rust client with compression on connects to `websockets` as a server (port+1) and
##    echoes what it sends; the extension was agreed.
## 3. Mixed pairs, compression on for the rust side: a built-in client of a rust server
##    (port+2) and a rust client of a built-in server (port+3) agree on nothing and exchange
##    packets as before.
extends "res://tests/lib/base.gd"

const BIG := 1 << 20

var echoing: Array = []
## The extensions each of the rust server's peers negotiated.
var server_exts: Array = []


## A rust peer for the hook's messages: raw mode, compression on above 64 bytes, buffers of
## BIG.
func echo_peer() -> Object:
	var p: Object = make_peer()
	p.godot_protocol = false
	p.compression_enabled = true
	p.compression_threshold = 64
	p.inbound_buffer_size = BIG
	p.outbound_buffer_size = BIG
	return p


func run_main() -> void:
	var srv: Object = echo_peer()
	watch(srv, "srv")
	srv.peer_connected.connect(func(id: int) -> void:
		server_exts.append(srv.get_peer(id).get_negotiated_extensions()))
	expect_eq(srv.create_server(port), OK_, "create_server")
	polled.append(srv)
	echoing.append(srv)
	process_frame.connect(_echo)
	mark("bomb")
	flag("server_ready")
	await barrier("py_server_side_done", 60.0)
	# The bomb's error is reported with its peer's disconnection: wait until the hook's clients
	# are all gone, so that it is printed before the next mark.
	await wait_until(func() -> bool:
		var ev: Array = events["srv"]
		return (ev.filter(func(e): return e[1] == "peer_connected").size()
				== ev.filter(func(e): return e[1] == "peer_disconnected").size()),
			10.0, "the hook's clients gone")
	var negotiated := server_exts.all(func(e): return e.begins_with("permessage-deflate"))
	check(server_exts.size() >= 3 and negotiated, "server_negotiated",
			"extensions per peer: %s" % [server_exts])
	# The statistics: payload before compression, and after it on the wire (smaller both ways).
	var st: Dictionary = srv.get_stats()
	check(st.wire_bytes_out > 0 and st.wire_bytes_out < st.bytes_out / 2
			and st.wire_bytes_in > 0 and st.wire_bytes_in < st.bytes_in / 2, "stats_before_after",
			"%s" % st)
	mark("client")

	if await wait_flag("py_server_ready", 30.0):
		var cli: Object = echo_peer()
		expect_eq(cli.create_client("ws://127.0.0.1:%d/" % (port + 1)), OK_, "create_client")
		polled.append(cli)
		echoing.append(cli)
		if check(await wait_status(cli, CONNECTED, 10.0), "client_connected", "not connected"):
			var ext: String = cli.get_peer(1).get_negotiated_extensions()
			check(ext.begins_with("permessage-deflate"), "client_negotiated", "got %s" % ext)
	await barrier("py_client_side_done", 60.0)
	mark("mixed")
	await mixed_pair(port + 2, "rust_srv", make_peer(), make_peer(BUILTIN_CLASS))
	await mixed_pair(port + 3, "builtin_srv", make_peer(BUILTIN_CLASS), make_peer())
	echoing.clear()


## Every packet a peer in `echoing` receives goes back to its sender, as the same frame type.
func _echo() -> void:
	for p in echoing:
		while p.get_available_packet_count() > 0:
			var src: int = p.get_packet_peer()
			var pkt: PackedByteArray = p.get_packet()
			p.send_bytes(src, pkt, p.was_string_packet())


## A server and a client of different classes, the rust one with compression on: no extension
## is agreed, and packets of 5 bytes and 3000 bytes arrive intact both ways.
func mixed_pair(at: int, what: String, srv: Object, cli: Object) -> void:
	for p in [srv, cli]:
		if is_rust(p.get_class()):
			p.compression_enabled = true
			p.compression_threshold = 0
		polled.append(p)
	expect_eq(srv.create_server(at, "127.0.0.1"), OK_, what + "_create_server")
	expect_eq(cli.create_client("ws://127.0.0.1:%d" % at), OK_, what + "_create_client")
	if not check(await wait_status(cli, CONNECTED, 10.0), what + "_connected", "not connected"):
		return
	var cid: int = cli.get_unique_id()
	await wait_until(func(): return srv.get_peer(cid) != null,
			5.0, "the server's peer")
	var rust: Object = srv if is_rust(srv.get_class()) else cli
	var handle: Object = rust.get_peer(cid if rust == srv else 1)
	check(handle != null and handle.get_negotiated_extensions() == "", what + "_plain",
			"extensions %s" % ["?" if handle == null else handle.get_negotiated_extensions()])
	var big := PackedByteArray()
	for i in 3000:
		big.append(i % 7)
	for pair in [[srv, cli, cid], [cli, srv, 1]]:
		var from: Object = pair[0]
		var to: Object = pair[1]
		from.set_target_peer(pair[2])
		from.put_packet("hello".to_utf8_buffer())
		from.put_packet(big)
		if not check(await wait_until(func(): return to.get_available_packet_count() >= 2, 5.0,
				"packets"), what + "_delivered", "packets: %d" % to.get_available_packet_count()):
			return
		var a: PackedByteArray = to.get_packet()
		var b: PackedByteArray = to.get_packet()
		check(a.get_string_from_utf8() == "hello" and b == big, what + "_intact",
				"got %d and %d bytes" % [a.size(), b.size()])


func teardown() -> void:
	echoing.clear()
