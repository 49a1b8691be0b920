"""failure_close: after a failure close the peer can read the close code (RFC 6455 §7.1.1).

A third-party client, Python's `websockets` (PyPI, installed into the test cache by
tests/provision.py), sends a 100 000-byte message as 10 fragments of 10 000 bytes to a rust
server with the default inbound_buffer_size (65535), five times, then five 1 000 000-byte
messages as 10 fragments. The server refuses it with
1009; the client must read that close frame every time. Before the fix the server dropped the
socket with the client's fragments unread in it, the kernel sent a reset, and the client saw
"no close frame received" (3 of 5 runs here).
"""

from __future__ import annotations

import pywebsockets

ATTEMPTS = 5


def failure_close_hook(ctx) -> list:
    checks: list = []
    try:
        failed = pywebsockets.provide(ctx)
        if failed:
            return failed
        from websockets.exceptions import ConnectionClosed
        from websockets.sync.client import connect
        codes = []
        # The case (10 x 10 000 B), then one that leaves far more unread (10 x 100 000).
        for fragment in [10000] * ATTEMPTS + [100000] * ATTEMPTS:
            with connect(f"ws://127.0.0.1:{ctx.port}/", max_size=None, open_timeout=5,
                         close_timeout=3) as ws:
                ws.recv(timeout=5)  # the 4-byte id greeting
                try:
                    ws.send(b"x" * fragment for _ in range(10))  # one fragmented message
                    ws.recv(timeout=5)
                    codes.append("no close")
                except ConnectionClosed as e:
                    codes.append(e.rcvd.code if e.rcvd else f"no close frame ({e})")
                except TimeoutError:
                    codes.append("timeout")
        checks.append((all(c == 1009 for c in codes), "py.close_code_read",
                       f"close codes the websockets client read: {codes}"))
    finally:
        ctx.barrier("done")
    return checks
