"""Python side of tests/godot/shutdown.gd: a raw client that reads the server's packets and its
close frame but never answers it, so the server's shutdown() must cut it at the timeout; and a
new connection after shutdown() began, which must be refused at once.
"""

from __future__ import annotations

import socket
import time

import rawws
from harness import Checks, Ctx

PACKETS = 50


def shutdown_hook(ctx: Ctx) -> list:
    checks = Checks()
    c = None
    try:
        if not ctx.wait_flag("server_ready", 15):
            return checks + [(False, "py.server_ready", "the server never got ready")]
        c = rawws.Client(ctx.port)
        checks.check(c.handshake() >= 2, "connected")
        ctx.flag("py_ready")
        frames = []
        code = None
        while code is None:
            op, data, _, _ = c.recv_frame(10.0)
            if op == 8:
                code = (int.from_bytes(data[:2], "big"), data[2:].decode())
            else:
                frames.append(data)
        t_close = time.monotonic()
        checks.check(len(frames) == PACKETS and all(len(f) == 1000 for f in frames),
                     "packets_before_close", f"{len(frames)} frames before the close frame")
        checks.check(code == (1001, "going away"), "close_frame", str(code))
        if ctx.wait_flag("shutdown_started", 5):
            t0 = time.monotonic()
            try:
                socket.create_connection(("127.0.0.1", ctx.port), timeout=2).close()
                refused = "connected"
            except ConnectionRefusedError:
                refused = ""
            except OSError as e:
                refused = f"{type(e).__name__}: {e}"
            took = time.monotonic() - t0
            checks.check(refused == "" and took < 0.5, "new_connection_refused",
                         f"{refused or 'refused'} after {took:.3f}s")
        # No close reply from here: the server cuts the connection at its timeout (1.5 s).
        cut = c.wait_eof(4.0)
        waited = time.monotonic() - t_close
        checks.check(cut is not None and 1.0 <= waited <= 3.0, "cut_at_timeout",
                     "still open" if cut is None else f"cut {waited:.2f}s after the close frame")
    except (EOFError, OSError) as e:
        checks.check(False, "hook", f"{type(e).__name__}: {e}")
    finally:
        ctx.flag("py_ready")
        ctx.barrier("done")
        if c is not None:
            c.close()
    return checks
