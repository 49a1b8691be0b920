## sigterm_drain: deploy/entrypoint.sh and deploy/dedicated_server.gd as a container runs them.
## The server role runs under entrypoint.sh (the row's prefix; PORT, DRAIN_FILE in the sync dir,
## DRAIN_SECONDS 5) and adds dedicated_server.gd's node; tests/sigterm_drain_hook.py (party
## "py") connects a raw client, sends SIGTERM to entrypoint.sh and expects close 1001 "server
## restarting" and the listener gone; this side expects shutdown_completed with none cut. The
## node's own quit on shutdown_completed is disconnected, so that this scenario reports.
## Roles: server (rust only), and "py".
extends "res://tests/lib/base.gd"


func run_server() -> void:
	if not check(is_rust(), "server_class", "deploy/dedicated_server.gd uses the rust class"):
		return
	var script_path := ProjectSettings.globalize_path("res://").path_join(
			"../deploy/dedicated_server.gd")
	var node := Node.new()
	node.set_script(load(script_path))
	root.add_child(node)  # its _ready: create_server on $PORT with health_path
	var server: Object = node.get("peer")
	if not check(server != null and server.is_listening(), "listening", script_path):
		return
	server.shutdown_completed.disconnect(node._on_drained)
	var forced := [-1]
	server.shutdown_completed.connect(func(n: int) -> void: forced[0] = n)
	put_value("pid_server", OS.get_process_id())
	flag("server_ready")
	var drained := func() -> bool: return forced[0] >= 0
	check(await wait_until(drained, 20.0, "SIGTERM, the drain, shutdown_completed"), "drained")
	expect_eq(forced[0], 0, "none_cut")
	await barrier("done", 10.0)
