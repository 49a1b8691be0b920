"""Python side of tests/godot/health.gd: plain HTTP requests (no upgrade) on the game port of a
rust server with health_path "/healthz" (port+0) and one without (port+1), before, while and
after the server refuses new connections, beside a WebSocket client that must keep working;
and health_allow on three more servers (port+3..5).
"""

from __future__ import annotations

import socket
import time

import rawws
from harness import Checks, Ctx


def http(port: int, request: str, timeout: float = 3.0) -> tuple[str, dict, bytes]:
    """Sends `request` (CRLF line ends added), reads until the server closes: (status line,
    headers in lower case, body). ("", {}, b"") if nothing came."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request.replace("\n", "\r\n").encode())
        data = b""
        end = time.monotonic() + timeout
        try:
            while time.monotonic() < end:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
    head, _, body = data.partition(b"\r\n\r\n")
    status, fields = rawws.parse_head(head) if head else ("", [])
    return status, {k.lower(): v for k, v in fields}, body


def get(port: int, path: str = "/healthz", method: str = "GET", version: str = "1.1"):
    return http(port, f"{method} {path} HTTP/{version}\nHost: 127.0.0.1:{port}\n\n")


def _allow_cases(checks: Checks, port: int, phase: str, status: str) -> None:
    """health_allow (tests/godot/health.gd's servers port+3..5): an address not allowed gets
    what a request on any other path gets, an allowed one `status` (200, or 503 while the
    server refuses new connections). Behind a PROXY header the client it names is checked."""
    denied, allowed, proxied = port + 3, port + 4, port + 5
    other = get(denied, "/other")[0]
    got = get(denied)
    checks.check(got[0] == other and not got[0].startswith("HTTP/1.1 200"),
                 f"{phase}_denied_as_plain_request",
                 f"/healthz {got[0]!r}, /other {other!r}")
    _expect(checks, f"{phase}_allowed", get(allowed), status)

    def through(client: str):
        return http(proxied, f"PROXY TCP4 {client} 127.0.0.1 40000 {proxied}\n"
                    f"GET /healthz HTTP/1.1\nHost: 127.0.0.1\n\n")
    _expect(checks, f"{phase}_proxied_allowed", through("192.0.2.9"), status)
    plain = http(proxied, f"PROXY TCP4 198.51.100.1 127.0.0.1 40000 {proxied}\n"
                 f"GET /other HTTP/1.1\nHost: 127.0.0.1\n\n")[0]
    got = through("198.51.100.1")
    checks.check(got[0] == plain and not got[0].startswith("HTTP/1.1 200"),
                 f"{phase}_proxied_denied_as_plain_request",
                 f"/healthz {got[0]!r}, /other {plain!r} (a PROXY header from trusted "
                 "127.0.0.1 naming 198.51.100.1)")


def _expect(checks: Checks, name: str, got, status: str, body: bytes | None = None) -> None:
    line, headers, data = got
    ok = line.startswith(f"HTTP/1.1 {status}") and (body is None or data == body)
    checks.check(ok, name, f"{line!r} {headers} body {data[:60]!r} (expected {status}"
                 + (f" {body!r})" if body is not None else ")"))


def _echo(checks: Checks, name: str, c: rawws.Client) -> None:
    try:
        c.send_frame(2, name.encode())
        op, data, _, _ = c.recv_frame(5.0)
        checks.check(op == 2 and data == name.encode(), name, f"{op} {data!r}")
    except (EOFError, OSError) as e:
        checks.check(False, name, f"connection lost: {e}")


def health_hook(ctx: Ctx) -> list:
    checks = Checks()
    keep = None
    try:
        if not ctx.wait_flag("server_ready", 15):
            return checks + [(False, "py.server_ready", "the server never got ready")]
        port, plain = ctx.port, ctx.port + 1
        ok = get(port)
        _expect(checks, "get_200", ok, "200", b"ok\n")
        checks.check(ok[1].get("content-type", "").startswith("text/plain")
                     and ok[1].get("content-length") == "3", "get_headers", str(ok[1]))
        head = get(port, method="HEAD")
        _expect(checks, "head_200_no_body", head, "200", b"")
        checks.check(head[1].get("content-length") == "3", "head_content_length", str(head[1]))
        _expect(checks, "http10_200", get(port, version="1.0"), "200", b"ok\n")
        _expect(checks, "query_ignored_200", get(port, "/healthz?probe=1"), "200", b"ok\n")
        _expect(checks, "other_path_400", get(port, "/other"), "400")
        _expect(checks, "post_400", get(port, method="POST"), "400")
        _expect(checks, "no_health_path_400", get(plain), "400")
        # An upgrade on the health path itself is a WebSocket client.
        ws = rawws.Client(port)
        status = ws.upgrade("/healthz")
        checks.check(status.startswith("HTTP/1.1 101"), "upgrade_on_health_path", status)
        ws.close()
        _allow_cases(checks, port, "accepting", "200")
        keep = rawws.Client(port)
        checks.check(keep.handshake() >= 2, "keep_connected")

        ctx.flag("refuse")
        if not checks.check(ctx.wait_flag("refusing", 10), "refusing", "server never refused"):
            return checks
        _expect(checks, "refusing_get_503", get(port), "503")
        t0 = time.monotonic()
        late = rawws.Client(port)
        status = late.upgrade()
        took = time.monotonic() - t0
        late.close()
        checks.check(status.startswith("HTTP/1.1 503") and took < 0.5, "refusing_upgrade_503",
                     f"{status!r} after {took:.3f}s")
        _echo(checks, "keep_echo_while_refusing", keep)
        _allow_cases(checks, port, "refusing", "503")

        ctx.flag("accept")
        if not checks.check(ctx.wait_flag("accepting", 10), "accepting", "server never accepted"):
            return checks
        _expect(checks, "accepting_again_200", get(port), "200", b"ok\n")
        again = rawws.Client(port)
        checks.check(again.handshake() >= 2, "upgrade_again")
        again.close()
        _echo(checks, "keep_echo_after", keep)
    except (EOFError, OSError) as e:
        checks.check(False, "hook", f"{type(e).__name__}: {e}")
    finally:
        ctx.flag("py_done")
        ctx.barrier("done")
        if keep is not None:
            keep.close()
    return checks
