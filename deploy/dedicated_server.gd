## A dedicated server's main script (attach it to the main scene's root node, or make it an
## autoload): listens with a health path and a metrics path, and drains on
## the orchestrator's SIGTERM, which deploy/entrypoint.sh turns into DRAIN_FILE.
## Environment: PORT (default 9080), DRAIN_FILE (default /tmp/drain), DRAIN_SECONDS (default 20),
## DRAIN_DELAY (shutdown_delay: seconds of 503 on the health path before the players are told to
## leave, so the load balancer stops sending new ones first; default 0),
## METRICS_ALLOW (comma-separated IPs/CIDRs allowed to read /metrics; default loopback only).
extends Node

var peer := RustWebSocketMultiplayerPeer.new()
var drain_file := OS.get_environment("DRAIN_FILE") if OS.has_environment("DRAIN_FILE") else "/tmp/drain"
var draining := false


func _ready() -> void:
	var port := int(OS.get_environment("PORT")) if OS.has_environment("PORT") else 9080
	peer.health_path = "/healthz"
	peer.metrics_path = "/metrics"
	if OS.has_environment("METRICS_ALLOW"):
		peer.metrics_allow = PackedStringArray(OS.get_environment("METRICS_ALLOW").split(","))
	peer.heartbeat_interval = 5.0
	if OS.has_environment("DRAIN_DELAY"):
		peer.shutdown_delay = float(OS.get_environment("DRAIN_DELAY"))
	var err: int = peer.create_server(port)
	if err != OK:
		printerr("create_server(%d) failed: %s" % [port, error_string(err)])
		get_tree().quit(1)
		return
	peer.shutdown_completed.connect(_on_drained)
	multiplayer.multiplayer_peer = peer
	print("listening on %d" % port)


func _process(_delta: float) -> void:
	if not draining and FileAccess.file_exists(drain_file):
		draining = true
		var seconds := float(OS.get_environment("DRAIN_SECONDS")) \
				if OS.has_environment("DRAIN_SECONDS") else 20.0
		print("drain requested: shutdown(%.0f) with %d peers" % [seconds, peer.get_peer_ids().size()])
		peer.shutdown(seconds, 1001, "server restarting")


func _on_drained(forced_peers: int) -> void:
	print("drained (%d cut at the timeout), quitting" % forced_peers)
	get_tree().quit(0)
