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
        ctx.barrier("done")
        # Keep nginx until both Godot processes have exited (run_tests sets ctx.stop then).
        ctx.stop.wait(35)
        # nginx logs a connection when it ends: one 101 per proxied WebSocket, 5 cases
        # through nginx x 2 client classes, and one more from the built-in client.
        log = os.path.join(prefix, "access.log")
        n101 = -1
        end = time.monotonic() + 3
        while time.monotonic() < end:
            try:
                with open(log) as f:
                    n101 = sum(1 for ln in f if '" 101 ' in ln)
            except OSError:
                pass
            if n101 >= 11:
                break
            time.sleep(0.05)
        checks.check(n101 == 11, "nginx_upgrades_logged",
                     f"{n101} WebSocket upgrades in nginx's access log, expected 11")
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
