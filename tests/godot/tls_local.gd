## tls_local: TLSOptions with one class alone, in one process (role main): wrong kind of
## TLSOptions -> 31 on create_client (wss and ws URLs) and create_server; a key that does not
## match the certificate (rust: 31 and nothing listens; the built-in accepts it); client options
## with a ws:// URL connect in plain text; a wss client and server in one process. Uses ports
## port..port+1. Certificates and URLs as in tls.gd, which this extends.
extends "res://tests/tls.gd"


func run_main() -> void:
	var kc := make_cert()
	var key: CryptoKey = kc[0]
	var cert: X509Certificate = kc[1]
	var other_key := Crypto.new().generate_rsa(2048)
	var p: Object = make_peer()

	mark("tls_server_opts_on_client")
	expect_eq(p.create_client(wss_url(), TLSOptions.server(key, cert)), ERR_INVALID_PARAMETER,
			"server_options_on_wss_client")
	expect_eq(p.create_client("ws://localhost:%d/" % port, TLSOptions.server(key, cert)),
			ERR_INVALID_PARAMETER, "server_options_on_ws_client")
	expect_eq(p.get_connection_status(), DISCONNECTED, "client_status_after_31")
	mark("tls_client_opts_on_server")
	expect_eq(p.create_server(port, "*", TLSOptions.client()), ERR_INVALID_PARAMETER,
			"client_options_on_server")
	expect_eq(p.create_server(port, "*", TLSOptions.client_unsafe()), ERR_INVALID_PARAMETER,
			"client_unsafe_options_on_server")
	expect_eq(p.get_connection_status(), DISCONNECTED, "server_status_after_31")
	mark("tls_key_mismatch")
	var r: int = p.create_server(port, "*", TLSOptions.server(other_key, cert))
	mark("end")
	if is_rust():
		# Refused at once (the built-in listens and fails every handshake instead).
		expect_eq(r, ERR_INVALID_PARAMETER, "mismatched_key_refused")
		expect_eq(p.get_connection_status(), DISCONNECTED, "mismatched_key_status")
	else:
		expect_eq(r, OK_, "builtin_accepts_mismatched_key")
		p.close()
	# Nothing is left listening, and the object is reusable.
	watch(p, "srv")
	expect_eq(p.create_server(port, "*", TLSOptions.server(key, cert)), OK_, "create_server_tls")
	polled.append(p)

	# A wss client in the same process.
	var c: Object = make_peer()
	polled.append(c)
	expect_eq(c.create_client(wss_url(), TLSOptions.client(cert)), OK_, "create_client_tls")
	check(await wait_status(c, CONNECTED, 10.0), "wss_client_connected",
			"status %d" % c.get_connection_status())
	if check(await wait_signal_count("srv", "peer_connected", 1, 5.0), "server_saw_client", ""):
		var sid: int = got("srv", "peer_connected")[0]
		expect_eq(p.get_peer(sid).get_requested_url(), wss_url(), "server_requested_url_wss")
	c.put_packet(PackedByteArray([1, 2, 3]))
	check(await wait_until(func() -> bool: return p.get_available_packet_count() > 0, 5.0,
			"packet"), "wss_packet_arrived", "")
	if p.get_available_packet_count() > 0:
		expect_eq(p.get_packet(), PackedByteArray([1, 2, 3]), "wss_packet_content")

	# Client options with a ws:// URL: accepted, and the connection is plain.
	var plain: Object = make_peer()
	polled.append(plain)
	expect_eq(plain.create_server(port + 1), OK_, "create_plain_server")
	var c2: Object = make_peer()
	polled.append(c2)
	expect_eq(c2.create_client("ws://localhost:%d/" % (port + 1), TLSOptions.client(cert)), OK_,
			"client_options_on_ws_url")
	check(await wait_status(c2, CONNECTED, 10.0), "client_options_on_ws_url_connected",
			"status %d" % c2.get_connection_status())
