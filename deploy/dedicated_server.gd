## A dedicated server's main script (attach it to the main scene's root node, or make it an
## autoload): listens with a health path and a metrics path, drains on the orchestrator's
## SIGTERM (shutdown_on_sigterm: the addon catches the signal, which Godot itself does not),
## and quits once the drain is over.
## Environment: PORT (default 9080), DRAIN_SECONDS (shutdown_timeout: seconds the players get
## to leave; default 20), DRAIN_DELAY (shutdown_delay: seconds of 503 on the health path before
## the players are told to leave, so the load balancer stops sending new ones first; default 0),
## METRICS_ALLOW (comma-separated IPs/CIDRs allowed to read /metrics; default loopback only).
extends Node

var peer := RustWebSocketMultiplayerPeer.new()


func _ready() -> void:
	var port := int(OS.get_environment("PORT")) if OS.has_environment("PORT") else 9080
	peer.health_path = "/healthz"
	peer.metrics_path = "/metrics"
	if OS.has_environment("METRICS_ALLOW"):
		peer.metrics_allow = PackedStringArray(OS.get_environment("METRICS_ALLOW").split(","))
	peer.heartbeat_interval = 5.0
	# SIGTERM (or Ctrl+C): shutdown(shutdown_timeout, 1001, "server shutting down") after
	# shutdown_delay. A second SIGTERM ends the process at once.
	peer.shutdown_on_sigterm = true
	peer.shutdown_timeout = float(OS.get_environment("DRAIN_SECONDS")) \
			if OS.has_environment("DRAIN_SECONDS") else 20.0
	if OS.has_environment("DRAIN_DELAY"):
		peer.shutdown_delay = float(OS.get_environment("DRAIN_DELAY"))
	var err: int = peer.create_server(port)
	if err != OK:
		printerr("create_server(%d) failed: %s" % [port, error_string(err)])
		get_tree().quit(1)
		return
	peer.termination_requested.connect(_on_termination_requested)
	peer.shutdown_completed.connect(_on_drained)
	multiplayer.multiplayer_peer = peer
	print("listening on %d" % port)


func _on_termination_requested(signal_number: int) -> void:
	# The addon starts shutdown() right after this (calling it here yourself, e.g. with
	# another reason, replaces that one).
	print("signal %d: draining %d peers" % [signal_number, peer.get_peer_ids().size()])


func _on_drained(forced_peers: int) -> void:
	print("drained (%d cut at the timeout), quitting" % forced_peers)
	get_tree().quit(0)
