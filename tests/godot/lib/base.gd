## Base of every scenario script: argument parsing, checks, file-based sync between processes,
## signal recording, a watchdog, and clean shutdown (peers closed and released before quit so
## that Godot reports no leaks), and the steps many scenarios share (serving, connecting named
## clients, receiving packets). Over 500 lines because it is that one shared library: a step
## written here once is not copied into the scenarios.
##
## A scenario is run as
##   godot --headless --path godot-project -s res://tests/<name>.gd -- role=server peer_class=... \
##         port=NNNN dir=/tmp/... parties=server,client timeout=20
## It defines run_server() / run_client() / run_main() (coroutines) for its roles, which run()
## calls as `role` says, and uses `role`/`peer_class`/`port`.
##
## Output protocol (stdout, one line each), read by tests/run_tests.py:
##   @@CHECK ok <role>.<name>
##   @@CHECK fail <role>.<name> <detail>
##   @@INFO <text>
##   @@DONE failures=<n> checks=<n>
## and on stderr `@@MARK <name>` lines that delimit sections in which run_tests.py may look for
## error messages.
extends SceneTree

const BUILTIN_CLASS := "WebSocketMultiplayerPeer"

# Godot's Error codes used by the checks.
const OK_ := 0
const ERR_UNAVAILABLE := 2
const ERR_UNCONFIGURED := 3
const ERR_OUT_OF_MEMORY := 6
const ERR_ALREADY_IN_USE := 22
const ERR_INVALID_PARAMETER := 31

# MultiplayerPeer.ConnectionStatus
const DISCONNECTED := 0
const CONNECTING := 1
const CONNECTED := 2

var args: Dictionary = {}
var role: String = ""
var peer_class: String = ""
var port: int = 0
var sync_dir: String = ""
var parties: PackedStringArray = []

var checks_total: int = 0
var failures: int = 0
## Every multiplayer peer made through make_peer(); closed and released at the end.
var peers: Array = []
## Raw peers (not attached to a SceneMultiplayer) that are polled at every frame.
var polled: Array = []
## SceneMultiplayer instances installed with attach_multiplayer(); removed at the end.
var _custom_mps: Array = []
## Recorded signals: key -> Array of [msec, signal_name, arg]
var events: Dictionary = {}
## Server signals recorded by log_server_signals(): [name, args...] in emission order.
var siglog: Array = []
var _deadline_ms: int = 0
var _waiting_for: String = ""
var _finished: bool = false


func _initialize() -> void:
	for a in OS.get_cmdline_user_args():
		var kv: PackedStringArray = a.split("=", true, 1)
		args[kv[0]] = kv[1] if kv.size() > 1 else ""
	role = args.get("role", "main")
	peer_class = args.get("peer_class", BUILTIN_CLASS)
	port = int(args.get("port", "0"))
	sync_dir = args.get("dir", "")
	parties = String(args.get("parties", role)).split(",", false)
	OS.low_processor_usage_mode_sleep_usec = int(args.get("sleep_usec", "1000"))
	_deadline_ms = Time.get_ticks_msec() + int(float(args.get("timeout", "20")) * 1000.0)
	process_frame.connect(_on_frame)
	_main.call_deferred()


func _main() -> void:
	if not ClassDB.class_exists(peer_class):
		check(false, "class_exists", "class %s is not registered (extension not loaded?)" % peer_class)
	elif not ClassDB.can_instantiate(peer_class):
		check(false, "class_instantiable", "class %s cannot be instantiated" % peer_class)
	else:
		await run()
	finish()


## The scenario's body: run_server(), run_client() or run_main() as `role` says. Override those
## (a scenario has the roles it defines). A scenario that must do something first for every
## role overrides run() too and ends it with `await super()`.
func run() -> void:
	match role:
		"server":
			await run_server()
		"client":
			await run_client()
		"main":
			await run_main()
		_:
			check(false, "role", "no run() for role %s in this scenario" % role)


func run_server() -> void:
	check(false, "role", "this scenario has no server role")


func run_client() -> void:
	check(false, "role", "this scenario has no client role")


## One process alone (a single class, or a server and clients in one process).
func run_main() -> void:
	check(false, "role", "this scenario has no main role")


## Override to release scenario-specific objects (called before peers are closed).
func teardown() -> void:
	pass


