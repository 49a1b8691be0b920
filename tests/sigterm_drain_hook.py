"""Python side of tests/godot/sigterm_drain.gd: SIGTERM straight to headless Godot servers.

- server (opted in with `shutdown_on_sigterm`, deploy/dedicated_server.gd): SIGTERM gives a 503
  on /healthz during `shutdown_delay` while the raw clients hear nothing yet, then close 1001
  "server shutting down" on both of its peers' clients, the listener closes, and the process
  exits (0: the harness's check) within the grace period (delay + timeout);
- plain (not opted in, or opted out again): SIGTERM ends the process at once and its client
  reads EOF with no close frame, as without the addon;
- twice (opted in): a second SIGTERM during the drain ends the process at once.

`plain` and `twice` run under expect_sigterm_prefix: this file as a wrapper, which runs Godot
and turns its death by SIGTERM into a passing check (any other end fails), since the harness
takes any exit but 0 for a failure.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import rawws
from harness import Checks, Ctx, process_gone
from health_hook import get

DELAY = 1.0       # DRAIN_DELAY: shutdown_delay of dedicated_server.gd
TIMEOUT = 5.0     # DRAIN_SECONDS: its shutdown_timeout
GRACE = DELAY + TIMEOUT
REASON = "server shutting down"


def server_prefix(port: int, sync_dir: str) -> list[str]:
    """The server role as a container runs deploy/dedicated_server.gd: no wrapper."""
    return ["env", f"PORT={port}", f"DRAIN_SECONDS={TIMEOUT:g}", f"DRAIN_DELAY={DELAY:g}"]


def expect_sigterm_prefix(port: int, sync_dir: str) -> list[str]:
    return [sys.executable, os.path.abspath(__file__), "--expect-sigterm"]


def expect_sigterm(cmd: list[str]) -> int:
    """Runs `cmd` (a Godot scenario); passes only if SIGTERM ended it (prints the check and
    @@DONE lines in the scenario's protocol, as the scenario itself cannot)."""
    role = next((a[5:] for a in cmd if a.startswith("role=")), "main")
    rc = subprocess.call(cmd)
    ok = rc == -signal.SIGTERM
    verdict = "ok" if ok else "fail"
    print(f"@@CHECK {verdict} {role}.killed_by_sigterm exit status {rc}", flush=True)
    print(f"@@DONE failures={0 if ok else 1} checks=1", flush=True)
    return 0 if ok else 1


def _sigterm_kills(checks: Checks, ctx: Ctx, role: str, client_port: int | None) -> None:
    """SIGTERM to `role`'s Godot: gone within 1 s, its client (if any) reads EOF with no
    close frame."""
    pid, why = ctx.godot_pid(role)
    if not checks.check(pid is not None, f"{role}_pid", why):
        return
    c = None
    if client_port is not None:
        c = rawws.Client(client_port)
        checks.check(c.handshake() >= 2, f"{role}_client_connected")
    t0 = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    while time.monotonic() < t0 + 3 and not process_gone(pid):
        time.sleep(0.01)
    took = time.monotonic() - t0
    checks.check(process_gone(pid) and took < 1.0, f"{role}_gone_at_once",
                 f"{'gone' if process_gone(pid) else 'alive'} {took:.2f}s after SIGTERM")
    if c is not None:
        code, reason, how = c.read_close(2.0)
        checks.check(code is None and "within" not in how, f"{role}_eof_without_close_frame",
                     f"{code} {reason!r} ({how})")
        c.close()


def _twice(checks: Checks, ctx: Ctx) -> None:
    """Opted in: the first SIGTERM starts the drain (the client reads 1001), the second ends
    the process at once."""
    pid, why = ctx.godot_pid("twice")
    if not checks.check(pid is not None, "twice_pid", why):
        return
    c = rawws.Client(ctx.port + 5)
    checks.check(c.handshake() >= 2, "twice_client_connected")
    os.kill(pid, signal.SIGTERM)
    code, reason, _ = c.read_close(5.0)  # not answered: the drain goes on
    checks.check(code == 1001 and reason == REASON and not process_gone(pid),
                 "twice_first_drains", f"{code} {reason!r}, alive {not process_gone(pid)}")
    t0 = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    while time.monotonic() < t0 + 3 and not process_gone(pid):
        time.sleep(0.01)
    took = time.monotonic() - t0
    checks.check(process_gone(pid) and took < 1.0, "twice_second_ends_it",
                 f"{'gone' if process_gone(pid) else 'alive'} {took:.2f}s after the second")
    c.close()


def _server(checks: Checks, ctx: Ctx) -> None:
    pid, why = ctx.godot_pid("server")
    if not checks.check(pid is not None, "server_pid", why):
        return
    line = get(ctx.port)[0]
    checks.check(line.startswith("HTTP/1.1 200"), "health_200_before", line)
    clients = [rawws.Client(ctx.port), rawws.Client(ctx.port + 4)]
    checks.check(all(c.handshake() >= 2 for c in clients), "clients_connected")
    t0 = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    # During shutdown_delay: 503 while the listener still answers and nobody was told.
    line = ""
    while time.monotonic() < t0 + DELAY / 2 and not line.startswith("HTTP/1.1 503"):
        line = get(ctx.port)[0]
    checks.check(line.startswith("HTTP/1.1 503"), "health_503_in_the_delay",
                 f"{line!r} {time.monotonic() - t0:.2f}s after SIGTERM")
    for i, c in enumerate(clients):
        code, reason, _ = c.read_close(DELAY + 3.0)
        checks.check(code == 1001 and reason == REASON, f"close_1001_peer{i + 1}",
                     f"{code} {reason!r} {time.monotonic() - t0:.2f}s after SIGTERM")
        c.send(rawws.encode_frame(8, (1000).to_bytes(2, "big")))
        c.close()
    told = time.monotonic() - t0
    try:
        line = get(ctx.port)[0]
    except OSError as e:
        line = f"refused ({e.strerror})"
    checks.check(not line.startswith("HTTP/1.1"), "listener_closed_after", line)
    ctx.barrier("done")
    while time.monotonic() < t0 + GRACE + 5 and not process_gone(pid):
        time.sleep(0.02)
    gone = time.monotonic() - t0
    checks.check(process_gone(pid) and gone <= GRACE, "exited_within_the_grace_period",
                 f"gone {gone:.2f}s after SIGTERM (grace {GRACE:g}s)")
    checks.info("drain", f"close frames {told * 1000:.0f} ms after SIGTERM (delay "
                f"{DELAY:g}s), process gone after {gone:.2f}s")


def sigterm_drain_hook(ctx: Ctx) -> list:
    checks = Checks()
    try:
        if not all(ctx.wait_flag(f"{r}_ready", 20) for r in ("server", "plain", "twice")):
            return checks + [(False, "py.ready", "a process never got ready")]
        _sigterm_kills(checks, ctx, "plain", ctx.port + 1)
        _twice(checks, ctx)
        _server(checks, ctx)
    except (EOFError, OSError, rawws.Closed) as e:
        checks.check(False, "hook", f"{type(e).__name__}: {e}")
    finally:
        ctx.flag("py_done")
        ctx.barrier("done")
    return checks


if __name__ == "__main__" and sys.argv[1:2] == ["--expect-sigterm"]:
    sys.exit(expect_sigterm(sys.argv[2:]))
