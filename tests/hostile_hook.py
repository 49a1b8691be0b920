#!/usr/bin/env python3
"""Hostile and broken clients, and connection lifecycle, against a Godot server.

Used by tests/run_tests.py (the `hostile_*` and `lifecycle` rows of tests/suite.py, whose hook
is `hook`), and runnable on its own for the long runs:

    python3 tests/hostile_hook.py lifecycle --cycles 10000          # the 10 000-cycle soak
    python3 tests/hostile_hook.py frames --peer builtin -v          # any group, either class

The Godot side is tests/godot/hostile.gd: a server of one class that obeys commands written by
this hook (files `val_cmd_<n>` / `val_resp_<n>` in the sync dir), and a normal Godot client of
the same class that sends a packet every 10 ms and checks the echoes (its counters in
`val_normal`). Each case checks that the server survives (its process is alive), that the
normal client keeps exchanging packets after it, what the hostile client observed (HTTP status,
close code, timings), and the server process's RSS (/proc/PID/status) before, at its peak
during, and after the case. The rows are printed as `_info` notes, and written as JSON to
$RWSMP_HOSTILE_REPORT (a file path) when that is set.

This file is the groups (which cases, in which order), the test hook and the standalone
command; the machinery (Harness, /proc readings, limits) is tests/hostile_harness.py, the cases
tests/hostile_cases_wire.py (http, frames) and tests/hostile_cases_load.py (flow, conns,
lifecycle). Only the Python standard library is used; Linux only (/proc).
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import tempfile

from harness import RUST
from hostile_cases_load import case_burst, case_fast_sender, case_never_reads, lifecycle
from hostile_cases_wire import (case_bad_upgrade, case_continuation_flood,
                                case_empty_continuation_flood, case_fragmented_control,
                                case_garbage, case_huge_header, case_huge_length,
                                case_invalid_utf8, case_ping_between_fragments, case_reserved,
                                case_slowloris, case_unmasked)
from hostile_harness import (BURST_AFTER_SLACK, GROUPS, HANDSHAKE_TIMEOUT,
                             LIFECYCLE_CYCLES_SUITE, MB, Harness, mb)

# ------------------------------------------------------------------------------------------
# Groups and registration

# Per group: case name -> regex the rust server's stderr must match after `@@MARK name`
# (tests/suite.py puts them into the hostile rows).
RUST_LOG = {
    "frames": {
        "unmasked": r"protocol error",
        "reserved": r"protocol error",
        "fragmented_control": r"protocol error",
        "invalid_utf8": r"(?i)invalid UTF-8",
        "huge_length": r"exceeds inbound_buffer_size",
        "continuation_flood": r"exceeds inbound_buffer_size",
    },
    "flow": {"never_reads": r"outbound queue to peer \d+ is full"},
}
# The Godot side's arguments (tests/godot/hostile.gd): its watchdog and handshake_timeout.
GODOT_ARGS = {"timeout": 27, "handshake_timeout": HANDSHAKE_TIMEOUT}


def hook(ctx) -> list:
    """The test hook: the group and cycles come from the test's arguments (ctx.args), the
    class from the server process."""
    cls = "rust" if ctx.classes.get("server") == RUST else "builtin"
    kw = {"cycles": int(ctx.args["cycles"])} if "cycles" in ctx.args else {}
    return hostile_hook(ctx, cls, ctx.args["group"], **kw)


def hostile_hook(ctx, cls: str, group: str, cycles: int = LIFECYCLE_CYCLES_SUITE) -> list:
    """The hook of one group ("http", "frames", "flow", "conns", "lifecycle") for class
    "rust" or "builtin"."""
    if platform.system() != "Linux":
        return [(True, "py.hostile_skip_info", "SKIPPED: needs Linux (/proc)")]
    h = Harness(ctx, cls, group)
    try:
        if not h.start():
            return h.checks
        if group == "http":
            h.case("garbage", "HTTP 400 and closed at once (rust)", lambda: case_garbage(h))
            h.case("slowloris", f"dropped at handshake_timeout ({HANDSHAKE_TIMEOUT}s)",
                   lambda: case_slowloris(h))
            h.case("huge_header", "HTTP 431 and closed (rust)", lambda: case_huge_header(h))
            h.case("bad_upgrade", "no upgrade, closed within 1 s",
                   lambda: case_bad_upgrade(h))
        elif group == "frames":
            h.case("unmasked", "close 1002", lambda: case_unmasked(h))
            h.case("reserved", "close 1002", lambda: case_reserved(h))
            h.case("fragmented_control", "close 1002", lambda: case_fragmented_control(h))
            h.case("invalid_utf8", "close 1007", lambda: case_invalid_utf8(h))
            h.case("huge_length", "close 1009 or 1002", lambda: case_huge_length(h))
            h.case("ping_between_fragments", "pong, message = fragments only",
                   lambda: case_ping_between_fragments(h))
            h.case("continuation_flood", "close 1009 at inbound_buffer_size, memory bounded",
                   lambda: case_continuation_flood(h))
            h.case("empty_continuation_flood", "memory bounded, server responsive",
                   lambda: case_empty_continuation_flood(h, 2.0 if h.rust else 1.0))
        elif group == "flow":
            h.case("never_reads", "put_packet -> 6 (ERR_OUT_OF_MEMORY), memory bounded, no loss",
                   lambda: case_never_reads(h))
            h.case("fast_sender", "no loss, order kept", lambda: case_fast_sender(h))
        elif group == "conns":
            h.after_slack = BURST_AFTER_SLACK
            first = h.case("burst_2000", "server keeps serving, peers and fds back to normal",
                           lambda: case_burst(h))
            # Three more: memory kept after a burst must be reused, not grow per burst. The RSS
            # left after one burst varies by up to ~16 MB from run to run and falls back later
            # (allocator arenas of whichever threads ran; measured here: 139, 148, 139, 155 MB
            # in a row), so the lowest of the later ones is compared with the first: a leak of
            # a few KiB per connection (2000 per burst) raises every later one.
            later = [h.case(f"burst_2000_again_{i}", "the same", lambda: case_burst(h))
                     for i in (2, 3, 4)]
            lowest = min(r["rss_after"] for r in later)
            h.checks.check(lowest - first["rss_after"] <= 8 * MB, "burst.no_growth",
                    "RSS after the bursts: " + ", ".join(
                        mb(r["rss_after"]) for r in [first] + later))
        elif group == "lifecycle":
            h.case(f"lifecycle_{cycles}", "RSS, threads, fds flat",
                   lambda: lifecycle(h, cycles))
        else:
            h.checks.check(False, "group", f"unknown group {group}")
    except Exception as e:  # noqa: BLE001
        h.checks.check(False, "hook", f"{type(e).__name__}: {e}")
    finally:
        h.finish()
    return h.checks


# ------------------------------------------------------------------------------------------
# Standalone: one group, long runs

def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description="Run one hostile-client group or the lifecycle "
                                 "soak against a headless Godot server (see module doc).")
    ap.add_argument("group", choices=GROUPS)
    ap.add_argument("--peer", choices=("rust", "builtin"), default="rust")
    ap.add_argument("--cycles", type=int, default=10000, help="lifecycle cycles (default 10000)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    import godot_bin  # noqa: E402
    import harness  # noqa: E402
    import steps  # noqa: E402

    godot = godot_bin.godot_path()
    for w in steps.prepare_project(godot):
        print(f"# warning: {w}")
    limit = 60.0 + (args.cycles / 50.0 if args.group == "lifecycle" else 60.0)
    cls = harness.CLASSES[args.peer]
    extra = {**GODOT_ARGS, "timeout": limit}
    kw = {"cycles": args.cycles} if args.group == "lifecycle" else {}
    name = (f"lifecycle_{args.cycles}[{args.peer}]" if args.group == "lifecycle"
            else f"hostile_{args.group}[{args.peer}]")
    test = harness.Test(name, [harness.Proc("server", "hostile.gd", cls, dict(extra)),
                               harness.Proc("client", "hostile.gd", cls, dict(extra))],
                        hook=lambda ctx: hostile_hook(ctx, args.peer, args.group, **kw),
                        hook_party=True, process_timeout=limit + 30)
    work = tempfile.mkdtemp(prefix="rwsmp-hostile-")
    port = random.randrange(10000, 31000)
    r = harness.run_godot_test(test, godot, port, work, args.verbose)
    harness.print_result(r)
    print(f"{int(r.ok)} passed, {int(not r.ok)} failed")
    return 0 if r.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
