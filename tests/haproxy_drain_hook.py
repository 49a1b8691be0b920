"""Python side of tests/godot/haproxy_drain.gd: three rust servers behind one HAProxy frontend,
200 raw clients (tests/rawws.py, a thread each) through it, and one server draining.

HAProxy (started and read as in tests/haproxy_hook.py) listens on port+5; its backend balances
roundrobin over the servers a, b, c (port+0..2), connects from 127.0.0.2 with `send-proxy-v2`
and checks each every 200 ms with `option httpchk GET /healthz` (`check-send-proxy`, rise 1,
fall 1). The hook:

1. waits for the three servers and for HAProxy to see them UP;
2. connects CLIENTS clients; each reads the id greeting and its server's report
   "<server> <address>:<port>" (get_peer_address / get_peer_port), which must equal the
   client's own socket address, and gets an echo; the split over a, b, c must leave none empty;
3. tells a to drain while a thread records
   every change of HAProxy's row for a: it must go DOWN on a 503 check (L7STS, the listener
   still answering) before the checks find the listener closed (L4CON), and before any of a's
   clients is told to leave;
4. each client of a reads close 1001 "server restarting", answers it, reconnects through
   HAProxy and must land on b or c (and pass step 2's checks again), within the grace period
   (the delay plus shutdown()'s timeout); no client may end or fail any other way;
5. flags `count`: b's and c's peer counts add up to CLIENTS, as the clients' own view does.

Two triggers (the row's argument `trigger`): `flag` flags `drain` and a calls shutdown();
`sigterm` sends SIGTERM straight to a's Godot process, where `shutdown_on_sigterm` catches it
and a's termination_requested handler calls the same shutdown(); a quits once
shutdown_completed came: Godot must be gone within the grace period (its exit status is the
harness's: anything but 0 fails the test).
"""

from __future__ import annotations

import collections
import os
import signal
import socket
import threading
import time

import provision
import rawws
from harness import Checks, Ctx, process_gone
from haproxy_hook import alerts, config_head, server_state, start_haproxy, stop_haproxy, \
    wait_state

CLIENTS = 200
SERVERS = ("a", "b", "c")
FRONTEND = 5            # port offset
DELAY = 2.0             # tests/godot/haproxy_drain.gd: shutdown_delay and shutdown()'s timeout
TIMEOUT = 10.0
GRACE = DELAY + TIMEOUT


def _sigterm(checks: Checks, ctx: Ctx) -> tuple[int] | None:
    """SIGTERM to a's Godot process: (its pid,), or None (checks say why)."""
    pid, why = ctx.godot_pid("a")
    if not checks.check(pid is not None, "a_godot_pid", why):
        return None
    os.kill(pid, signal.SIGTERM)
    return (pid,)


def drain_config(port: int, sock: str) -> str:
    servers = "".join(f"    server {name} 127.0.0.1:{port + i} send-proxy-v2 source 127.0.0.2"
                      " check check-send-proxy inter 200ms rise 1 fall 1\n"
                      for i, name in enumerate(SERVERS))
    return config_head("haproxy_drain", sock, maxconn=4 * CLIENTS, idle="120s") + f"""
frontend fe
    bind 127.0.0.1:{port + FRONTEND}
    default_backend be
backend be
    balance roundrobin
    option httpchk GET /healthz
{servers}"""


