## api_local: one class on its own, one process. Defaults and setters, a fresh peer's errors,
## invalid URLs, a port in use, create_* on an active peer, unknown ids, a client to a closed
## port (connection_failed). Role: main. Uses ports port..port+2.
extends "res://tests/lib/base.gd"


func run_main() -> void:
	await defaults_and_setters()
	fresh_peer()
	bad_urls()
	server_errors()
	await closed_port()


func defaults_and_setters() -> void:
	var p: Object = make_peer()
	check(p is MultiplayerPeer, "is_multiplayer_peer", "class %s" % p.get_class())
	expect_eq(p.get_connection_status(), DISCONNECTED, "status")
	expect_eq(p.get_unique_id(), 0, "unique_id")
	expect_eq(p.get_available_packet_count(), 0, "available_packet_count")
	expect_eq(p.handshake_timeout, 3.0, "default_handshake_timeout")
	expect_eq(p.inbound_buffer_size, 65535, "default_inbound_buffer_size")
	expect_eq(p.outbound_buffer_size, 65535, "default_outbound_buffer_size")
	expect_eq(p.max_queued_packets, 4096, "default_max_queued_packets")
	expect_eq(p.supported_protocols, PackedStringArray(), "default_supported_protocols")
	expect_eq(p.handshake_headers, PackedStringArray(), "default_handshake_headers")
	expect_eq(p.refuse_new_connections, false, "default_refuse_new_connections")
	expect_eq(p.transfer_mode, MultiplayerPeer.TRANSFER_MODE_RELIABLE, "default_transfer_mode")
	expect_eq(p.transfer_channel, 0, "default_transfer_channel")
	expect_eq(p.is_server_relay_supported(), true, "server_relay_supported")

	# Setters, through the methods and through the properties (set()/get()).
	p.set_handshake_timeout(1.5)
	expect_eq(p.get_handshake_timeout(), 1.5, "set_handshake_timeout")
	p.set("inbound_buffer_size", 131072)
	expect_eq(p.get("inbound_buffer_size"), 131072, "set_inbound_buffer_size")
	p.outbound_buffer_size = 100000
	expect_eq(p.get_outbound_buffer_size(), 100000, "set_outbound_buffer_size")
	p.max_queued_packets = 100
	expect_eq(p.get_max_queued_packets(), 100, "set_max_queued_packets")
	p.supported_protocols = PackedStringArray(["one", "two"])
	expect_eq(p.get_supported_protocols(), PackedStringArray(["one", "two"]), "set_supported_protocols")
	p.handshake_headers = PackedStringArray(["X-Test: 1"])
	expect_eq(p.get_handshake_headers(), PackedStringArray(["X-Test: 1"]), "set_handshake_headers")
	p.transfer_mode = MultiplayerPeer.TRANSFER_MODE_UNRELIABLE
	expect_eq(p.get_transfer_mode(), MultiplayerPeer.TRANSFER_MODE_UNRELIABLE, "set_transfer_mode")
	p.transfer_channel = 3
	expect_eq(p.get_transfer_channel(), 3, "set_transfer_channel")
	p.refuse_new_connections = true
	expect_eq(p.is_refusing_new_connections(), true, "set_refuse_new_connections")
	# Settings survive a server lifetime and apply to it.
	expect_eq(p.create_server(port), OK_, "create_server_with_settings")
	expect_eq(p.get_handshake_timeout(), 1.5, "handshake_timeout_kept")
	p.close()
	expect_eq(p.get_connection_status(), DISCONNECTED, "closed")
	expect_eq(p.get_unique_id(), 0, "unique_id_after_close")
	p.close()  # twice is harmless
	expect_eq(p.create_server(port), OK_, "reusable_after_close")
	drop_peer(p)


func fresh_peer() -> void:
	var p: Object = make_peer()
	mark("fresh_put_packet")
	expect_eq(p.put_packet(PackedByteArray([1, 2, 3])), ERR_UNCONFIGURED, "fresh_put_packet")
	mark("fresh_get_packet")
	expect_eq(p.get_packet(), PackedByteArray(), "fresh_get_packet_empty")
	expect_eq(p.get_packet_error(), ERR_UNCONFIGURED, "fresh_get_packet_error")
	mark("fresh_unknown_peer")
	expect_eq(p.get_peer(1), null, "fresh_get_peer")
	expect_eq(str(p.get_peer_address(1)), "", "fresh_get_peer_address")
	expect_eq(p.get_peer_port(1), 0, "fresh_get_peer_port")
	mark("end")
	p.poll()  # harmless on a fresh peer
	expect_eq(p.get_connection_status(), DISCONNECTED, "fresh_status_after_poll")
	drop_peer(p)


