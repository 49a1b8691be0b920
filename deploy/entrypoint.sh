#!/bin/sh
# The container's PID 1 for a headless Godot server: Godot 4 (measured with 4.6.3 on Linux)
# installs no SIGTERM handler, so the signal ends it at once (exit 143) and the game never hears
# of it. This shell receives SIGTERM (and SIGINT) instead, creates $DRAIN_FILE, which
# dedicated_server.gd polls to start shutdown() (after DRAIN_DELAY seconds of 503 on /healthz,
# its shutdown_delay), and waits for the game to finish draining.
# Usage: entrypoint.sh <godot command line...>
DRAIN_FILE="${DRAIN_FILE:-/tmp/drain}"
rm -f "$DRAIN_FILE"
trap 'touch "$DRAIN_FILE"' TERM INT
"$@" &
child=$!
# `wait` returns early when a trapped signal arrives: wait again until the game has exited.
while :; do
    wait "$child"
    rc=$?
    kill -0 "$child" 2>/dev/null || break
done
exit "$rc"