func is_builtin(cls: String = "") -> bool:
	return (cls if cls != "" else peer_class) == BUILTIN_CLASS


func is_rust(cls: String = "") -> bool:
	return not is_builtin(cls)


func _on_frame() -> void:
	for p in polled:
		p.poll()
	if not _finished and Time.get_ticks_msec() > _deadline_ms:
		check(false, "watchdog", "scenario timed out while waiting for: %s" % _waiting_for)
		finish()


func finish() -> void:
	if _finished:
		return
	_finished = true
	teardown()
	for mp in _custom_mps:
		mp[0].multiplayer_peer = null
		release_signals(mp[0])
		set_multiplayer(null, mp[1])
	_custom_mps.clear()
	if root.multiplayer != null:
		root.multiplayer.multiplayer_peer = null
		release_signals(root.multiplayer)
	for p in peers:
		release_signals(p)
		p.close()
	peers.clear()
	polled.clear()
	events.clear()
	if checks_total == 0:
		check(false, "no_checks", "scenario made no checks")
	print("@@DONE failures=%d checks=%d" % [failures, checks_total])
	quit(1 if failures > 0 else 0)


# --------------------------------------------------------------------------------------------
# Checks

func check(cond: bool, name: String, detail: String = "") -> bool:
	checks_total += 1
	if cond:
		print("@@CHECK ok %s.%s" % [role, name])
	else:
		failures += 1
		print("@@CHECK fail %s.%s %s" % [role, name, detail.replace("\n", " | ")])
	return cond


static func same(a: Variant, b: Variant) -> bool:
	if a == null or b == null:  # a freed/null Object equals null
		return a == null and b == null
	var ta := typeof(a)
	var tb := typeof(b)
	if (ta == TYPE_INT or ta == TYPE_FLOAT) and (tb == TYPE_INT or tb == TYPE_FLOAT):
		return a == b
	if ta != tb:
		return false
	return a == b


func expect_eq(actual: Variant, expected: Variant, name: String) -> bool:
	return check(same(actual, expected), name,
			"got %s, expected %s" % [_show(actual), _show(expected)])


func expect_in(actual: Variant, allowed: Array, name: String) -> bool:
	var found := false
	for a in allowed:
		if same(actual, a):
			found = true
	return check(found, name, "got %s, expected one of %s" % [_show(actual), _show(allowed)])


static func _show(v: Variant) -> String:
	if typeof(v) == TYPE_PACKED_BYTE_ARRAY:
		var b: PackedByteArray = v
		if b.size() > 24:
			return "<%d bytes %s...>" % [b.size(), b.slice(0, 16).hex_encode()]
		return "<%d bytes %s>" % [b.size(), b.hex_encode()]
	if typeof(v) == TYPE_STRING:
		return "\"%s\"" % v
	if typeof(v) == TYPE_OBJECT and v != null:
		return "<%s>" % v.get_class()
	return str(v)


func info(text: String) -> void:
	print("@@INFO %s.%s" % [role, text])


## Writes a marker line to stderr: run_tests.py can look for engine error messages printed
## between `mark(name)` and the next mark.
func mark(name: String) -> void:
	printerr("@@MARK %s" % name)


# --------------------------------------------------------------------------------------------
# Waiting (every wait keeps frames running, so peers and SceneMultiplayers are polled)

func wait_until(cond: Callable, timeout_s: float, what: String) -> bool:
	var prev := _waiting_for
	_waiting_for = what
	var end := Time.get_ticks_msec() + int(timeout_s * 1000.0)
	while not cond.call():
		if Time.get_ticks_msec() > end or _finished:
			_waiting_for = prev
			return false
		await process_frame
	_waiting_for = prev
	return true


func sleep(seconds: float) -> void:
	var end := Time.get_ticks_msec() + int(seconds * 1000.0)
	while Time.get_ticks_msec() < end and not _finished:
		await process_frame


func frames(n: int) -> void:
	for i in n:
		await process_frame


# --------------------------------------------------------------------------------------------
# Sync between processes through files in `dir`

func _path(name: String) -> String:
	return sync_dir.path_join(name)


func _write_atomic(name: String, text: String) -> void:
	var tmp := _path(name + ".tmp.%s" % role)
	var f := FileAccess.open(tmp, FileAccess.WRITE)
	f.store_string(text)
	f.close()
	DirAccess.rename_absolute(tmp, _path(name))


