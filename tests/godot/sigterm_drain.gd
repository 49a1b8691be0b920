## sigterm_drain: SIGTERM straight to a headless Godot server (no wrapper), with and without
## `shutdown_on_sigterm`. tests/sigterm_drain_hook.py (party "py") sends the signals and
## reads what the raw clients and the processes see.
##   server  deploy/dedicated_server.gd as a container runs it (PORT, DRAIN_SECONDS 5,
##           DRAIN_DELAY 1 from the row's prefix): it opts in; a second peer of this process
##           (port+4, delay 0) opts in too, so one handler serves two peers. On SIGTERM both
##           get termination_requested(15) once and start shutdown() themselves: the health
##           path answers 503 during the delay, then clients read 1001 "server shutting down";
##           shutdown_completed with none cut. The node's own quit on shutdown_completed is
##           disconnected, so that this scenario reports (and exits 0: the hook times it).
##   plain   three rust servers that do not catch SIGTERM: one never opted in (port+1, with the
##           hook's raw client), one opted in and turned it off while listening (port+2), one
##           opted in and closed (port+3). SIGTERM must end the process at once, as without
##           the addon: the row's prefix (expect_sigterm_prefix) turns that death into the
##           check `plain.killed_by_sigterm`.
##   twice   opted in (port+5, a raw client that never answers the close, timeout 20 s): the
##           first SIGTERM starts the drain, a second one ends the process at once (same
##           prefix).
## Roles: server, plain, twice (rust only), and "py".
extends "res://tests/lib/base.gd"

var _signals: Array = []


func run() -> void:
	if not check(is_rust(), "server_class", "shutdown_on_sigterm is a property of the rust class"):
		return
	match role:
		"plain":
			await run_plain()
		"twice":
			await run_twice()
		_:
			await super()


func run_server() -> void:
	var script_path := ProjectSettings.globalize_path("res://").path_join(
			"../deploy/dedicated_server.gd")
	var node := Node.new()
	node.set_script(load(script_path))
	root.add_child(node)  # its _ready: create_server on $PORT, shutdown_on_sigterm
	var server: Object = node.get("peer")
	if not check(server != null and server.is_listening(), "listening", script_path):
		return
	expect_eq(server.shutdown_on_sigterm, true, "dedicated_server_opts_in")
	expect_eq(server.shutdown_timeout, 5.0, "shutdown_timeout_from_DRAIN_SECONDS")
	server.shutdown_completed.disconnect(node._on_drained)
	var second: Object = make_peer()
	expect_eq(second.shutdown_on_sigterm, false, "default_off")
	expect_eq(second.shutdown_timeout, 10.0, "default_timeout")
	second.shutdown_on_sigterm = true
	expect_eq(second.create_server(port + 4), OK_, "second_server")
	polled.append(second)
	var done := [-1, -1]  # forced_peers of each (the lambdas hold no peer: no cycle)
	var both: Array = [server, second]
	for i in 2:
		both[i].termination_requested.connect(func(sig: int) -> void: _signals.append([i, sig]))
		both[i].shutdown_completed.connect(func(n: int) -> void: done[i] = n)
	put_value("pid_server", OS.get_process_id())
	flag("server_ready")
	var drained := func() -> bool: return not done.has(-1)
	check(await wait_until(drained, 20.0, "SIGTERM, the drains, shutdown_completed"), "drained")
	expect_eq(done, [0, 0], "none_cut")
	_signals.sort()
	expect_eq(_signals, [[0, 15], [1, 15]], "termination_requested_once_each")
	expect_eq(second.get_connection_status(), DISCONNECTED, "second_disconnected")
	# No barrier: plain and twice never reach one (SIGTERM ends them).


## Servers that leave SIGTERM alone; the hook's SIGTERM ends this process.
func run_plain() -> void:
	var never: Object = make_peer()
	expect_eq(never.create_server(port + 1), OK_, "never_opted_in")
	var turned_off: Object = make_peer()
	turned_off.shutdown_on_sigterm = true
	expect_eq(turned_off.create_server(port + 2), OK_, "opted_in")
	turned_off.shutdown_on_sigterm = false
	var closed: Object = make_peer()
	closed.shutdown_on_sigterm = true
	expect_eq(closed.create_server(port + 3), OK_, "opted_in_then_closed")
	closed.close()
	polled.append_array([never, turned_off])
	for p in [never, turned_off, closed]:
		p.termination_requested.connect(func(sig: int) -> void: _signals.append(sig))
	put_value("pid_plain", OS.get_process_id())
	flag("plain_ready")
	var told := func() -> bool: return not _signals.is_empty()
	await wait_until(told, 20.0, "SIGTERM (which should end this process)")
	check(false, "killed", "still alive after SIGTERM; termination_requested: %s" % [_signals])


## Opted in; the second SIGTERM during the drain ends this process.
func run_twice() -> void:
	var p: Object = make_peer()
	p.shutdown_on_sigterm = true
	p.shutdown_timeout = 20.0
	expect_eq(p.create_server(port + 5), OK_, "opted_in")
	polled.append(p)
	p.termination_requested.connect(func(sig: int) -> void:
		_signals.append(sig)
		flag("twice_draining"))
	put_value("pid_twice", OS.get_process_id())
	flag("twice_ready")
	await wait_until(func() -> bool: return false, 20.0, "a second SIGTERM")
	check(false, "killed", "still alive; termination_requested: %s" % [_signals])
