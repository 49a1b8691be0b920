## The node every process of the rpc scenario puts at <multiplayer root>/Test: same script, same
## relative path, so SceneMultiplayer matches them. Each call is logged as
## [method, remote sender id, arg a, arg b].
extends Node

var calls: Array = []


@rpc("any_peer", "call_remote", "reliable")
func to_client(a: Variant, b: Variant) -> void:
	calls.append(["to_client", multiplayer.get_remote_sender_id(), a, b])


@rpc("any_peer", "call_remote", "reliable")
func to_server(a: Variant, b: Variant) -> void:
	calls.append(["to_server", multiplayer.get_remote_sender_id(), a, b])


@rpc("any_peer", "call_remote", "reliable")
func to_peer(a: Variant, b: Variant) -> void:
	calls.append(["to_peer", multiplayer.get_remote_sender_id(), a, b])


func calls_of(method: String) -> Array:
	return calls.filter(func(c: Array) -> bool: return c[0] == method)