func flag(name: String) -> void:
	_write_atomic("flag_" + name, "1")


func has_flag(name: String) -> bool:
	return FileAccess.file_exists(_path("flag_" + name))


func wait_flag(name: String, timeout_s: float = 10.0) -> bool:
	var ok: bool = await wait_until(has_flag.bind(name), timeout_s, "flag " + name)
	if not ok:
		check(false, "wait_flag_" + name, "flag %s not set within %.1fs" % [name, timeout_s])
	return ok


func put_value(key: String, value: Variant) -> void:
	_write_atomic("val_" + key, var_to_str(value))


func get_value(key: String, timeout_s: float = 10.0) -> Variant:
	var path := _path("val_" + key)
	var ok: bool = await wait_until(func() -> bool: return FileAccess.file_exists(path), timeout_s,
			"value " + key)
	if not ok:
		check(false, "get_value_" + key, "value %s not published within %.1fs" % [key, timeout_s])
		return null
	return str_to_var(FileAccess.get_file_as_string(_path("val_" + key)))


## Every party (see `parties=`) reaches `name` before any continues.
func barrier(name: String, timeout_s: float = 10.0) -> bool:
	flag("bar_%s.%s" % [name, role])
	var all_there := func() -> bool:
		for p in parties:
			if not has_flag("bar_%s.%s" % [name, p]):
				return false
		return true
	var ok: bool = await wait_until(all_there, timeout_s, "barrier " + name)
	if not ok:
		check(false, "barrier_" + name, "not every party of %s reached barrier %s" % [parties, name])
	return ok


# --------------------------------------------------------------------------------------------
# Peers

func make_peer(cls: String = "") -> Object:
	var p: Object = ClassDB.instantiate(cls if cls != "" else peer_class)
	peers.append(p)
	return p


## A server peer of `peer_class` on `port`, watched under `key` and polled every frame (no
## SceneMultiplayer), with "server_ready" flagged.
func serve_raw(key: String = "peer") -> Object:
	var p: Object = make_peer()
	watch(p, key)
	expect_eq(p.create_server(port), OK_, "create_server")
	polled.append(p)
	flag("server_ready")
	return p


## Serves `p` (set up and watched by the caller) on `port` as the root SceneMultiplayer's
## peer, and flags "server_ready".
func serve_root(p: Object) -> void:
	expect_eq(p.create_server(port), OK_, "create_server")
	root.multiplayer.multiplayer_peer = p
	flag("server_ready")


## Connects `c` (set up and watched by the caller) to `url()` as a raw client polled every
## frame: true once CONNECTED within `timeout_s`. Its checks are named `<prefix>create_client`
## and `<prefix>connected`.
func connect_client(c: Object, timeout_s: float = 10.0, prefix: String = "") -> bool:
	expect_eq(c.create_client(url()), OK_, prefix + "create_client")
	polled.append(c)
	return check(await wait_status(c, CONNECTED, timeout_s), prefix + "connected",
			"status %d" % c.get_connection_status())


## The ids the clients `names` published as values "id_<name>", by name; empty when one of
## them published none or 0 (it could not connect, and said so in its own checks).
func client_ids(names: Array) -> Dictionary:
	var ids := {}
	for n in names:
		var v: Variant = await get_value("id_" + n)
		if v == null or v == 0:
			return {}
		ids[n] = v
	return ids


## Connects `c` (set up by the caller) as client `n`: watched as "p<n>", under a
## SceneMultiplayer of its own at /root/C<n> (returned), watched as "mp<n>". `to` defaults to
## url().
func connect_named(c: Object, n: String, to: String = "") -> SceneMultiplayer:
	watch(c, "p" + n)
	expect_eq(c.create_client(to if to != "" else url()), OK_, "create_client_" + n)
	var mp := attach_multiplayer(c, "/root/C" + n)
	watch(mp, "mp" + n)
	return mp


