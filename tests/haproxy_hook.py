"""Python side of tests/godot/haproxy.gd: a real HAProxy in TCP mode in front of the rust
server. HAProxy is `$HAPROXY`, the `haproxy` on PATH, or Debian's unpacked into the private
cache by tests/provision.py.

It runs in the foreground (`haproxy -db -f CONF`) with a configuration written into the test's
sync directory; its connections to the server come from 127.0.0.2 (`source`), the one address
the server trusts, so an address of 127.0.0.1 on the server can only come from the PROXY
header. Frontends (base port P): P+5 `send-proxy-v2`, P+6 `send-proxy` (v1), both to P+0.
The v2 backend also health-checks the server (`option httpchk GET /healthz`, the header sent
on the checks too with `check-send-proxy`), read back through HAProxy's stats socket.

The hook flags `haproxy_ready` once both frontends accept connections (or `haproxy_failed`,
with a failed check saying why), connects one raw client through each frontend and checks that
the server reports exactly its address and port, follows the health check (UP, DOWN once the
server refuses new connections: flags `refuse`/`accept` for the server, which answers
`refusing`/`accepting`), flags `py_done`, and stops HAProxy (SIGTERM to
the process it started) once the Godot processes have exited.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time

import provision
import rawws
from harness import Checks, Ctx
from proxy_hook import listening

FRONTENDS = {"v2": (5, "send-proxy-v2"), "v1": (6, "send-proxy")}
# The v2 backend checks the server's health_path, with the PROXY header on the checks too.
CHECK = "    option httpchk GET /healthz\n"
CHECK_ARGS = " check check-send-proxy inter 200ms rise 1 fall 1"


def server_state(sock: str, backend: str = "be_v2", server: str = "game") -> dict:
    """backend/server's row of HAProxy's `show stat` (status, check_status, check_code, ...)
    read through the stats socket `sock`; {} if there is no such row."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        s.connect(sock)
        s.sendall(b"show stat\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    lines = data.decode(errors="replace").splitlines()
    names = lines[0].lstrip("# ").split(",") if lines else []
    for ln in lines[1:]:
        row = dict(zip(names, ln.split(",")))
        if row.get("pxname") == backend and row.get("svname") == server:
            return row
    return {}


def wait_state(sock: str, status: str, seconds: float, backend: str = "be_v2",
               server: str = "game") -> dict:
    """backend/server's row once its status is `status` after a layer-7 check (or the last
    one seen after `seconds`)."""
    end = time.monotonic() + seconds
    row: dict = {}
    while time.monotonic() < end:
        try:
            row = server_state(sock, backend, server)
        except OSError as e:
            row = {"error": str(e)}
        if row.get("status") == status and row.get("check_status", "").startswith("L7"):
            return row
        time.sleep(0.1)
    return row


def _health(checks: Checks, ctx: Ctx, sock: str) -> None:
    """HAProxy's httpchk through the PROXY header: UP (200), DOWN once the server refuses new
    connections (503), UP again."""
    def brief(r: dict) -> dict:
        return {k: r.get(k) for k in ("status", "check_status", "check_code", "error")}
    row = wait_state(sock, "UP", 5)
    checks.check(row.get("status") == "UP" and row.get("check_code") == "200",
                 "httpchk_up", str(brief(row)))
    ctx.flag("refuse")
    if ctx.wait_flag("refusing", 10):
        row = wait_state(sock, "DOWN", 5)
        checks.check(row.get("status") == "DOWN" and row.get("check_code") == "503",
                     "httpchk_down_while_refusing", str(brief(row)))
    ctx.flag("accept")
    if ctx.wait_flag("accepting", 10):
        row = wait_state(sock, "UP", 5)
        checks.check(row.get("status") == "UP" and row.get("check_code") == "200",
                     "httpchk_up_again", str(brief(row)))


def config_head(test: str, sock: str, maxconn: int = 256, idle: str = "30s") -> str:
    """The global and defaults sections: TCP mode, the stats socket `sock`, connections idle
    for `idle` closed."""
    return f"""# Written by tests/{test}_hook.py for one run of the {test} scenario.
global
    maxconn {maxconn}
    stats socket {sock} mode 600 level admin
defaults
    mode tcp
    timeout connect 2s
    timeout client {idle}
    timeout server {idle}
"""


def haproxy_config(port: int, sock: str) -> str:
    parts = [config_head("haproxy", sock)]
    for name, (offset, send) in FRONTENDS.items():
        parts.append(f"""
frontend fe_{name}
    bind 127.0.0.1:{port + offset}
    default_backend be_{name}
backend be_{name}
{CHECK if name == "v2" else ""}    server game 127.0.0.1:{port} {send} source 127.0.0.2{CHECK_ARGS if name == "v2" else ""}
""")
    return "".join(parts)


def start_haproxy(ctx: Ctx, config: str, ports: list[int], checks: Checks,
                  stderr_lines: list[str]) -> subprocess.Popen | None:
    """HAProxy with `config`, once every port in `ports` accepts connections; None (and a
    failed check, and the flag `haproxy_failed`) if it does not start."""
    try:
        haproxy = provision.path("haproxy")
    except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
        ctx.flag("haproxy_failed")
        checks.check(False, "haproxy", f"no haproxy: {e} (tests/provision.py provides Debian's "
                     "privately with apt-get; or set $HAPROXY to a haproxy binary)")
        return None
    conf = os.path.join(ctx.dir, "haproxy.cfg")
    with open(conf, "w") as f:
        f.write(config)
    t0 = time.monotonic()
    proc = subprocess.Popen([haproxy, "-db", "-f", conf], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            errors="replace", start_new_session=True)
    threading.Thread(target=lambda: stderr_lines.extend(ln.rstrip() for ln in proc.stderr),
                     daemon=True).start()
    end = time.monotonic() + 10
    while time.monotonic() < end and proc.poll() is None:
        if all(listening(p) for p in ports):
            checks.info("haproxy_start", f"HAProxy ready in {time.monotonic() - t0:.2f}s")
            return proc
        time.sleep(0.05)
    ctx.flag("haproxy_failed")
    checks.check(False, "haproxy_start", f"HAProxy did not start (exit code {proc.poll()}): "
                 + " | ".join(stderr_lines[-10:]))
    stop_haproxy(proc)
    return None


def alerts(stderr_lines: list[str]) -> list[str]:
    """HAProxy's [ALERT] lines, but "has no server available", which a test that takes every
    server of a backend down causes on purpose."""
    return [ln for ln in stderr_lines
            if "[ALERT]" in ln and "has no server available" not in ln]


def stop_haproxy(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


@provision.needs("haproxy")
def haproxy_hook(ctx: Ctx) -> list:
    checks = Checks()
    stderr_lines: list[str] = []
    proc = None
    try:
        if not ctx.wait_flag("server_ready", 15):
            ctx.flag("haproxy_failed")
            return checks + [(False, "py.server_ready", "the server never got ready")]
        sock = os.path.join(ctx.dir, "haproxy.sock")
        proc = start_haproxy(ctx, haproxy_config(ctx.port, sock),
                             [ctx.port + off for off, _ in FRONTENDS.values()], checks,
                             stderr_lines)
        if proc is None:
            return checks
        ctx.flag("haproxy_ready")
        for name, (offset, _) in FRONTENDS.items():
            c = None
            try:
                c = rawws.Client(ctx.port + offset)
                want = f"127.0.0.1:{c.sock.getsockname()[1]}"
                checks.check(c.handshake() >= 2, f"{name}.id")
                _, report, _, _ = c.recv_frame(5.0)
                checks.check(report.decode() == want, f"{name}.server_saw_exactly_the_client",
                             f"server reported {report!r}, expected {want}")
                c.send_frame(2, b"through " + name.encode())
                _, echo, _, _ = c.recv_frame(5.0)
                checks.check(echo == b"through " + name.encode(), f"{name}.echo", repr(echo))
            except (EOFError, OSError) as e:
                checks.check(False, f"{name}.raw_client", f"{type(e).__name__}: {e}")
            finally:
                if c is not None:
                    c.close()
        # The Godot clients first: refusing would turn them away.
        checks.check(ctx.wait_flag("clients_done", 20), "godot_clients_done")
        _health(checks, ctx, sock)
        ctx.flag("py_done")
        ctx.barrier("done")
        ctx.stop.wait(30)  # keep HAProxy until the Godot processes have exited
    finally:
        ctx.flag("py_done")
        ctx.barrier("done")
        stop_haproxy(proc)
        # "no server available" is the DOWN phase of the health check, on purpose.
        bad = alerts(stderr_lines)
        if bad:
            checks.check(False, "haproxy_alerts", " | ".join(bad[:5]))
    return checks
