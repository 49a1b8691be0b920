## Base of the scenarios that time how soon a heartbeat finds a peer that stopped answering:
## heartbeat.gd (a frozen process) and link_cut.gd (a cut link).
extends "res://tests/lib/base.gd"

const INTERVAL := 0.5
## The window, counted from the freeze or the cut, in which the silent peer must be found.
const MIN_MS := 400
const MAX_MS := 1500


## When the signal `sig` with argument `arg` was recorded under `key` (msec ticks); -1 if never.
func event_ms(key: String, sig: String, arg: Variant) -> int:
	for e in events.get(key, []):
		if e[1] == sig and same(e[2], arg):
			return e[0]
	return -1


## Checks (as `name`) that `sig` with `arg`, recorded under `key`, came within the window after
## `t0`, the moment of `what`; publishes the delay in ms as value `value_key` for the hook.
func expect_found_in_time(key: String, sig: String, arg: Variant, t0: int, what: String,
		name: String, value_key: String) -> void:
	var ms := event_ms(key, sig, arg) - t0
	info("%s %s %d ms after %s" % [key, sig, ms, what])
	put_value(value_key, ms)
	check(ms >= MIN_MS and ms <= MAX_MS, name,
			"%s %d ms after %s (want %d..%d with heartbeat_interval %.1f)"
			% [sig, ms, what, MIN_MS, MAX_MS, INTERVAL])


## Waits (up to 5 s) for the server peer watched as "peer" to drop client `id` (the check
## `dropped_name`), then checks when, counted from `t0`, the moment of `what` (see
## expect_found_in_time). True when it dropped it.
func expect_server_dropped(id: int, t0: int, what: String, dropped_name: String,
		time_name: String, value_key: String) -> bool:
	var dropped := func() -> bool: return got("peer", "peer_disconnected").has(id)
	if not check(await wait_until(dropped, 5.0, "client %d dropped" % id), dropped_name,
			"no peer_disconnected(%d) within 5 s of %s; events %s" % [id, what, events["peer"]]):
		return false
	expect_found_in_time("peer", "peer_disconnected", id, t0, what, time_name, value_key)
	return true
