"""Python side of the handshake_handler[rust] scenario (tests/godot/handshake_handler.gd).

Raw HTTP upgrade requests against a RustWebSocketMultiplayerPeer server whose handshake handler
answers by the request path; each check reads the status line (and, for a 101, the 4-byte id
message) or measures when the server closes the TCP connection. Standard library only; run by
tests/run_tests.py as a hook with `hook_party=True` (barrier party "py").
"""

from __future__ import annotations

import threading
import time

import rawws
from harness import Checks


class Upgrade(rawws.Client):
    """A client that sends one WebSocket upgrade request (path, extra header lines, padding to
    a given head size) and reads the response head and frames."""

    def __init__(self, port: int, path: str, headers: list[str] | None = None,
                 head_size: int = 0, extra=None, timeout: float = 5.0):
        super().__init__(port, timeout=timeout)
        self.local_port = self.sock.getsockname()[1]
        self.elapsed: float | None = None  # seconds from the request to the response head
        lines = list(headers or [])
        if extra is not None:
            lines += extra(self)
        head = rawws.request_head(port, path, self.key, lines)
        if head_size:
            # One padding header so that the whole head (with the final CRLF) is head_size bytes.
            pad = head_size - len(head) - len("X-Pad: \r\n\r\n")
            head += "X-Pad: " + "a" * pad + "\r\n"
        self.request = (head + "\r\n").encode()
        self.t0 = time.monotonic()
        try:
            self.sock.sendall(self.request)
            self.send_error = ""
        except OSError as e:  # the server may close before reading a big head
            self.send_error = f"{type(e).__name__}: {e}"

    def take_head(self) -> tuple[str, list[tuple[str, str]]]:
        """As rawws's (read_head's "" when no head came); sets self.elapsed when one arrived."""
        head = super().take_head()
        self.elapsed = time.monotonic() - self.t0
        return head

    def eof_after_request(self, timeout: float) -> float | None:
        """Seconds from the request until the server closed the TCP, None if it did not
        within `timeout` (what arrives meanwhile stays in self.buf)."""
        return None if self.wait_eof(timeout) is None else time.monotonic() - self.t0


def handshake_handler_hook(ctx) -> list:
    checks = Checks()
    check, info = checks.check, checks.info
    conns: list[Upgrade] = []

    def open_(path: str, **kw) -> Upgrade:
        u = Upgrade(ctx.port, path, **kw)
        conns.append(u)
        return u

    def admitted(u: Upgrade, name: str, max_s: float | None = None) -> bool:
        """101 with the right accept key, then the 4-byte id message."""
        st = u.read_head(5.0)
        if not check(st.startswith("HTTP/1.1 101"), f"{name}_status_101",
                     st or f"no response ({u.send_error or 'closed or timed out'})"):
            return False
        check(u.headers.get("sec-websocket-accept") == u.expected_accept, f"{name}_accept_key",
              str(u.headers))
        if max_s is not None:
            check(u.elapsed < max_s, f"{name}_prompt", f"101 after {u.elapsed:.3f}s")
        try:
            op, data, _, _ = u.recv_frame(5.0)
            pid = int.from_bytes(data, "little", signed=True) if len(data) == 4 else 0
            return check(op == 2 and len(data) == 4 and pid >= 2, f"{name}_id_message",
                         f"opcode {op}, {data.hex()}")
        except (EOFError, OSError) as e:
            return check(False, f"{name}_id_message", f"no id message: {e}")

    def refused(u: Upgrade, name: str, want: str) -> None:
        """Exactly the status line `want`, then the server closes the TCP."""
        st = u.read_head(5.0)
        check(st == want, f"{name}_status", f"got {st!r}, expected {want!r}"
              + (f" ({u.send_error})" if u.send_error else ""))
        if st == want:
            t = u.eof_after_request(3.0)
            check(t is not None, f"{name}_tcp_closed",
                  "TCP still open 3s after the response" if t is None
                  else f"closed {t:.3f}s after the request")

    def wait_parties(name: str, timeout: float) -> bool:
        ctx.barrier(name)
        end = time.monotonic() + timeout
        for p in ("server", "client"):
            if not ctx.wait_flag(f"bar_{name}.{p}", max(0.0, end - time.monotonic())):
                return check(False, f"barrier_{name}", f"{p} never reached {name}")
        return True

    try:
        if not ctx.wait_flag("server_ready", 15):
            return [(False, "py.server_ready", "server never signalled server_ready")]
        if not wait_parties("godot_done", 15):
            return checks
        _raw_requests(ctx, open_, admitted, refused, check, info)
        if not wait_parties("py_done", 20):
            return checks
        # The handler removed: admitted without a call, even with a bad token.
        if check(ctx.wait_flag("handler_removed", 15), "handler_removed", "flag never set"):
            admitted(open_("/after_removed?token=bad"), "no_handler_admitted", max_s=0.5)
        wait_parties("removed_done", 15)
        wait_parties("done", 15)
    finally:
        for name in ("godot_done", "py_done", "removed_done", "done"):
            ctx.barrier(name)
        ctx.wait_flag("bar_done.server", 15)
        for u in conns:
            u.close()
    return checks