class Player(threading.Thread):
    """One client: connects through HAProxy, checks the server's report, then reads until
    told to stop; on a close frame from its server it answers and connects again."""

    def __init__(self, port: int, stop: threading.Event):
        super().__init__(daemon=True)
        self.port = port
        self.stop = stop
        self.servers: list[str] = []        # the server of each connection, in order
        self.closes: list[tuple[int | None, str, float]] = []  # (code, reason, when)
        self.reconnected_at: list[float] = []
        self.failures: list[str] = []
        self.conn: rawws.Client | None = None
        self.connected = threading.Event()

    def connect(self) -> None:
        c = rawws.Client(self.port, timeout=15)
        self.conn = c
        own = "%s:%d" % c.sock.getsockname()
        c.handshake(timeout=15)
        op, data, _, _ = c.recv_frame(15)
        server, _, seen = data.decode(errors="replace").partition(" ")
        if op != 2 or server not in SERVERS or seen != own:
            raise ValueError(f"report {data!r}, the client is {own}")
        c.send_frame(2, b"hello " + own.encode())
        op, data, _, _ = c.recv_frame(15)
        if data != b"hello " + own.encode():
            raise ValueError(f"echo {data!r}")
        self.servers.append(server)

    def run(self) -> None:
        try:
            self.connect()
            self.connected.set()
            while not self.stop.is_set():
                try:
                    op, data, _, _ = self.conn.recv_frame(0.25)
                except socket.timeout:
                    continue
                if op != 8:
                    raise ValueError(f"unexpected frame {op} {data[:40]!r}")
                code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
                self.closes.append((code, data[2:].decode(errors="replace"), time.monotonic()))
                self.conn.send_frame(8, data[:2])
                self.conn.wait_eof(5.0)
                self.conn.close()
                if code != 1001:
                    raise ValueError(f"closed with {code}")
                self.connect()
                self.reconnected_at.append(time.monotonic())
        except (OSError, EOFError, ValueError) as e:
            self.failures.append(f"{type(e).__name__}: {e}")
        finally:
            self.connected.set()
            if self.conn is not None and not self.failures:
                self.conn.close_cleanly(5.0)
            if self.conn is not None:
                self.conn.close()


