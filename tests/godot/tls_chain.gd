## tls_chain: certificates from a CA hierarchy (tests/tls_certs.py, made with openssl at test
## time), as a game with a real certificate has them.
##
## The server runs three wss servers: port+0 RSA leaf + intermediate in one PEM file, port+1 the
## same leaf alone, port+2 ECDSA leaf + intermediate. The client connects with its own peer per
## case: trusting only the root, it reaches both full-chain servers and fails on the leaf-only
## one (the intermediate is missing); trusting a bundle of three CAs with the root last, the
## same; trusting two unrelated CAs, nothing. With `null` options and the project setting
## network/tls/certificate_bundle_override naming the bundle (rust client only: the built-in
## reads the setting once at engine start), the full-chain server connects.
##
## Refused in every pairing, as mbedTLS refuses them: a certificate signed with the key of a
## trusted CA:FALSE leaf (a pin is an exact match, not a CA); an intermediate with CA:TRUE and
## keyUsage without keyCertSign; a root with pathlen 0 above an intermediate; an ECDSA leaf
## whose keyUsage lacks digitalSignature (the built-in server cannot even use that one).
##
## Bundles are loaded as resources (`load("…/bundle.crt")`). A bundle loaded with
## `X509Certificate.load()` cannot be read whole by an extension (Godot's save_to_string()
## repeats the first certificate): the built-in client connects, the rust client trusts only the
## first CA, fails, and warns saying why ("bundle_by_method"; the warning is checked by
## tests/suite.py).
extends "res://tests/lib/base.gd"

const SERVERS := {0: ["rsa_key.pem", "rsa_fullchain.pem"], 1: ["rsa_key.pem", "rsa_leaf.pem"],
		2: ["ec_key.pem", "ec_fullchain.pem"],
		# What mbedTLS refuses and a verifier must not trust more than (security review):
		3: ["forged_by_pin_key.pem", "forged_by_pin.pem"],
		4: ["badku_leaf_key.pem", "badku_chain.pem"],
		5: ["len0_leaf_key.pem", "len0_chain.pem"],
		6: ["ec_nods_key.pem", "ec_nods.pem"]}
const BUNDLE_OVERRIDE := "network/tls/certificate_bundle_override"


func run() -> void:
	if not await wait_until(func() -> bool: return has_flag("certs_ready") or has_flag("certs_failed"),
			30.0, "certificates"):
		return
	if not check(has_flag("certs_ready"), "certificates_made", "see py.make_certificates"):
		return
	await super()


func run_server() -> void:
	for offset in SERVERS:
		var key := CryptoKey.new()
		var cert := X509Certificate.new()
		expect_eq(key.load(sync_dir.path_join(SERVERS[offset][0])), OK_, "load_key_%d" % offset)
		expect_eq(cert.load(sync_dir.path_join(SERVERS[offset][1])), OK_, "load_cert_%d" % offset)
		var p: Object = make_peer()
		polled.append(p)
		expect_eq(p.create_server(port + offset, "*", TLSOptions.server(key, cert)), OK_,
				"create_server_%d" % offset)
	flag("server_ready")
	await barrier("done", 60.0)


func trusted(file: String) -> X509Certificate:
	var cert := X509Certificate.new()
	expect_eq(cert.load(sync_dir.path_join(file)), OK_, "load_" + file)
	return cert


func run_client() -> void:
	if not await wait_flag("server_ready", 30.0):
		return
	var root := trusted("root.pem")
	var bundle: X509Certificate = load(sync_dir.path_join("bundle.crt"))
	var others: X509Certificate = load(sync_dir.path_join("others.crt"))
	await attempt("root_rsa_fullchain", 0, TLSOptions.client(root), true)
	await attempt("root_rsa_leaf_only", 1, TLSOptions.client(root), false)
	await attempt("root_ec_fullchain", 2, TLSOptions.client(root), true)
	await attempt("bundle_rsa_fullchain", 0, TLSOptions.client(bundle), true)
	await attempt("bundle_rsa_leaf_only", 1, TLSOptions.client(bundle), false)
	await attempt("bundle_ec_fullchain", 2, TLSOptions.client(bundle), true)
	await attempt("unrelated_cas", 0, TLSOptions.client(others), false)
	await attempt("signed_by_pinned_leaf", 3, TLSOptions.client(trusted("pin.pem")), false)
	await attempt("intermediate_without_keycertsign", 4, TLSOptions.client(root), false)
	await attempt("root_pathlen_0", 5, TLSOptions.client(trusted("root0.pem")), false)
	await attempt("ecdsa_leaf_without_digitalsignature", 6, TLSOptions.client(root), false)
	mark("bundle_by_method")
	await attempt("bundle_by_method", 0, TLSOptions.client(trusted("bundle.pem")), is_builtin())
	mark("end")
	if is_rust():
		ProjectSettings.set_setting(BUNDLE_OVERRIDE, sync_dir.path_join("bundle.pem"))
		await attempt("override_bundle", 0, null, true)
		ProjectSettings.set_setting(BUNDLE_OVERRIDE, sync_dir.path_join("others.pem"))
		await attempt("override_unrelated", 0, null, false)
		ProjectSettings.set_setting(BUNDLE_OVERRIDE, "")
	await barrier("done", 60.0)


## One connection with its own peer: CONNECTED (the server's id arrived over the verified
## connection) or DISCONNECTED, as expected.
func attempt(name: String, offset: int, opts: TLSOptions, should_connect: bool) -> void:
	var c: Object = make_peer()
	polled.append(c)
	var t0 := Time.get_ticks_msec()
	expect_eq(c.create_client("wss://localhost:%d/" % (port + offset), opts), OK_, name + "_create")
	var decided := func() -> bool: return c.get_connection_status() != CONNECTING
	if check(await wait_until(decided, 10.0, name), name + "_decided", "still connecting"):
		expect_eq(c.get_connection_status(), CONNECTED if should_connect else DISCONNECTED, name)
		info("%s: %s in %d ms" % [name, "connected" if c.get_connection_status() == CONNECTED
				else "failed", Time.get_ticks_msec() - t0])
	drop_peer(c)