func bad_urls() -> void:
	var cases := {
		"bad_url_http": "http://x",
		"bad_url_ftp": "ftp://x",
		"bad_url_empty": "",
		"bad_url_nohost": "ws://",
		"bad_url_wssx": "wss+x://h",
	}
	var p: Object = make_peer()
	for name in cases:
		mark(name)
		expect_eq(p.create_client(cases[name]), ERR_INVALID_PARAMETER, name)
		expect_eq(p.get_connection_status(), DISCONNECTED, name + "_status")
		expect_eq(p.get_unique_id(), 0, name + "_unique_id")
	mark("end")
	drop_peer(p)


func server_errors() -> void:
	var s: Object = make_peer()
	expect_eq(s.create_server(port + 1), OK_, "create_server")
	expect_eq(s.get_connection_status(), CONNECTED, "server_status")
	expect_eq(s.get_unique_id(), 1, "server_unique_id")
	var other: Object = make_peer()
	mark("port_in_use")
	expect_eq(other.create_server(port + 1), ERR_ALREADY_IN_USE, "port_in_use")
	mark("end")
	expect_eq(other.get_connection_status(), DISCONNECTED, "port_in_use_status")
	expect_eq(other.get_unique_id(), 0, "port_in_use_unique_id")
	expect_eq(other.create_server(port + 2), OK_, "reusable_after_port_in_use")
	drop_peer(other)
	mark("server_on_active")
	expect_eq(s.create_server(port + 2), ERR_ALREADY_IN_USE, "create_server_on_server")
	mark("client_on_active")
	expect_eq(s.create_client("ws://127.0.0.1:%d" % (port + 2)), ERR_ALREADY_IN_USE,
			"create_client_on_server")
	mark("end")
	expect_eq(s.get_connection_status(), CONNECTED, "server_still_connected")
	expect_eq(s.get_unique_id(), 1, "server_still_id_1")
	mark("unknown_target")
	s.set_target_peer(12345)
	expect_eq(s.put_packet(PackedByteArray([1])), ERR_INVALID_PARAMETER, "put_to_unknown_target")
	mark("server_unknown_peer")
	expect_eq(s.get_peer(12345), null, "get_peer_unknown")
	expect_eq(str(s.get_peer_address(12345)), "", "get_peer_address_unknown")
	expect_eq(s.get_peer_port(12345), 0, "get_peer_port_unknown")
	mark("end")
	s.set_target_peer(0)
	expect_eq(s.put_packet(PackedByteArray([1])), OK_, "put_to_all_with_no_peers")
	expect_eq(s.get_available_packet_count(), 0, "server_nothing_queued")
	mark("server_empty_get")
	expect_eq(s.get_packet(), PackedByteArray(), "server_get_packet_nothing_queued")
	expect_eq(s.get_packet_error(), ERR_UNAVAILABLE, "server_get_packet_error_unavailable")
	mark("end")
	drop_peer(s)


func closed_port() -> void:
	# Nothing listens on port+2 any more (closed above).
	var c: Object = make_peer()
	watch(c, "c")
	var t0 := Time.get_ticks_msec()
	expect_eq(c.create_client("ws://127.0.0.1:%d" % (port + 2)), OK_, "closed_port_create_client")
	expect_eq(c.get_connection_status(), CONNECTING, "closed_port_connecting")
	var mp := attach_multiplayer(c, "/root/C")
	watch(mp, "mp")
	if check(await wait_signal_count("mp", "connection_failed", 1, 5.0), "closed_port_connection_failed",
			"status %d, events %s" % [c.get_connection_status(), events]):
		info("closed port failed after %d ms" % (Time.get_ticks_msec() - t0))
		expect_eq(c.get_connection_status(), DISCONNECTED, "closed_port_disconnected")
		expect_eq(c.get_unique_id(), 0, "closed_port_unique_id")
		expect_eq(got("c", "peer_connected") + got("c", "peer_disconnected"), [], "closed_port_no_peer_signals")
		expect_eq(count("mp", "server_disconnected"), 0, "closed_port_no_server_disconnected")
	# The peer can be used again.
	var s: Object = make_peer()
	expect_eq(s.create_server(port + 2), OK_, "closed_port_server_again")
	mp.multiplayer_peer = null
	expect_eq(c.create_client("ws://127.0.0.1:%d" % (port + 2)), OK_, "reuse_client_after_failure")
	polled.append(c)
	polled.append(s)
	check(await wait_status(c, CONNECTED, 5.0), "reused_client_connects", "status %d" % c.get_connection_status())
