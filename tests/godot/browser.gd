## browser: a Godot server of one class against the JavaScript client in godot-project/web/
## (RwsmpClient in headless Chromium, driven by tests/browser_hook.py). The page sends five known
## packets, then echoes every server packet with a leading 0xEE byte; this side checks the
## browser's peer id, the exact bytes and their source, sends four known packets (one broadcast,
## three to the peer) and checks the echoes, then disconnects the browser with
## disconnect_peer(id) (the page reports the close code to the hook).
## With compression=1 (rust only, browser_compressed) the server has compression_enabled:
## Chromium's permessage-deflate offer must be accepted, the same bytes must arrive both ways,
## and get_peer_stats() must show fewer bytes on the wire than in the packets.
## Roles: server (and "py", the hook, as a barrier party).
extends "res://tests/lib/base.gd"

const ECHO_PREFIX := 0xEE


static func pat(size: int, mul: int, add: int) -> PackedByteArray:
	var b := PackedByteArray()
	b.resize(size)
	for i in size:
		b[i] = (i * mul + add) & 0xFF
	return b


static func bytes(values: Array) -> PackedByteArray:
	return PackedByteArray(values)


func _browser_gone() -> bool:
	return has_flag("browser_failed")


func run_server() -> void:
	# Must match PACKETS in godot-project/web/index.html and tests/browser_hook.py.
	var from_page: Array = [bytes([1, 2, 3]), "hello from the browser".to_utf8_buffer(),
			bytes([0x00, 0xFF, 0x80, 0x7F]), pat(300, 7, 1), pat(20000, 31, 7)]
	var to_page: Array = [bytes([0xDE, 0xAD, 0xBE, 0xEF]), "hello from godot".to_utf8_buffer(),
			pat(1000, 13, 5), pat(40000, 17, 3)]

	var compressed: bool = args.get("compression", "0") == "1"
	var p: Object
	if compressed:
		p = make_peer()
		p.compression_enabled = true
		p.compression_threshold = 0
		watch(p, "peer")
		expect_eq(p.create_server(port), OK_, "create_server")
		polled.append(p)
		flag("server_ready")
	else:
		p = serve_raw()

	var connected := func() -> bool: return count("peer", "peer_connected") > 0 or _browser_gone()
	# Chromium may take up to 2 x 60 s to start (tests/cdp.py); a failed start ends this early.
	await wait_until(connected, 140.0, "the browser's connection")
	if not check(count("peer", "peer_connected") == 1, "browser_connected",
			"peer_connected %s (the python hook says why)" % [got("peer", "peer_connected")]):
		await barrier("done", 20.0)
		return
	var id: int = got("peer", "peer_connected")[0]
	put_value("browser_id", id)
	flag("browser_id_set")
	check(id >= 2, "browser_id_range", "id %d" % id)
	expect_eq(p.get_peer_address(id), "127.0.0.1", "browser_address")

	# The page's packets, in order, from the browser's id.
	var received := await receive(p, from_page.size(), 10.0, "page_packets_arrived", _browser_gone)
	expect_packets(received, from_page, id, "page_packets", "page_packet_source")

	# Known packets to the page: the first broadcast (target 0), the others to its id.
	p.set_target_peer(0)
	expect_eq(p.put_packet(to_page[0]), OK_, "put_broadcast")
	p.set_target_peer(id)
	for i in range(1, to_page.size()):
		expect_eq(p.put_packet(to_page[i]), OK_, "put_%d" % i)

	var echoes := await receive(p, to_page.size(), 10.0, "echoes_arrived", _browser_gone)
	var want: Array = to_page.map(func(x: PackedByteArray) -> PackedByteArray:
		var e := bytes([ECHO_PREFIX])
		e.append_array(x)
		return e)
	expect_packets(echoes, want, id, "echoes", "echo_source")
	if compressed:
		var ext: String = p.get_peer(id).get_negotiated_extensions()
		check(ext.begins_with("permessage-deflate"), "browser_deflate", "extensions %s" % ext)
		var st: Dictionary = p.get_peer_stats(id)
		check(st.wire_bytes_in < st.bytes_in / 2 and st.wire_bytes_out < st.bytes_out / 2,
				"browser_deflate_stats", "%s" % st)

	p.disconnect_peer(id)
	check(await wait_until(func() -> bool: return got("peer", "peer_disconnected").has(id), 5.0,
			"the browser's disconnection"), "browser_disconnected", "events %s" % [events["peer"]])
	expect_eq(drain(p), [], "nothing_else_received")
	await barrier("done", 20.0)
