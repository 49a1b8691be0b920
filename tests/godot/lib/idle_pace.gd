## Frame pacing for the Autobahn echo scripts (tests/godot/autobahn_echo.gd, autobahn_client.gd):
## a short sleep between frames while messages come, longer ones (up to 2 ms) the longer none
## has come. wstest sends each message only after the echo of the last one and takes
## milliseconds of Python per large compressed message, so a headless Godot spinning 100 µs
## frames meanwhile spent about a sixth of a core on empty frames, CPU the suite's
## permessage-deflate cases want for wstest and the addon's deflate.
extends RefCounted

## Sleep between frames while messages come (OS.low_processor_usage_mode_sleep_usec).
var busy_usec := 100
## The longest sleep between frames.
var idle_usec := 2000
var _last_usec := 0


## Call once a frame with how many messages that frame handled. The sleep grows with the time
## since the last message, a quarter of it, so waiting adds at most about a quarter to the gap
## wstest leaves between its messages (1 to 2 ms for small ones, tens for 128 KiB ones).
func frame(handled: int) -> void:
	var now := Time.get_ticks_usec()
	if handled > 0:
		_last_usec = now
	OS.low_processor_usage_mode_sleep_usec = clampi((now - _last_usec) / 4, busy_usec, idle_usec)