class Watch(threading.Thread):
    """Records every change of (status, check_status, check_code) of one server's row."""

    def __init__(self, sock: str, server: str):
        super().__init__(daemon=True)
        self.sock = sock
        self.server = server
        self.rows: list[tuple[float, str, str, str]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        last = None
        while not self.halt.is_set():
            try:
                r = server_state(self.sock, "be", self.server)
                now = (r.get("status", ""), r.get("check_status", ""), r.get("check_code", ""))
            except OSError as e:
                now = ("error", str(e), "")
            if now != last:
                self.rows.append((time.monotonic(), *now))
                last = now
            time.sleep(0.02)

    def first(self, pred) -> float | None:
        return next((t for t, *row in self.rows if pred(*row)), None)


def _drain(checks: Checks, ctx: Ctx, sock: str, players: list[Player]) -> None:
    """Steps 3 and 4: a drains, its clients move to b and c."""
    movers = [p for p in players if p.servers and p.servers[-1] == "a"]
    watch = Watch(sock, "a")
    watch.start()
    t0 = time.monotonic()
    sigterm = ctx.args.get("trigger") == "sigterm"
    if sigterm:
        pids = _sigterm(checks, ctx)
        if pids is None:
            watch.halt.set()
            return
    else:
        ctx.flag("drain")
    end = t0 + GRACE + 15
    while time.monotonic() < end and not all(p.reconnected_at or p.failures for p in movers):
        time.sleep(0.05)
    # The listener closes DELAY after the drain began: wait for HAProxy's checks to see that.
    while time.monotonic() < end and \
            watch.first(lambda s, c, code: c.lstrip("* ") == "L4CON") is None:
        time.sleep(0.05)
    watch.halt.set()
    watch.join(5)
    log = [(f"{t - t0:.2f}s", *row) for t, *row in watch.rows]
    # check_status: "L7STS" an HTTP answer that is not 2xx/3xx, "L4CON" a refused connection;
    # a leading "* " marks a check in progress.
    first_down = next((row for row in watch.rows if row[1] == "DOWN"), None)
    down_503 = first_down[0] if first_down and first_down[2].lstrip("* ") == "L7STS" \
        and watch.first(lambda s, c, code: code == "503") is not None else None
    closed = watch.first(lambda s, c, code: c.lstrip("* ") == "L4CON")
    checks.check(down_503 is not None, "a_down_on_503", str(log))
    checks.check(down_503 is not None and closed is not None and down_503 < closed,
                 "a_down_before_listener_closed", str(log))
    told = [p.closes[0][2] for p in movers if p.closes]
    checks.check(down_503 is not None and told and min(told) > down_503,
                 "clients_told_after_a_down",
                 f"first close frame {min(told) - t0:.2f}s, DOWN at "
                 f"{(down_503 or t0) - t0:.2f}s after the drain" if told else "no close frames")
    codes = collections.Counter((p.closes[0][0], p.closes[0][1]) if p.closes else None
                                for p in movers)
    checks.check(codes == {(1001, "server restarting"): len(movers)}, "a_clients_read_1001",
                 str(dict(codes)))
    moved = collections.Counter(p.servers[-1] for p in movers if p.reconnected_at)
    checks.check(sum(moved.values()) == len(movers) and set(moved) <= {"b", "c"},
                 "a_clients_reconnected_to_b_or_c", f"{dict(moved)} of {len(movers)}")
    late = [p.reconnected_at[0] - t0 for p in movers if p.reconnected_at
            and p.reconnected_at[0] - t0 > GRACE]
    checks.check(not late, "within_the_grace_period",
                 f"{len(late)} reconnected after {GRACE:.0f}s: {late[:5]}")
    checks.check(ctx.wait_flag("drained", 15), "a_shutdown_completed")
    if sigterm:
        while time.monotonic() < end and not all(process_gone(p) for p in pids):
            time.sleep(0.02)
        gone = time.monotonic() - t0
        checks.check(all(process_gone(p) for p in pids) and gone <= GRACE,
                     "a_exited_within_the_grace_period",
                     f"Godot gone {gone:.2f}s after SIGTERM (grace {GRACE:.0f}s)")
        checks.info("exit", f"a's process gone {gone:.2f}s after SIGTERM")
    if told and down_503 and closed and all(p.reconnected_at for p in movers):
        checks.info("drain", f"a DOWN {down_503 - t0:.2f}s after the drain began, listener "
                    f"closed by {closed - t0:.2f}s; {len(movers)} clients of a told "
                    f"{min(told) - t0:.2f}-{max(told) - t0:.2f}s, all back by "
                    f"{max(p.reconnected_at[0] for p in movers) - t0:.2f}s, "
                    f"on b/c: {dict(moved)}")


@provision.needs("haproxy")
def haproxy_drain_hook(ctx: Ctx) -> list:
    checks = Checks()
    stderr_lines: list[str] = []
    proc = None
    stop = threading.Event()
    players: list[Player] = []
    try:
        if not all(ctx.wait_flag(f"ready_{s}", 40) for s in SERVERS):
            return checks + [(False, "py.servers_ready", "a server never got ready")]
        sock = os.path.join(ctx.dir, "haproxy.sock")
        proc = start_haproxy(ctx, drain_config(ctx.port, sock), [ctx.port + FRONTEND], checks,
                             stderr_lines)
        if proc is None:
            return checks
        for s in SERVERS:
            row = wait_state(sock, "UP", 10, "be", s)
            brief = {k: row.get(k) for k in ("status", "check_status", "check_code", "error")}
            if not checks.check(row.get("status") == "UP", f"{s}_up", str(brief)):
                return checks
        # Step 2: every client connected and checked.
        t0 = time.monotonic()
        players = [Player(ctx.port + FRONTEND, stop) for _ in range(CLIENTS)]
        for p in players:
            p.start()
        for p in players:
            p.connected.wait(max(0.1, t0 + 60 - time.monotonic()))
        failed = [f for p in players for f in p.failures]
        on = collections.Counter(p.servers[0] for p in players if p.servers)
        if not checks.check(not failed and sum(on.values()) == CLIENTS, "all_connected",
                            f"{sum(on.values())} of {CLIENTS}; failures: {failed[:5]}"):
            return checks
        checks.check(all(on[s] > 0 for s in SERVERS), "spread_over_three", str(dict(on)))
        checks.info("split", f"{CLIENTS} clients in {time.monotonic() - t0:.1f}s, "
                    f"split {dict(sorted(on.items()))}")
        _drain(checks, ctx, sock, players)
        # Step 5: nobody failed, and the servers agree with the clients.
        failed = [f for p in players for f in p.failures]
        checks.check(not failed, "no_other_failure", f"{len(failed)}: {failed[:5]}")
        now = collections.Counter(p.servers[-1] for p in players
                                  if p.servers and not p.failures)
        ctx.flag("count")
        counts = {}
        for s in ("b", "c"):
            if ctx.wait_flag(f"count_{s}", 10):
                counts[s] = int(ctx.read_value(f"peers_{s}"))
        checks.check(counts == {"b": now["b"], "c": now["c"]} and sum(counts.values()) == CLIENTS
                     and now["a"] == 0, "totals_200",
                     f"servers {counts}, clients {dict(now)}")
    finally:
        stop.set()
        for p in players:
            p.join(10)
        ctx.flag("py_done")
        ctx.barrier("done")
        ctx.stop.wait(30)  # keep HAProxy until the Godot processes have exited
        stop_haproxy(proc)
        bad = alerts(stderr_lines)
        if bad:
            checks.check(False, "haproxy_alerts", " | ".join(bad[:5]))
    return checks