## Waits (up to 5 s) until the clients `cs` (name -> peer, joined with connect_named()) are
## connected, then publishes each one's id as "id_<name>" for client_ids() on the server; 0 for
## all when one did not connect. True when all did.
func publish_ids(cs: Dictionary) -> bool:
	var names := PackedStringArray(cs.keys())
	var all_in := func() -> bool:
		for n in names:
			if count("mp" + n, "connected_to_server") != 1:
				return false
		return true
	if not check(await wait_until(all_in, 5.0, " and ".join(names) + " connected"),
			"_".join(names) + "_connected", "events %s" % [events]):
		for n in names:
			put_value("id_" + n, 0)
		return false
	for n in names:
		put_value("id_" + n, cs[n].get_unique_id())
	return true


## Connects `p` (watched under `key`) as this role's side of a raw pair (no SceneMultiplayer),
## polled every frame: the server listens on `port`, flags "server_ready" and waits for one
## client; the client waits for that flag and connects. Returns the other side's id (the
## client's, or 1) and makes it `p`'s target; 0 when that failed (a failed check says why).
func connect_raw(p: Object, key: String) -> int:
	var other := 1
	if role == "server":
		expect_eq(p.create_server(port), OK_, "create_server")
		polled.append(p)
		flag("server_ready")
		if not check(await wait_signal_count(key, "peer_connected", 1, 10.0), "connected",
				"no client"):
			return 0
		other = got(key, "peer_connected")[0]
	else:
		if not await wait_flag("server_ready"):
			return 0
		if not await connect_client(p):
			return 0
	p.set_target_peer(other)
	return other


## Expects `p.create_server(on_port)` refused with ERR_INVALID_PARAMETER, as the check
## `<what>_refused`; the error it prints stands after the mark `what`.
func expect_server_refused(p: Object, on_port: int, what: String) -> void:
	mark(what)
	expect_eq(p.create_server(on_port), ERR_INVALID_PARAMETER, what + "_refused")


## Closes a peer and forgets it (signals disconnected) so nothing keeps it alive.
func drop_peer(p: Object) -> void:
	release_signals(p)
	p.close()
	peers.erase(p)
	polled.erase(p)


func url(path: String = "") -> String:
	return "ws://127.0.0.1:%d%s" % [port, path]


## Installs a new SceneMultiplayer for the subtree at `path` (the node is created if needed).
func attach_multiplayer(peer: Object, path: String) -> SceneMultiplayer:
	var np := NodePath(path)
	if not root.has_node(np):
		var n := Node.new()
		n.name = path.get_file()
		root.add_child(n)
	var mp := SceneMultiplayer.new()
	set_multiplayer(mp, np)
	_custom_mps.append([mp, np])
	if peer != null:
		mp.multiplayer_peer = peer
	return mp


## Disconnects every connection from `obj`'s signals (lambdas connected to an object and
## capturing it would otherwise keep it alive past exit). Only for objects the scenario owns
## and has already detached from SceneMultiplayer.
func release_signals(obj: Object) -> void:
	if obj == null:
		return
	for s in obj.get_signal_list():
		for c in obj.get_signal_connection_list(s["name"]):
			obj.disconnect(s["name"], c["callable"])


## Records a peer's / SceneMultiplayer's signals under `key`.
func watch(obj: Object, key: String) -> void:
	if not events.has(key):
		events[key] = []
	for s in ["peer_connected", "peer_disconnected"]:
		if obj.has_signal(s):
			obj.connect(s, _evt1.bind(key, s))
	for s in ["connected_to_server", "connection_failed", "server_disconnected"]:
		if obj.has_signal(s):
			obj.connect(s, _evt0.bind(key, s))


func _evt1(arg: int, key: String, sig: String) -> void:
	events[key].append([Time.get_ticks_msec(), sig, arg])


func _evt0(key: String, sig: String) -> void:
	events[key].append([Time.get_ticks_msec(), sig, null])


## Records the server signals of the rust class on `p` (peer_connected / peer_disconnected and
## Godot 3's client_connected / client_disconnected / client_close_request) into `siglog`, in
## emission order, as [name, args...].
func log_server_signals(p: Object) -> void:
	p.peer_connected.connect(func(id: int) -> void: siglog.append(["peer_connected", id]))
	p.peer_disconnected.connect(func(id: int) -> void: siglog.append(["peer_disconnected", id]))
	p.client_connected.connect(func(id: int, protocol: String) -> void:
			siglog.append(["client_connected", id, protocol]))
	p.client_disconnected.connect(func(id: int, clean: bool) -> void:
			siglog.append(["client_disconnected", id, clean]))
	p.client_close_request.connect(func(id: int, code: int, reason: String) -> void:
			siglog.append(["client_close_request", id, code, reason]))


