"""Python side of tests/godot/sigterm_drain.gd: SIGTERM to deploy/entrypoint.sh, the Godot
server's parent, must become a graceful shutdown() that a connected client sees as close 1001.
Also the row's prefix, which runs the server under entrypoint.sh.
"""

from __future__ import annotations

import os
import signal
import time

import rawws
from harness import REPO, Checks, Ctx
from health_hook import get

ENTRYPOINT = os.path.join(REPO, "deploy", "entrypoint.sh")


def server_prefix(port: int, sync_dir: str) -> list[str]:
    return ["env", f"PORT={port}", f"DRAIN_FILE={os.path.join(sync_dir, 'drain')}",
            "DRAIN_SECONDS=5", ENTRYPOINT]


def parent_pid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def sigterm_drain_hook(ctx: Ctx) -> list:
    checks = Checks()
    try:
        if not ctx.wait_flag("server_ready", 15):
            return checks + [(False, "py.server_ready", "the server never got ready")]
        pid, why = ctx.godot_pid("server")
        if not checks.check(pid is not None, "godot_pid", why):
            return checks
        shell = parent_pid(pid)
        with open(f"/proc/{shell}/cmdline", "rb") as f:
            cmdline = f.read()
        if not checks.check(b"entrypoint.sh" in cmdline, "under_entrypoint", repr(cmdline)):
            return checks
        line = get(ctx.port)[0]
        checks.check(line.startswith("HTTP/1.1 200"), "health_200_before", line)
        c = rawws.Client(ctx.port)
        checks.check(c.handshake() >= 2, "client_connected")
        t0 = time.monotonic()
        os.kill(shell, signal.SIGTERM)
        code, reason, _ = c.read_close(5.0)
        took = time.monotonic() - t0
        checks.check(code == 1001 and reason == "server restarting", "close_1001",
                     f"{code} {reason!r}")
        c.send(rawws.encode_frame(8, (1000).to_bytes(2, "big")))
        c.close()
        try:
            line = get(ctx.port)[0]
        except OSError as e:
            line = f"refused ({e.strerror})"
        checks.check(not line.startswith("HTTP/1.1 200"), "listener_closed_after", line)
        checks.info("drain", f"close frame {took * 1000:.0f} ms after SIGTERM")
    except (EOFError, OSError) as e:
        checks.check(False, "hook", f"{type(e).__name__}: {e}")
    finally:
        ctx.flag("py_done")
        ctx.barrier("done")
    return checks