def _raw_requests(ctx, open_, admitted, refused, check, info) -> None:
    n_admitted = 0  # raw clients admitted and still open

    # Answers at once: a bool, an HTTP status, or through the object.
    if admitted(open_("/token?token=good"), "token_good"):
        n_admitted += 1
    refused(open_("/token?token=bad"), "token_bad", "HTTP/1.1 401 Unauthorized")
    refused(open_("/false"), "return_false", "HTTP/1.1 403 Forbidden")
    refused(open_("/reject_obj"), "reject_503", "HTTP/1.1 503 Server full")
    refused(open_("/reject_default"), "reject_default", "HTTP/1.1 403 Forbidden")
    refused(open_("/status404"), "return_404", "HTTP/1.1 404 Not Found")

    # /never (kept unanswered) and /late (accept() 0.3 s later) at once; a good client is
    # admitted meanwhile.
    never = open_("/never")
    late = open_("/late")
    never_result: dict = {}

    def watch_never() -> None:
        never_result["eof"] = never.eof_after_request(6.0)
        never_result["bytes"] = never.buf

    th = threading.Thread(target=watch_never, daemon=True)
    th.start()
    if admitted(open_("/token?token=good"), "meanwhile_good", max_s=0.25):
        n_admitted += 1
    if admitted(late, "late"):
        n_admitted += 1
        # The handler answers from a 0.3 s Godot timer, which fires on a frame boundary and
        # can land a few ms early: allow 0.28 s.
        check(0.28 <= late.elapsed < 1.0, "late_101_after_0_3s", f"101 after {late.elapsed:.3f}s")
        info("late", f"late accept(): 101 after {late.elapsed:.3f}s")
    th.join(8.0)
    t = never_result.get("eof")
    got = never_result.get("bytes", b"")
    check(got == b"", "never_no_response", f"received {got[:80]!r}")
    check(t is not None and 0.8 <= t <= 2.0, "never_dropped_after_timeout",
          "TCP still open after 6s" if t is None else f"closed after {t:.3f}s")
    if t is not None:
        info("never", f"unanswered: TCP closed after {t:.3f}s")

    # Headers and the client's address/port as the handler sees them.
    auth = open_("/auth?a=1&b=two", headers=["Authorization: Bearer x", "X-Multi: a",
                                              "X-Multi: b"],
                 extra=lambda u: [f"X-Port: {u.local_port}"])
    if admitted(auth, "auth"):
        n_admitted += 1
    # The handler calls back into the server: get_peer_ids() = 2 Godot clients + ours.
    ctx.put_value("peers_expected", 2 + n_admitted)
    if admitted(open_("/peers"), "peers_callback"):
        n_admitted += 1

    # Request heads: 15000 bytes admitted; over 16 KiB -> 431 before the handler is asked.
    if admitted(open_("/mid", head_size=15000), "head_15000"):
        n_admitted += 1
    refused(open_("/big", head_size=16 * 1024 + 100), "head_16484",
            "HTTP/1.1 431 Request Header Fields Too Large")
    refused(open_("/big20", head_size=20 * 1024), "head_20480",
            "HTTP/1.1 431 Request Header Fields Too Large")

    # A handler that neither answers nor keeps the object: observed, not checked.
    dropped = open_("/dropped")
    st = dropped.read_head(3.0)
    info("dropped", f"unanswered and not kept: {st!r}"
         + (f" after {dropped.elapsed:.3f}s" if dropped.elapsed is not None else ""))
