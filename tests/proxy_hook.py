"""Python side of tests/godot/proxy.gd: a real nginx as a WebSocket reverse proxy on 127.0.0.1 in
front of the Godot servers. nginx is `$NGINX`, the `nginx` on PATH, or Debian's unpacked into the
private cache by tests/provision.py (run_tests.py provides it before the tests start).

nginx runs in the foreground with a configuration and prefix of its own in the test's sync
directory (`nginx -c CONF -p PREFIX -g 'daemon off; pid ...; error_log stderr;'`), so nothing
of the system's nginx setup is used. Listeners (base port P of the test):

  P+5 -> P+0 (trusted)    X-Forwarded-For "203.0.113.7"
  P+6 -> P+1 (untrusted)  X-Forwarded-For "203.0.113.7"
  P+7 -> P+2 (other)      X-Forwarded-For "203.0.113.7"
  P+8 -> P+0 (trusted)    X-Forwarded-For $proxy_add_x_forwarded_for
  P+9 -> P+3 (cidr)       X-Forwarded-For $proxy_add_x_forwarded_for
each with X-Forwarded-Port $remote_port. Between nginx's start and the end, the hook's raw
clients check get_peer_port (PORT_CASES).

The hook flags `proxy_ready` once every listener accepts connections (or `proxy_failed`, with a
failed check saying why: "no nginx: <why>" when there is none), and
stops nginx (SIGTERM to the process it started) once both Godot processes have exited.
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
from harness import Checks

MISSING_MESSAGE = ("no nginx: {} (tests/provision.py provides Debian's privately with apt-get; "
                   "or set $NGINX to an nginx binary)")
FIXED = '"203.0.113.7"'
ADD = "$proxy_add_x_forwarded_for"
# listen offset -> (upstream offset, X-Forwarded-For value)
ROUTES = {5: (0, FIXED), 6: (1, FIXED), 7: (2, FIXED), 8: (0, ADD), 9: (3, ADD)}


def nginx_config(prefix: str, port: int) -> str:
    servers = []
    for listen, (up, xff) in ROUTES.items():
        servers.append(f"""
    server {{
        listen 127.0.0.1:{port + listen};
        location / {{
            proxy_pass http://127.0.0.1:{port + up};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header X-Forwarded-For {xff};
            proxy_set_header X-Forwarded-Port $remote_port;
            proxy_read_timeout 60s;
        }}
    }}""")
    return f"""# Written by tests/proxy_hook.py for one run of the proxy scenario.
worker_processes 1;
events {{ worker_connections 256; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{''.join(servers)}
}}
"""


# X-Forwarded-Port: raw clients (tests/rawws.py) whose first message "port?<label>" the
# server answers with "port:<label>:<get_peer_address>:<get_peer_port>" (tests/godot/proxy.gd;
# servers 0 and 1 have trust_forwarded_port on, 4 has the default, off).
# [label, port offset, extra header lines, the address, the port: "own" (the client's socket),
# "not_own" (nginx's, the connection's own), or a number].
FORWARDED = "X-Forwarded-For: 198.51.100.20"
PORT_CASES = [
    # nginx sends X-Forwarded-Port $remote_port: the client's own port.
    ["nginx_trusted", 5, [], "203.0.113.7", "own"],
    ["nginx_untrusted", 6, [], "127.0.0.1", "not_own"],
    # The address chosen is 192.0.2.66, one hop left of nginx's entry: nginx's port header
    # is about 127.0.0.1 (the hop it wrote), so the connection's own port is kept.
    ["nginx_chain_port_of_another_hop", 8,
     ["X-Forwarded-For: 198.51.100.9, 192.0.2.66"], "192.0.2.66", "not_own"],
    ["direct_trusted", 0, [FORWARDED, "X-Forwarded-Port: 4242"], "198.51.100.20", 4242],
    # Not a port: ignored with a warning (the row's rust_stderr), the socket's port kept.
    ["direct_trusted_bad_port", 0, [FORWARDED, "X-Forwarded-Port: 99999"], "198.51.100.20",
     "own"],
    ["direct_untrusted", 1, [FORWARDED, "X-Forwarded-Port: 4242"], "127.0.0.1", "own"],
    # A trusted proxy without trust_forwarded_port (the default): the address is believed,
    # the port header is not (AWS ALB and Traefik put 443 there).
    ["direct_trusted_default_ignores_port", 4, [FORWARDED, "X-Forwarded-Port: 4242"],
     "198.51.100.20", "own"],
]
THROUGH_NGINX = sum(1 for c in PORT_CASES if c[1] >= 5)


def _forwarded_ports(ctx, checks: Checks) -> None:
    """Each of PORT_CASES: connect, ask the server what it sees, compare."""
    if not ctx.wait_flag("server_ready", 15):
        checks.check(False, "forwarded_port_server_ready", "the server never got ready")
        return
    for label, offset, headers, want_addr, want_port in PORT_CASES:
        try:
            c = rawws.Client(ctx.port + offset)
            own = c.sock.getsockname()[1]
            c.handshake(headers=headers)
            c.send_frame(2, f"port?{label}".encode())
            op, data, _, _ = c.recv_frame(5)
            c.close_cleanly()
            c.close()
        except (OSError, EOFError, rawws.Closed) as e:
            checks.check(False, f"forwarded_port.{label}", f"{type(e).__name__}: {e}")
            continue
        _, got_label, addr, port = data.decode(errors="replace").split(":")
        port = int(port)
        good = got_label == label and addr == want_addr and (
            port == own if want_port == "own" else port != own if want_port == "not_own"
            else port == want_port)
        checks.check(good, f"forwarded_port.{label}",
                     f"server saw {addr}:{port}; the client's port {own}, want "
                     f"{want_addr}:{want_port}")


def listening(port: int) -> bool:
    """Whether 127.0.0.1:port accepts a TCP connection (also used by tests/haproxy_hook.py)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