## The entries of `siglog` about peer `id`.
func log_of(id: int) -> Array:
	return siglog.filter(func(e: Array) -> bool: return e[1] == id)


## The one record that a peer_disconnected handler left in `recs`, reported by `who` (the check
## `<name>_one_handler_call`); {} when there is not exactly one.
func only_record(recs: Array, name: String, who: String) -> Dictionary:
	info("%s: %s handler saw %s" % [who, name, recs])
	if not check(recs.size() == 1, name + "_one_handler_call", "records %s" % [recs]):
		return {}
	return recs[0]


## Arguments of the signal `sig` recorded under `key`, in order.
func got(key: String, sig: String) -> Array:
	var out: Array = []
	for e in events.get(key, []):
		if e[1] == sig:
			out.append(e[2])
	return out


func count(key: String, sig: String) -> int:
	return got(key, sig).size()


func wait_signal_count(key: String, sig: String, n: int, timeout_s: float) -> bool:
	return await wait_until(func() -> bool: return count(key, sig) >= n, timeout_s,
			"%s %s x%d" % [key, sig, n])


func wait_status(p: Object, status: int, timeout_s: float) -> bool:
	return await wait_until(func() -> bool: return p.get_connection_status() == status,
			timeout_s, "status %d" % status)


# --------------------------------------------------------------------------------------------
# Payloads

## Deterministic content: `size` bytes depending on `salt`.
static func pattern(size: int, salt: int) -> PackedByteArray:
	var b := PackedByteArray()
	b.resize(size)
	var x: int = (salt * 2654435761 + 12345) & 0xFFFFFFFF
	for i in size:
		x = (x * 1103515245 + 12345) & 0x7FFFFFFF
		b[i] = (x >> 16) & 0xFF
	return b


static func u32(v: int) -> PackedByteArray:
	var b := PackedByteArray()
	b.resize(4)
	b.encode_u32(0, v)
	return b


## Reads every queued packet of a raw peer: Array of [source_peer_id, PackedByteArray].
static func drain(p: Object) -> Array:
	var out: Array = []
	while p.get_available_packet_count() > 0:
		var src: int = p.get_packet_peer()
		var pkt: PackedByteArray = p.get_packet()
		out.append([src, pkt])
	return out


static func _show_packets(received: Array) -> String:
	return str(received.map(func(r: Array) -> String: return "%d:%s" % [r[0], _show(r[1])]))


## What raw peer `p` receives (as drain() gives it) until `n` packets are in, for up to
## `timeout_s` or until `give_up` (when given) returns true; the check `name` says whether they
## came.
func receive(p: Object, n: int, timeout_s: float, name: String, give_up := Callable()) -> Array:
	var received: Array = []
	var enough := func() -> bool:
		received.append_array(drain(p))
		return received.size() >= n or (give_up.is_valid() and give_up.call())
	await wait_until(enough, timeout_s, name)
	check(received.size() >= n, name, "%d of %d packets: %s" % [received.size(), n,
			_show_packets(received)])
	return received


## What raw peer `p` receives (as drain() gives it) until the packet `last`, for up to 10 s;
## the check `name` says whether it came.
func receive_until(p: Object, last: PackedByteArray, name: String) -> Array:
	var received: Array = []
	var done := func() -> bool:
		received.append_array(drain(p))
		return not received.is_empty() and received[-1][1] == last
	check(await wait_until(done, 10.0, name), name, "received %s" % _show_packets(received))
	return received


## Checks that `received` (as drain() gives it) holds the payloads `want`, in order (the check
## `name`), every one from peer `from` (the check `source_name`).
func expect_packets(received: Array, want: Array, from: int, name: String,
		source_name: String) -> void:
	var payloads: Array = received.map(func(r: Array) -> PackedByteArray: return r[1])
	check(payloads == want, name, "got %s, expected %s" % [
			payloads.map(func(x: Variant) -> String: return _show(x)),
			want.map(func(x: Variant) -> String: return _show(x))])
	check(received.all(func(r: Array) -> bool: return r[0] == from), source_name,
			"sources %s, expected %d" % [received.map(func(r: Array) -> int: return r[0]), from])