@provision.needs("nginx")
def proxy_hook(ctx) -> list:
    checks = Checks()
    try:
        nginx = provision.path("nginx")
    except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
        ctx.flag("proxy_failed")
        ctx.barrier("done")
        return [(False, "py.nginx", MISSING_MESSAGE.format(e))]
    prefix = os.path.join(ctx.dir, "nginx")
    os.makedirs(prefix, exist_ok=True)
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
        f.write(nginx_config(prefix, ctx.port))
    stderr_lines: list[str] = []
    proc = None
    try:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [nginx, "-c", conf, "-p", prefix + "/",
             "-g", f"daemon off; pid {prefix}/nginx.pid; error_log stderr;"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, errors="replace", start_new_session=True)
        reader = threading.Thread(target=lambda: stderr_lines.extend(
            ln.rstrip() for ln in proc.stderr), daemon=True)
        reader.start()
        ports = [ctx.port + off for off in ROUTES]
        end = time.monotonic() + 10
        while time.monotonic() < end and proc.poll() is None:
            if all(listening(p) for p in ports):
                break
            time.sleep(0.05)
        if proc.poll() is not None or not all(listening(p) for p in ports):
            ctx.flag("proxy_failed")
            return [(False, "py.nginx_start",
                     f"nginx did not start (exit code {proc.poll()}): "
                     + " | ".join(stderr_lines[-10:]))]
        checks.info("nginx_start", f"nginx ready in {time.monotonic() - t0:.2f}s")
        ctx.flag("proxy_ready")
        try:
            _forwarded_ports(ctx, checks)
        finally:
            ctx.flag("ports_done")
        ctx.barrier("done")
        # Keep nginx until both Godot processes have exited (run_tests sets ctx.stop then).
        ctx.stop.wait(35)
        # nginx logs a connection when it ends: one 101 per proxied WebSocket, 5 cases
        # through nginx x 2 client classes, one more from the built-in client, and the
        # raw clients of _forwarded_ports that go through nginx.
        log = os.path.join(prefix, "access.log")
        n101 = -1
        end = time.monotonic() + 3
        while time.monotonic() < end:
            try:
                with open(log) as f:
                    n101 = sum(1 for ln in f if '" 101 ' in ln)
            except OSError:
                pass
            if n101 >= 11 + THROUGH_NGINX:
                break
            time.sleep(0.05)
        checks.check(n101 == 11 + THROUGH_NGINX, "nginx_upgrades_logged",
                     f"{n101} WebSocket upgrades in nginx's access log, "
                     f"expected {11 + THROUGH_NGINX}")
    finally:
        ctx.barrier("done")
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # fast stop of the nginx started here
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        errors = [ln for ln in stderr_lines if "[emerg]" in ln or "[alert]" in ln
                  or "[crit]" in ln]
        if errors:
            checks.check(False, "nginx_errors", " | ".join(errors[:5]))
    return checks
