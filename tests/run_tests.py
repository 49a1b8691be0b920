#!/usr/bin/env python3
"""The project's test command: python3 tests/run_tests.py [-k SUBSTR] [--peers SET] [-j N] [--no-build]

Steps:
  1. cargo test --release -p rwsmp-core          (counted as one or more tests)
  2. cargo build --release -p rust_websocket, copied into addons/rust_websocket/bin/
  3. godot-project/addons/rust_websocket -> ../../addons/rust_websocket and
     godot-project/tests -> ../tests/godot (symlinks, or copies where symlinks fail)
  4. godot --headless --path godot-project --import   (writes .godot/extension_list.cfg)
  5. the Godot scenarios (tests/godot/*.gd), each as 1-2 Godot processes, in every pairing of
     the built-in WebSocketMultiplayerPeer and RustWebSocketMultiplayerPeer
  6. the demos (tests/run_demo.py: chat and arena, a server and two clients each) in three
     pairings, then Autobahn|Testsuite against the addon as server and as client
     (tests/autobahn/; SKIPPED without Python 2.7)
Prints `PASS name (1.2s)` / `FAIL name: reason` per test and, last, `N passed, M failed`.
Only the Python standard library is used. See tests/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import godot_bin  # noqa: E402
import provision  # noqa: E402
from browser_hook import browser_hook  # noqa: E402
from proxy_hook import proxy_hook  # noqa: E402
from handshake_handler_hook import handshake_handler_hook  # noqa: E402
import hostile_hook  # noqa: E402
import rawws  # noqa: E402
import netem_hook  # noqa: E402
from tls_certs import pki_hook  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROJECT = os.path.join(REPO, "godot-project")
ADDON_DIR = os.path.join(REPO, "addons", "rust_websocket")
ADDON_BIN = os.path.join(ADDON_DIR, "bin")
GODOT_TESTS_DIR = os.path.join(REPO, "tests", "godot")

CORE_CRATE = "rwsmp-core"
EXT_CRATE = "rust_websocket"
# Built library name -> the name the .gdextension expects, per (system, machine).
# Only linux x86_64 is handled for now; add rows here for other platforms.
LIBRARY_NAMES = {
    ("Linux", "x86_64"): ("librust_websocket.so", "librust_websocket.linux.x86_64.so"),
    ("Linux", "aarch64"): ("librust_websocket.so", "librust_websocket.linux.arm64.so"),
    ("Windows", "AMD64"): ("rust_websocket.dll", "rust_websocket.windows.x86_64.dll"),
    ("Darwin", "arm64"): ("librust_websocket.dylib", "librust_websocket.macos.universal.dylib"),
    ("Darwin", "x86_64"): ("librust_websocket.dylib", "librust_websocket.macos.universal.dylib"),
}

BUILTIN = "WebSocketMultiplayerPeer"
RUST = "RustWebSocketMultiplayerPeer"
CLASSES = {"builtin": BUILTIN, "rust": RUST}
# pairing label -> (server class, client class)
PAIRINGS = {
    "builtin-srv/builtin-cli": (BUILTIN, BUILTIN),
    "rust-srv/rust-cli": (RUST, RUST),
    "rust-srv/builtin-cli": (RUST, BUILTIN),
    "builtin-srv/rust-cli": (BUILTIN, RUST),
}
PEER_SETS = {
    "builtin": ["builtin-srv/builtin-cli"],                 # the oracle alone
    "rust": ["rust-srv/rust-cli", "rust-srv/builtin-cli",   # every pairing with the addon
             "builtin-srv/rust-cli"],
    "rust-only": ["rust-srv/rust-cli"],
    "mixed": ["rust-srv/builtin-cli", "builtin-srv/rust-cli"],
    "all": list(PAIRINGS),
}

SCENARIO_TIMEOUT = 20.0     # the scenario's own watchdog (tests/godot/lib/base.gd)
ABORT_GRACE = 3.0           # once one process of a test failed, the others get this long
PORTS_PER_TEST = 10
LEAK_PATTERNS = ("leaked at exit", "ObjectDB instances leaked", "Leaked instance")
TAIL_LINES = 25


# ------------------------------------------------------------------------------------------
# Test definitions

@dataclass
class Proc:
    label: str              # "server" / "client" / "main": also the scenario's role
    script: str             # file in tests/godot/
    cls: str                # peer class name
    extra: dict = field(default_factory=dict)
    # (port, sync dir) -> words put before the Godot command line (e.g. `ip netns exec NAME`)
    prefix: Callable[[int, str], list[str]] | None = None


@dataclass
class StderrExpect:
    """For a process, the stderr between `@@MARK mark` and the next mark must match regex."""
    proc: str
    mark: str
    regex: str  # searched in the ERROR/WARNING lines of that section


@dataclass
class Test:
    name: str
    procs: list[Proc] = field(default_factory=list)
    # Runs in a thread beside the processes; returns a list of (ok, name, detail).
    hook: Callable[["Ctx"], list] | None = None
    hook_party: bool = False        # the hook takes part in barriers as party "py"
    stderr_expect: list[StderrExpect] = field(default_factory=list)
    process_timeout: float = 30.0   # hard limit per Godot process (then killed)


@dataclass
class Result:
    name: str
    ok: bool
    seconds: float
    reasons: list[str] = field(default_factory=list)
    details: str = ""
    count_passed: int = 0
    count_failed: int = 0
    note: str = ""


# Messages the Rust class must print (to stderr) for some errors, checked between the marks the
# scenarios print. Keyed by mark; the built-in's wording is not checked.
RUST_ERROR_MESSAGES = {
    # api_local (a lone peer)
    "port_in_use": r"(?i)in use",
    "server_on_active": r"(?i)already",
    "client_on_active": r"(?i)already",
    "bad_url_http": r"(?i)http",
    "bad_url_ftp": r"(?i)ftp",
    "bad_url_empty": r"(?i)url|empty",
    "bad_url_nohost": r"(?i)host|url",
    "bad_url_wssx": r"(?i)wss\+x",
    "fresh_put_packet": r"(?i)not connected|unconfigured|connected",
    "unknown_target": r"(?i)12345",
    # errors (connected pairs)
    "client_too_big": r"(?i)65536|too (big|large)|buffer|limit",
    "server_too_big": r"(?i)65536|too (big|large)|buffer|limit",
    # tls (tls_local: a lone peer; tls: the client's verification cases)
    "tls_server_opts_on_client": r"TLSOptions\.client",
    "tls_client_opts_on_server": r"TLSOptions\.server",
    "tls_key_mismatch": r"(?i)does not match",
    "tls_name_mismatch": r"(?i)name",
    "tls_untrusted": r"(?i)not trusted",
    "tls_unsafe_wrong_chain": r"(?i)not trusted",
    "tls_plain_on_wss": r"(?i)handshake|closed",
}


def _rust_msg_expect(proc: str, marks: list[str]) -> list[StderrExpect]:
    return [StderrExpect(proc, m, RUST_ERROR_MESSAGES[m]) for m in marks]


def build_tests(peer_labels: list[str]) -> list[Test]:
    tests: list[Test] = []
    # Tests of one class on its own run with that class's own pairing (X-srv/X-cli).
    classes = [PAIRINGS[label][0] for label in peer_labels
               if PAIRINGS[label][0] == PAIRINGS[label][1]]
    for cls in classes:
        short = "builtin" if cls == BUILTIN else "rust"
        t = Test(f"api_local[{short}]", [Proc("main", "api_local.gd", cls)])
        if cls == RUST:
            t.stderr_expect = _rust_msg_expect("main", [
                "port_in_use", "server_on_active", "client_on_active", "bad_url_http",
                "bad_url_ftp", "bad_url_empty", "bad_url_nohost", "bad_url_wssx",
                "fresh_put_packet", "unknown_target"])
        tests.append(t)
        tests.append(Test(f"wire[{short}]", [Proc("server", "wire.gd", cls)], hook=wire_hook,
                          hook_party=True))
        tests.append(Test(f"headers[{short}]", [Proc("main", "headers.gd", cls)],
                          hook=headers_hook, hook_party=True))
        tests.append(Test(f"free_in_signal[{short}]", [Proc("main", "free_in_signal.gd", cls)]))
        if cls == RUST:
            tests.append(Test("send_bytes[rust]", [Proc("main", "send_bytes.gd", cls)]))
        # Hostile and broken clients, 2000-socket burst, connect/disconnect lifecycle
        # (tests/hostile_hook.py + tests/godot/hostile.gd).
        tests += hostile_hook.hostile_tests(short, sys.modules[__name__])
        if cls == RUST:
            tests.append(Test("raw_mode[rust]", [Proc("server", "raw_mode.gd", cls)],
                              hook=raw_mode_hook, hook_party=True))
        if cls == RUST:
            # set_handshake_handler (Python raw HTTP clients: tests/handshake_handler_hook.py)
            # and add_performance_monitors.
            tests.append(Test("handshake_handler[rust]",
                              [Proc("server", "handshake_handler.gd", cls),
                               Proc("client", "handshake_handler.gd", cls)],
                              hook=handshake_handler_hook, hook_party=True, stderr_expect=[
                                  StderrExpect("server", "reject_bad_status", r"400-599"),
                                  StderrExpect("server", "double_answer",
                                               r"(?i)already answered")]))
            tests.append(Test("monitors[rust]", [Proc("main", "monitors.gd", cls)],
                              stderr_expect=[StderrExpect("main", "add_twice",
                                                          r"(?i)already exists")]))
        # The JavaScript client (godot-project/web/) in headless Chromium (tests/browser_hook.py).
        # Chromium's first start on a fresh, loaded machine has taken over 20 s (CI at 20117cf;
        # 29 and 32 s here): tests/cdp.py gives it 60 s and a retry, and the scenario's own
        # watchdog and the process limit leave room for both.
        tests.append(Test(f"browser[{short}]",
                          [Proc("server", "browser.gd", cls, {"timeout": 150})],
                          hook=browser_hook, hook_party=True, process_timeout=160.0))
        if cls == RUST:
            tests.append(Test("slow_consumer[rust]", [Proc("main", "slow_consumer.gd", cls)],
                              hook=slow_consumer_hook, hook_party=True,
                              stderr_expect=[StderrExpect("main", "slow", r"closed \(1008\)")]))
        if cls == RUST:
            # trusted_proxies behind a real nginx (tests/proxy_hook.py); clients of both classes.
            tests.append(Test("proxy[rust]", [Proc("server", "proxy.gd", cls),
                                              Proc("client", "proxy.gd", cls)],
                              hook=proxy_hook, hook_party=True, stderr_expect=[
                                  StderrExpect("server", "cidr_typo",
                                               r"host bits set; the network is 0\.0\.0\.0/0")]))
        t = Test(f"tls_local[{short}]", [Proc("main", "tls.gd", cls)])
        if cls == RUST:
            t.stderr_expect = _rust_msg_expect("main", [
                "tls_server_opts_on_client", "tls_client_opts_on_server", "tls_key_mismatch"])
        tests.append(t)

    # Server + client scenarios, in every selected pairing.
    scenarios = [
        ("connect", "connect.gd", None),
        ("bytes_and_order", "bytes.gd", None),
        ("targets", "targets.gd", None),
        ("rpc", "rpc.gd", None),
        ("disconnect", "disconnect.gd", None),
        ("refuse_new_connections", "refuse.gd", None),
        ("errors_connected", "errors.gd", None),
        ("handshake_timeout", "handshake.gd", handshake_hook),
        ("protocols", "protocols.gd", None),
        ("tls", "tls.gd", None),
        ("tls_chain", "tls_chain.gd", pki_hook),
    ]
    for base_name, script, hook in scenarios:
        for label in peer_labels:
            srv_cls, cli_cls = PAIRINGS[label]
            t = Test(f"{base_name}[{label}]",
                     [Proc("server", script, srv_cls), Proc("client", script, cli_cls)],
                     hook=hook, hook_party=hook is not None)
            if script == "errors.gd":
                if srv_cls == RUST:
                    t.stderr_expect += _rust_msg_expect("server", ["server_too_big"])
                if cli_cls == RUST:
                    t.stderr_expect += _rust_msg_expect("client", ["client_too_big"])
            if script == "tls_chain.gd" and cli_cls == RUST:
                t.stderr_expect.append(StderrExpect(
                    "client", "bundle_by_method", r"(?i)returns the first one 3 times"))
            if script == "tls.gd" and cli_cls == RUST:
                t.stderr_expect += _rust_msg_expect("client", [
                    "tls_name_mismatch", "tls_untrusted", "tls_unsafe_wrong_chain",
                    "tls_plain_on_wss"])
            tests.append(t)

    # Pairing scenarios whose Python side is not a barrier party, or with a mode argument.
    more = [
        ("peer_handle", "peer_handle.gd", peer_handle_hook, {}),
        ("ipv6", "ipv6.gd", ipv6_hook, {}),
        ("too_big_one_peer", "too_big_one_peer.gd", None, {}),
    ] + [(f"quit_live_{mode}", "quit_live.gd",
          (lambda m: lambda ctx: quit_live_hook(ctx, m))(mode), {"mode": mode})
         for mode in ("server_first", "client_first", "pending")]
    for base_name, script, hook, extra in more:
        for label in peer_labels:
            srv_cls, cli_cls = PAIRINGS[label]
            tests.append(Test(f"{base_name}[{label}]",
                              [Proc("server", script, srv_cls, dict(extra)),
                               Proc("client", script, cli_cls, dict(extra))], hook=hook))

    # Features only RustWebSocketMultiplayerPeer has: server_control needs a rust server (both
    # client classes); heartbeat part a (the server drops a frozen client) needs a rust server,
    # part b (a client notices a frozen server) a rust client.
    for label in peer_labels:
        srv_cls, cli_cls = PAIRINGS[label]
        if srv_cls == RUST:
            tests.append(Test(f"server_control[{label}]",
                              [Proc("server", "server_control.gd", srv_cls),
                               Proc("client", "server_control.gd", cli_cls)]))
        parts = ("a" if srv_cls == RUST else "") + ("b" if cli_cls == RUST else "")
        if parts:
            extra = {"parts": parts}
            procs = [Proc("server", "heartbeat.gd", srv_cls, dict(extra))]
            if "a" in parts:
                procs.append(Proc("frozen", "heartbeat.gd", cli_cls, dict(extra)))
            procs.append(Proc("client", "heartbeat.gd", cli_cls, dict(extra)))
            tests.append(Test(f"heartbeat[{label}]", procs,
                              hook=(lambda p: lambda ctx: heartbeat_hook(ctx, p))(parts)))
        # stall: the heartbeat of a side whose game stops reading for a while drops nobody. One
        # stalling side per test: a side with a heartbeat of its own would (rightly) drop a
        # peer that answers no ping for two intervals.
        stall = "a" if srv_cls == RUST else "b" if cli_cls == RUST else ""
        if stall:
            tests.append(Test(f"stall[{label}]",
                              [Proc("server", "stall.gd", srv_cls, {"parts": stall}),
                               Proc("client", "stall.gd", cli_cls, {"parts": stall})]))
        # link_cut: the client in a network namespace behind a veth that drops every packet.
        if srv_cls == RUST:
            tests.append(Test(f"link_cut[{label}]",
                              [Proc("server", "link_cut.gd", srv_cls),
                               Proc("client", "link_cut.gd", cli_cls,
                                    prefix=netem_hook.client_prefix)],
                              hook=netem_hook.link_cut_hook))
    return tests


# ------------------------------------------------------------------------------------------
# Python side of scenarios

class Ctx:
    """What a hook gets: the test's base port, sync dir, and file-flag helpers."""

    def __init__(self, port: int, sync_dir: str, stop: threading.Event):
        self.port = port
        self.dir = sync_dir
        self.stop = stop

    def flag(self, name: str) -> None:
        path = os.path.join(self.dir, "flag_" + name)
        tmp = path + ".tmp.py"
        with open(tmp, "w") as f:
            f.write("1")
        os.replace(tmp, path)

    def wait_flag(self, name: str, timeout: float) -> bool:
        end = time.monotonic() + timeout
        path = os.path.join(self.dir, "flag_" + name)
        while time.monotonic() < end and not self.stop.is_set():
            if os.path.exists(path):
                return True
            time.sleep(0.01)
        return False

    def barrier(self, name: str) -> None:
        self.flag(f"bar_{name}.py")


def _wait_closed(sock: socket.socket, timeout: float) -> float | None:
    """Seconds until the peer closes the connection (EOF or reset), None if it does not."""
    start = time.monotonic()
    sock.settimeout(0.05)
    while time.monotonic() - start < timeout:
        try:
            data = sock.recv(4096)
            if data == b"":
                return time.monotonic() - start
        except socket.timeout:
            continue
        except OSError:
            return time.monotonic() - start
    return None


def handshake_hook(ctx: Ctx) -> list:
    """handshake_timeout: a silent TCP socket and a half-sent HTTP request are both dropped by
    the server after ~1 s (its handshake_timeout), while a Godot client connects meanwhile.
    Also serves a silent TCP listener on port+3 for the client-side timeout check."""
    checks = []
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", ctx.port + 3))
    listener.listen(8)
    ctx.flag("py_listening")
    held: list[socket.socket] = []
    try:
        if not ctx.wait_flag("server_ready", 15):
            return [(False, "py.server_ready", "server never signalled server_ready")]
        silent = socket.create_connection(("127.0.0.1", ctx.port), timeout=5)
        partial = socket.create_connection(("127.0.0.1", ctx.port), timeout=5)
        partial.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
        held += [silent, partial]
        ctx.flag("raw_open")
        results: dict[str, float | None] = {}

        def measure(key, s):
            results[key] = _wait_closed(s, 6.0)

        threads = [threading.Thread(target=measure, args=(k, s))
                   for k, s in (("silent_socket", silent), ("partial_request", partial))]
        for th in threads:
            th.start()
        # Accept the Godot client's connection to the silent listener and hold it.
        listener.settimeout(0.1)
        end = time.monotonic() + 8
        while any(th.is_alive() for th in threads) and time.monotonic() < end:
            try:
                conn, _ = listener.accept()
                held.append(conn)
            except socket.timeout:
                pass
        for th in threads:
            th.join()
        for key, t in results.items():
            ok = t is not None and 0.8 <= t <= 2.0
            checks.append((ok, f"py.{key}_dropped_after_timeout",
                           "never closed within 6s" if t is None else f"closed after {t:.3f}s"))
            if t is not None:
                checks.append((True, f"py.{key}_info", f"closed after {t:.3f}s"))
    finally:
        ctx.barrier("measured")
        ctx.barrier("done")
        # Keep the listener until the scenario ends, so the client times out on its own.
        ctx.wait_flag("bar_done.server", 15)
        for s in held:
            s.close()
        listener.close()
    return checks


class RawWs(rawws.Client):
    """A minimal WebSocket client (RFC 6455, tests/rawws.py) for wire-level checks, upgraded by
    the constructor: status_line, headers and expected_accept are there to check."""

    def __init__(self, port: int, timeout: float = 5.0):
        super().__init__(port, timeout=timeout)
        if not self.upgrade(timeout=timeout):
            raise rawws.Closed("no response to the upgrade request")

    def wait_eof(self, timeout: float) -> bool:
        self.sock.settimeout(timeout)
        try:
            while True:
                self.fill()
        except EOFError:
            return True
        except socket.timeout:
            return False  # still open when the time ran out (socket.timeout is an OSError)
        except OSError:
            return True  # reset counts as closed

    def close(self) -> None:
        self.sock.close()


def _put_value(ctx: "Ctx", key: str, value: int) -> None:
    path = os.path.join(ctx.dir, "val_" + key)
    with open(path + ".tmp.py", "w") as f:
        f.write(str(value))
    os.replace(path + ".tmp.py", path)


def wire_hook(ctx: "Ctx") -> list:
    """Raw WebSocket clients against a Godot server (tests/godot/wire.gd)."""
    checks: list = []

    def check(ok: bool, name: str, detail: str = "") -> bool:
        checks.append((ok, "py." + name, detail))
        return ok

    conns: list[RawWs] = []
    try:
        if not ctx.wait_flag("server_ready", 15):
            return [(False, "py.server_ready", "server never signalled server_ready")]
        ids = []
        for n in (1, 2):
            ws = RawWs(ctx.port)
            conns.append(ws)
            check(ws.status_line.startswith("HTTP/1.1 101"), f"c{n}_status_101", ws.status_line)
            check(ws.headers.get("sec-websocket-accept") == ws.expected_accept,
                  f"c{n}_accept_key", str(ws.headers))
            check("sec-websocket-protocol" not in ws.headers, f"c{n}_no_subprotocol",
                  str(ws.headers))
            op, data, masked, _ = ws.recv_frame()
            check(op == 2 and len(data) == 4 and not masked, f"c{n}_id_message",
                  f"opcode {op}, {len(data)} bytes {data.hex()}, masked {masked}")
            pid = int.from_bytes(data[:4].ljust(4, b"\0"), "little", signed=True)
            check(2 <= pid < 2**31, f"c{n}_id_range", f"id {pid}")
            ids.append(pid)
        check(ids[0] != ids[1], "ids_distinct", str(ids))
        _put_value(ctx, "id1", ids[0])
        _put_value(ctx, "id2", ids[1])
        c1, c2 = conns
        # c2: a message over inbound_buffer_size (65535) -> close 1009, then the TCP closes.
        c2.send_frame(2, b"\x01" * 70000)
        try:
            c2.sock.settimeout(5)
            op, data, _, _ = c2.recv_frame()
            code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
            check(op == 8 and code == 1009, "too_big_close_1009",
                  f"opcode {op}, payload {data[:40]!r}")
        except (EOFError, OSError) as e:
            check(False, "too_big_close_1009", f"no close frame: {e}")
        # c1: an empty binary message, a text message, a binary message.
        c1.send_frame(2, b"")
        c1.send_frame(1, b"txt")
        c1.send_frame(2, b"after")
        try:
            c1.sock.settimeout(10)
            op, data, masked, _ = c1.recv_frame()
            check(op == 2 and data == b"srv" and not masked, "server_packet_binary_frame",
                  f"opcode {op}, payload {data[:40]!r}, masked {masked}")
        except (EOFError, OSError) as e:
            check(False, "server_packet_binary_frame", f"nothing received: {e}")
        c1.send_frame(8, (1000).to_bytes(2, "big") + b"bye")
        try:
            c1.sock.settimeout(5)
            op, data, _, _ = c1.recv_frame()
            code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
            check(op == 8 and code == 1000, "close_answered_1000", f"opcode {op}, payload {data!r}")
        except (EOFError, OSError) as e:
            check(False, "close_answered_1000", f"no close frame: {e}")
        # RFC 6455 7.1.1: the server closes the TCP connection first (the built-in at once).
        t0 = time.monotonic()
        closed = c1.wait_eof(5)
        took = time.monotonic() - t0
        check(closed and took < 1.0, "server_closes_tcp_after_close_handshake",
              f"TCP closed {took:.3f}s after the close handshake" if closed
              else "TCP still open after 5s")
        checks.append((True, "py.close_info", f"TCP closed {took:.3f}s after the close handshake"))
    finally:
        ctx.barrier("done")
        ctx.wait_flag("bar_done.server", 15)
        for ws in conns:
            ws.close()
    return checks


# Python sides of headers, peer_handle, ipv6 and quit_live


class RawWsServerSide(rawws.Conn):
    """The server end of an accepted TCP connection: reads the upgrade request, answers it the
    way Godot's server does (101, then the 4-byte little-endian id), sends unmasked frames."""

    MASK_FRAMES = False

    def __init__(self, sock: socket.socket):
        super().__init__(sock)
        self.request_line = ""
        self.request_headers: list[tuple[str, str]] = []

    def read_request(self) -> None:
        self.request_line, self.request_headers = self.take_head()

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.request_headers if k.lower() == name.lower()]

    def accept(self, peer_id: int) -> None:
        accept = rawws.accept_key((self.header("sec-websocket-key") or [""])[0])
        self.sock.sendall((f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                           ).encode())
        self.send_frame(2, peer_id.to_bytes(4, "little"))


def _listen(port: int, host: str = "127.0.0.1") -> socket.socket:
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, port))
    ls.listen(8)
    return ls


def _accept(ctx: Ctx, ls: socket.socket, timeout: float) -> socket.socket | None:
    ls.settimeout(0.1)
    end = time.monotonic() + timeout
    while time.monotonic() < end and not ctx.stop.is_set():
        try:
            conn, _ = ls.accept()
            conn.settimeout(5)
            return conn
        except socket.timeout:
            continue
    return None


def headers_hook(ctx: Ctx) -> list:
    """handshake_headers (tests/godot/headers.gd): a raw server records the Godot client's
    request; a raw client reads the Godot server's 101 response."""
    checks: list = []

    def check(ok: bool, name: str, detail: str = "") -> bool:
        checks.append((ok, "py." + name, detail))
        return ok

    ls = _listen(ctx.port + 1)
    socks: list = [ls]
    try:
        ctx.flag("raw_srv_ready")
        sock = _accept(ctx, ls, 15)
        if not check(sock is not None, "client_accepted", "the Godot client never connected"):
            return checks
        socks.append(sock)
        srv = RawWsServerSide(sock)
        srv.read_request()
        check(srv.request_line == "GET /hdr?q=1 HTTP/1.1", "request_line", srv.request_line)
        check(srv.header("x-token") == ["abc123"], "client_header_x_token",
              f"request headers {srv.request_headers}")
        check(srv.header("x-extra") == ["two words"], "client_header_x_extra",
              f"request headers {srv.request_headers}")
        check(srv.header("sec-websocket-version") == ["13"], "client_version_13",
              f"request headers {srv.request_headers}")
        checks.append((True, "py.request_info", "request headers: " + ", ".join(
            f"{k}: {v}" for k, v in srv.request_headers if k.lower() != "sec-websocket-key")))
        srv.accept(777777)
        op, data, masked, _ = srv.recv_frame()
        check(op == 2 and data == b"from godot" and masked, "client_packet",
              f"opcode {op}, payload {data[:40]!r}, masked {masked}")
        srv.send_frame(2, b"from python")
        ctx.barrier("client_done")

        if not ctx.wait_flag("server_ready", 15):
            return checks + [(False, "py.server_ready", "server never signalled server_ready")]
        ws = RawWs(ctx.port)
        socks.append(ws.sock)
        check(ws.status_line.startswith("HTTP/1.1 101"), "server_status_101", ws.status_line)
        check(ws.headers.get("x-server") == "yes", "server_header_x_server", str(ws.headers))
        check(ws.headers.get("x-extra") == "srv", "server_header_x_extra", str(ws.headers))
        check(ws.headers.get("sec-websocket-accept") == ws.expected_accept, "server_accept_key",
              str(ws.headers))
        op, data, _, _ = ws.recv_frame()
        check(op == 2 and len(data) == 4, "server_id_message", f"opcode {op}, {data.hex()}")
        _put_value(ctx, "raw_id", int.from_bytes(data[:4].ljust(4, b"\0"), "little", signed=True))
    finally:
        ctx.barrier("client_done")
        ctx.barrier("done")
        ctx.wait_flag("bar_done.main", 15)
        for s in socks:
            s.close()
    return checks


def peer_handle_hook(ctx: Ctx) -> list:
    """peer_handle step3: a raw server that sends close 4003 "raw bye", reads the client's close
    reply, then keeps the TCP connection open without reading or closing it."""
    checks: list = []

    def check(ok: bool, name: str, detail: str = "") -> bool:
        checks.append((ok, "py." + name, detail))
        return ok

    ls = _listen(ctx.port + 5)
    socks: list = [ls]
    try:
        ctx.flag("raw_srv_ready")
        sock = _accept(ctx, ls, 20)
        if not check(sock is not None, "C_accepted", "client C never connected"):
            return checks
        socks.append(sock)
        srv = RawWsServerSide(sock)
        srv.read_request()
        srv.accept(777777)
        if not check(ctx.wait_flag("C_ready", 10), "C_ready", "client C never got ready"):
            return checks
        srv.send_frame(8, (4003).to_bytes(2, "big") + b"raw bye")
        try:
            op, data, masked, _ = srv.recv_frame()
            code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
            check(op == 8 and code == 4003 and masked, "C_close_reply",
                  f"opcode {op}, payload {data!r}, masked {masked}")
        except (EOFError, OSError) as e:
            check(False, "C_close_reply", f"no close reply: {e}")
        # Does the client close its end? Reported only (RFC 6455: the server closes first).
        t0 = time.monotonic()
        eof = None
        sock.settimeout(0.05)
        while eof is None and not ctx.stop.is_set() and time.monotonic() - t0 < 6:
            try:
                if sock.recv(4096) == b"":
                    eof = time.monotonic() - t0
            except socket.timeout:
                if ctx.wait_flag("C_done", 0) and time.monotonic() - t0 > 3.5:
                    break
            except OSError:
                eof = time.monotonic() - t0
        checks.append((True, "py.C_tcp_info",
                       f"client C closed its TCP end {eof:.3f}s after its close reply"
                       if eof is not None else "client C kept its TCP end open"))
    finally:
        ctx.wait_flag("C_done", 15)
        for s in socks:
            s.close()
    return checks


def _have_ipv6_loopback() -> bool:
    try:
        ls = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            ls.bind(("::1", 0))
            ls.listen(1)
            c = socket.create_connection(("::1", ls.getsockname()[1]), timeout=2)
            c.close()
        finally:
            ls.close()
        return True
    except OSError:
        return False


def ipv6_hook(ctx: Ctx) -> list:
    """Tells the ipv6 scenario whether ::1 works here; a PASS note says when it was skipped."""
    if _have_ipv6_loopback():
        _put_value(ctx, "ipv6", 1)
        return [(True, "py.ipv6", "")]
    _put_value(ctx, "ipv6", 0)
    return [(True, "py.ipv6_skip_info", "SKIPPED: no IPv6 loopback (::1) on this machine")]


def _pid_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True


def quit_live_hook(ctx: Ctx, mode: str) -> list:
    """tests/godot/quit_live.gd: the quitting process must exit < 2 s after calling quit()."""
    checks: list = []
    quitter = "client" if mode == "client_first" else "server"
    socks: list = []
    try:
        if mode == "pending":
            if not ctx.wait_flag("server_ready", 15):
                return [(False, "py.server_ready", "server never signalled server_ready")]
            silent = socket.create_connection(("127.0.0.1", ctx.port), timeout=5)
            partial = socket.create_connection(("127.0.0.1", ctx.port), timeout=5)
            partial.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
            socks += [silent, partial]
            ctx.flag("raw_open")
        path = os.path.join(ctx.dir, "val_pid_" + quitter)
        if not ctx.wait_flag("quitting_" + quitter, 25):
            return [(False, f"py.{quitter}_quit", f"the {quitter} never called quit()")]
        t0 = time.monotonic()
        try:
            with open(path) as f:
                pid = int(f.read().strip())
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except (OSError, ValueError) as e:
            return [(False, f"py.{quitter}_pid", f"no pid, or the process is already gone: {e}")]
        if b"godot" not in cmdline.lower():
            return [(False, f"py.{quitter}_pid", f"pid {pid} is not Godot: {cmdline[:200]!r}")]
        while not _pid_gone(pid) and time.monotonic() - t0 < 10:
            time.sleep(0.005)
        took = time.monotonic() - t0
        gone = _pid_gone(pid)
        checks.append((gone and took < 2.0, f"py.{quitter}_exit_within_2s",
                       f"exited {took:.3f}s after quit()" if gone
                       else "still running 10s after quit()"))
        checks.append((True, f"py.{quitter}_exit_info",
                       f"{quitter} exited {took:.3f}s after quit()"))
    finally:
        for s in socks:
            s.close()
    return checks


# Python sides of raw_mode and heartbeat (features of the rust class alone)

RAW_FIRST = b"first-from-server"     # tests/godot/raw_mode.gd FIRST, BIN, BIN2
RAW_BIN = bytes([0, 1, 2, 250, 255])
RAW_BIN2 = bytes([9, 8, 7, 6, 5, 4])


def raw_mode_hook(ctx: Ctx) -> list:
    """tests/godot/raw_mode.gd: a plain WebSocket client against a server with
    godot_protocol = false. No id greeting: the first frame is the server's own packet."""
    checks: list = []

    def check(ok: bool, name: str, detail: str = "") -> bool:
        checks.append((ok, "py." + name, detail))
        return ok

    def expect_frame(ws: RawWs, name: str, opcode: int, payload: bytes) -> None:
        try:
            op, data, masked, _ = ws.recv_frame()
            check(op == opcode and data == payload and not masked, name,
                  f"opcode {op}, payload {data[:40]!r}, masked {masked} "
                  f"(expected opcode {opcode}, {payload!r})")
        except (EOFError, OSError) as e:
            check(False, name, f"no frame: {e}")

    ws = None
    try:
        if not ctx.wait_flag("server_ready", 15):
            return [(False, "py.server_ready", "server never signalled server_ready")]
        ws = RawWs(ctx.port)
        ws.sock.settimeout(10)
        check(ws.status_line.startswith("HTTP/1.1 101"), "status_101", ws.status_line)
        check(ws.headers.get("sec-websocket-accept") == ws.expected_accept, "accept_key",
              str(ws.headers))
        check("sec-websocket-protocol" not in ws.headers, "no_subprotocol", str(ws.headers))
        # Godot's protocol would send the 4-byte id first; raw mode sends nothing of its own.
        expect_frame(ws, "first_frame_is_server_packet_not_id", 2, RAW_FIRST)
        ws.send_frame(1, b"hello")
        ws.send_frame(2, RAW_BIN)
        expect_frame(ws, "send_text_is_text_frame", 1, b"hi")
        expect_frame(ws, "put_packet_is_binary_frame", 2, RAW_BIN2)
        expect_frame(ws, "broadcast_send_text_is_text_frame", 1, b"all")
        # get_peer(id) on the server: send_text, put_packet, send(.., WRITE_MODE_TEXT), send(..),
        # send([]) (an empty message; put_packet([]) sends nothing), put_var(7), then 65535 bytes
        # (the oversize sends before it returned ERR_OUT_OF_MEMORY and sent nothing), "h-last".
        expect_frame(ws, "handle_send_text_is_text_frame", 1, b"h-text")
        expect_frame(ws, "handle_put_packet_is_binary_frame", 2, RAW_BIN)
        expect_frame(ws, "handle_send_write_mode_text_is_text_frame", 1, b"h-send-text")
        expect_frame(ws, "handle_send_is_binary_frame", 2, RAW_BIN2)
        expect_frame(ws, "handle_send_empty_is_empty_binary_frame", 2, b"")
        expect_frame(ws, "handle_put_var_is_var_to_bytes", 2,
                     (2).to_bytes(4, "little") + (7).to_bytes(4, "little"))
        try:
            op, data, _, _ = ws.recv_frame()
            check(op == 2 and data == b"a" * 65535, "handle_put_packet_65535",
                  f"opcode {op}, {len(data)} bytes {data[:20]!r}")
        except (EOFError, OSError) as e:
            check(False, "handle_put_packet_65535", f"no frame: {e}")
        expect_frame(ws, "handle_last_text_frame", 1, b"h-last")
        ctx.barrier("godot_client_done")
        if not ctx.wait_flag("bar_godot_client_done.server", 20):
            return checks + [(False, "py.godot_client_done", "the server never got there")]
        ws.send_frame(8, (4100).to_bytes(2, "big") + b"raw done")
        try:
            op, data, _, _ = ws.recv_frame()
            code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
            check(op == 8 and code == 4100, "close_answered", f"opcode {op}, payload {data!r}")
        except (EOFError, OSError) as e:
            check(False, "close_answered", f"no close frame: {e}")
        took = _wait_closed(ws.sock, 5.0)
        check(took is not None, "server_closes_tcp",
              "TCP still open 5 s after the close handshake" if took is None
              else f"closed {took:.3f}s after the close handshake")
    finally:
        ctx.barrier("godot_client_done")
        ctx.barrier("done")
        ctx.wait_flag("bar_done.server", 15)
        if ws is not None:
            ws.close()
    return checks


def _proc_state(pid: int) -> str:
    """The one-letter state in /proc/PID/stat ("" if the process is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def _godot_pid(ctx: Ctx, role: str) -> tuple[int | None, str]:
    """The pid a scenario process published with put_value("pid_<role>"), if it is Godot."""
    try:
        with open(os.path.join(ctx.dir, "val_pid_" + role)) as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except (OSError, ValueError) as e:
        return None, f"no pid for {role}, or the process is gone: {e}"
    if b"godot" not in cmdline.lower():
        return None, f"pid {pid} is not Godot: {cmdline[:200]!r}"
    return pid, ""


def _read_value(ctx: Ctx, key: str) -> str:
    try:
        with open(os.path.join(ctx.dir, "val_" + key)) as f:
            return f.read().strip()
    except OSError:
        return "?"


def slow_consumer_hook(ctx: Ctx) -> list:
    """tests/godot/slow_consumer.gd: a client that never reads but sends unsolicited pongs
    (port+0), then one that never reads at all (port+1, 4 KiB receive buffer)."""
    checks = []
    held = []
    try:
        if not ctx.wait_flag("servers_ready", 15):
            return [(False, "py.servers_ready", "never flagged")]
        spammer = hostile_hook.Client(ctx.port, rcvbuf=4096)
        spammer.handshake()
        held.append(spammer)
        end = time.monotonic() + 6
        pongs = 0
        while time.monotonic() < end and not ctx.stop.is_set():
            if os.path.exists(os.path.join(ctx.dir, "flag_pongs_done")):
                break
            if spammer.send(rawws.encode_frame(10, b"alive", key=os.urandom(4))):
                break  # the server closed the connection
            pongs += 1
            time.sleep(0.1)
        checks.append((True, "py.pongs_info", f"{pongs} unsolicited pongs sent"))
        slow = hostile_hook.Client(ctx.port + 1, rcvbuf=4096)
        slow.handshake()
        held.append(slow)
        ctx.wait_flag("done_slow", 30)
    finally:
        ctx.barrier("done")
        for c in held:
            c.close()
    return checks


def heartbeat_hook(ctx: Ctx, parts: str) -> list:
    """tests/godot/heartbeat.gd: freezes a process with SIGSTOP when the scenario asks (part a:
    the "frozen" client, part b: the server), tells it with a flag once the process is stopped,
    and resumes it (SIGCONT) once the other side has checked its detection. Part a also times
    the resumed client's exit."""
    if platform.system() != "Linux" or not hasattr(signal, "SIGSTOP"):
        _put_value(ctx, "sigstop", 0)
        return [(True, "py.heartbeat_skip_info",
                 f"SKIPPED: freezing a process needs SIGSTOP and /proc (Linux); "
                 f"this is {platform.system()}")]
    _put_value(ctx, "sigstop", 1)
    checks: list = []
    stopped: set[int] = set()

    def check(ok: bool, name: str, detail: str = "") -> bool:
        checks.append((ok, "py." + name, detail))
        return ok

    def freeze(role: str) -> int | None:
        pid, why = _godot_pid(ctx, role)
        if not check(pid is not None, f"{role}_pid", why):
            return None
        os.kill(pid, signal.SIGSTOP)
        stopped.add(pid)
        end = time.monotonic() + 2
        while _proc_state(pid) not in ("T", "t") and time.monotonic() < end:
            time.sleep(0.001)
        state = _proc_state(pid)
        check(state in ("T", "t"), f"{role}_stopped", f"/proc state {state!r} after SIGSTOP")
        return pid

    def resume(pid: int, flag_name: str) -> float:
        ctx.flag(flag_name)  # first, so the process sees it as soon as it runs again
        os.kill(pid, signal.SIGCONT)
        stopped.discard(pid)
        return time.monotonic()

    try:
        if "a" in parts:
            if not ctx.wait_flag("freeze_client", 25):
                return checks + [(False, "py.freeze_client", "the server never asked")]
            pid = freeze("frozen")
            if pid is None:
                return checks
            t_stop = time.monotonic()
            ctx.flag("client_frozen")
            ok = ctx.wait_flag("a_detected", 10)
            check(ok, "a_detected",
                  "" if ok else "the server did not finish part a within 10 s of the freeze")
            held = time.monotonic() - t_stop
            t_cont = resume(pid, "client_resumed")
            while not _pid_gone(pid) and time.monotonic() - t_cont < 10:
                time.sleep(0.005)
            took = time.monotonic() - t_cont
            gone = _pid_gone(pid)
            if not gone:
                os.kill(pid, signal.SIGKILL)
            check(gone and took < 5.0, "a_frozen_client_exits_after_resume",
                  f"exited {took:.3f}s after SIGCONT" if gone
                  else "still running 10 s after SIGCONT (killed)")
            checks.append((True, "py.a_info",
                           f"a: server dropped the frozen client "
                           f"{_read_value(ctx, 'a_detect_ms')} ms after the freeze "
                           f"(frozen {held:.2f}s, exited {took:.2f}s after SIGCONT)"))
        if "b" in parts:
            if not ctx.wait_flag("freeze_server", 30):
                return checks + [(False, "py.freeze_server", "the client never asked")]
            pid = freeze("server")
            if pid is None:
                return checks
            t_stop = time.monotonic()
            ctx.flag("server_frozen")
            ok = ctx.wait_flag("b_detected", 10)
            check(ok, "b_detected",
                  "" if ok else "the client did not finish part b within 10 s of the freeze")
            held = time.monotonic() - t_stop
            resume(pid, "server_resumed")
            checks.append((True, "py.b_info",
                           f"b: client saw server_disconnected "
                           f"{_read_value(ctx, 'b_detect_ms')} ms after the server froze "
                           f"(frozen {held:.2f}s)"))
    finally:
        for pid in stopped:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
    return checks


# ------------------------------------------------------------------------------------------
# Running Godot processes

class Running:
    def __init__(self, proc: Proc, cmd: list[str]):
        self.proc = proc
        self.cmd = cmd
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.start = time.monotonic()
        self.popen = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      stdin=subprocess.DEVNULL, cwd=REPO,
                                      start_new_session=True, text=True, errors="replace")
        self.killed_reason = ""
        self.script_error = False
        self.threads = [threading.Thread(target=self._read, args=(self.popen.stdout, self.stdout),
                                         daemon=True),
                        threading.Thread(target=self._read, args=(self.popen.stderr, self.stderr),
                                         daemon=True)]
        for t in self.threads:
            t.start()

    def _read(self, stream, sink: list[str]) -> None:
        for line in stream:
            line = line.rstrip("\n")
            sink.append(line)
            if "SCRIPT ERROR" in line or "Parse Error" in line:
                self.script_error = True

    def kill(self, reason: str) -> None:
        if self.popen.poll() is None:
            self.killed_reason = reason
            try:
                os.killpg(self.popen.pid, 9)
            except (ProcessLookupError, PermissionError):
                self.popen.kill()

    def finish(self) -> None:
        self.popen.wait()
        for t in self.threads:
            t.join(timeout=5)


def run_godot_test(test: Test, godot: str, port: int, work: str, verbose: bool) -> Result:
    start = time.monotonic()
    sync_dir = os.path.join(work, re.sub(r"[^A-Za-z0-9_.-]+", "_", test.name))
    os.makedirs(sync_dir, exist_ok=True)
    parties = [p.label for p in test.procs] + (["py"] if test.hook_party else [])
    stop = threading.Event()
    hook_checks: list = []
    hook_thread = None
    if test.hook:
        def run_hook():
            try:
                hook_checks.extend(test.hook(Ctx(port, sync_dir, stop)))
            except Exception as e:  # a broken hook fails the test, with the reason
                hook_checks.append((False, "py.hook", f"{type(e).__name__}: {e}"))
        hook_thread = threading.Thread(target=run_hook, daemon=True)
        hook_thread.start()

    running: list[Running] = []
    for p in test.procs:
        args = {"role": p.label, "peer_class": p.cls, "port": port, "dir": sync_dir,
                "parties": ",".join(parties), "timeout": SCENARIO_TIMEOUT, **p.extra}
        cmd = [godot, "--headless", "--path", PROJECT, "-s", f"res://tests/{p.script}", "--",
               *[f"{k}={v}" for k, v in args.items()]]
        if p.prefix:
            cmd = p.prefix(port, sync_dir) + cmd
        running.append(Running(p, cmd))

    abort_at = None
    abort_cause = ""
    while True:
        alive = [r for r in running if r.popen.poll() is None]
        if not alive:
            break
        now = time.monotonic()
        for r in alive:
            if now - r.start > test.process_timeout:
                r.kill(f"killed after the {test.process_timeout:.0f}s hard timeout")
        if abort_at is None:
            for r in running:
                rc = r.popen.poll()
                if (rc is not None and rc != 0) or r.script_error:
                    abort_at = now + ABORT_GRACE
                    abort_cause = r.proc.label
                    break
        elif now > abort_at:
            for r in alive:
                r.kill(f"killed {ABORT_GRACE:.0f}s after {abort_cause} failed")
        time.sleep(0.02)
    for r in running:
        r.finish()
    stop.set()
    if hook_thread:
        hook_thread.join(timeout=20)
        if hook_thread.is_alive():
            hook_checks.append((False, "py.hook", "hook did not finish"))

    reasons: list[str] = []
    failing: list[Running] = []
    for r in running:
        own: list[str] = []
        label = r.proc.label
        fails = [ln.split(" ", 3) for ln in r.stdout if ln.startswith("@@CHECK fail")]
        for f in fails:
            own.append(f"{f[2]}: {f[3] if len(f) > 3 else ''}".strip())
        oks = sum(1 for ln in r.stdout if ln.startswith("@@CHECK ok"))
        if r.killed_reason:
            own.append(f"{label} {r.killed_reason}")
        elif not any(ln.startswith("@@DONE") for ln in r.stdout):
            own.append(f"{label} ended without @@DONE")
        rc = r.popen.returncode
        if rc != 0 and not r.killed_reason and not fails:
            own.append(f"{label} exit code {rc}")
        if oks == 0 and not fails and not r.killed_reason:
            own.append(f"{label} made no checks")
        err_text = "\n".join(r.stderr)
        if r.script_error:
            first = next((ln for ln in r.stderr + r.stdout
                          if "SCRIPT ERROR" in ln or "Parse Error" in ln), "")
            own.append(f"{label} {first.strip()}")
        for pat in LEAK_PATTERNS:
            if pat in err_text or pat in "\n".join(r.stdout):
                own.append(f"{label} stderr: {pat}")
        for exp in test.stderr_expect:
            if exp.proc != label:
                continue
            section = _marked_section(r.stderr, exp.mark)
            if section is None:
                own.append(f"{label}: mark {exp.mark} never printed")
            elif not re.search(exp.regex, section):
                own.append(f"{label}: no error message matching /{exp.regex}/ at {exp.mark} "
                           f"(stderr there: {section.strip()[:200]!r})")
        if own:
            failing.append(r)
            reasons += own
    for ok, name, detail in hook_checks:
        if not ok:
            reasons.append(f"{name}: {detail}")
    note = "; ".join(f"{d}" for ok, n, d in hook_checks if ok and n.endswith("_info"))

    details = ""
    show = running if verbose else failing
    if reasons or verbose:
        parts = []
        for r in show:
            out = r.stdout if verbose else r.stdout[-TAIL_LINES:]
            err = r.stderr if verbose else r.stderr[-TAIL_LINES:]
            parts.append(f"    --- {r.proc.label} ({r.proc.cls}) stdout:\n"
                         + "\n".join("      " + ln for ln in out)
                         + f"\n    --- {r.proc.label} stderr:\n"
                         + "\n".join("      " + ln for ln in err))
        if hook_checks and (verbose or any(not ok for ok, _, _ in hook_checks)):
            parts.append("    --- python hook:\n" + "\n".join(
                f"      {'ok' if ok else 'FAIL'} {name} {detail}" for ok, name, detail in hook_checks))
        details = "\n".join(parts)
    return Result(test.name, not reasons, time.monotonic() - start, reasons, details,
                  note=note)


def _marked_section(lines: list[str], mark: str) -> str | None:
    """The engine ERROR/WARNING lines printed between `@@MARK mark` and the next mark."""
    out: list[str] = []
    inside = False
    found = False
    for ln in lines:
        if ln.startswith("@@MARK "):
            inside = ln[len("@@MARK "):].strip() == mark
            found = found or inside
            continue
        if inside and ln.lstrip().startswith(("ERROR:", "WARNING:", "USER ERROR:",
                                               "USER WARNING:")):
            out.append(ln)
    return "\n".join(out) if found else None


# ------------------------------------------------------------------------------------------
# Build steps

def run_cargo_test() -> Result:
    start = time.monotonic()
    # fault-injection: test-only hooks (tests/faults.rs); the shipped library never has them.
    cmd = ["cargo", "test", "--release", "-p", CORE_CRATE, "--features", "fault-injection"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, errors="replace")
    out = proc.stdout + proc.stderr
    passed = failed = 0
    for m in re.finditer(r"test result: (\w+)\. (\d+) passed; (\d+) failed", out):
        passed += int(m.group(2))
        failed += int(m.group(3))
    name = f"cargo_test[{CORE_CRATE}]"
    ok = proc.returncode == 0 and failed == 0
    if ok:
        return Result(name, True, time.monotonic() - start, count_passed=max(passed, 1),
                      note=f"{passed} passed")
    reasons = [f"`{' '.join(cmd)}` exit code {proc.returncode}"
               + (f", {failed} failed" if failed else "")]
    failures = re.findall(r"^---- (\S+) ", out, re.M)
    if failures:
        reasons.append("failing: " + ", ".join(failures[:20]))
    tail = "\n".join("      " + ln for ln in out.splitlines()[-40:])
    return Result(name, False, time.monotonic() - start, reasons, tail,
                  count_passed=passed, count_failed=max(failed, 1))


def run_script(args: list[str], limit: float) -> tuple[int | None, list[str]]:
    """Runs tests/ARGS[0] with this Python: (exit code, output lines), or (None, [why]) if it
    overran `limit` seconds."""
    cmd = [sys.executable, os.path.join(REPO, "tests", args[0]), *args[1:]]
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, errors="replace",
                              stdin=subprocess.DEVNULL, timeout=limit)
    except subprocess.TimeoutExpired:
        return None, [f"no result within {limit:.0f} s"]
    return proc.returncode, (proc.stdout + proc.stderr).splitlines()


# demo[...] tests: tests/run_demo.py (the chat and arena demos, 1 server + 2 clients each)
# in these pairings; label -> run_demo.py's flags.
DEMO_PAIRINGS = {"rust": [], "rust-srv/builtin-cli": ["--builtin-clients"],
                 "builtin-srv/rust-cli": ["--builtin-server"]}


def run_demo_test(label: str) -> Result:
    start = time.monotonic()
    name = f"demo[{label}]"
    rc, lines = run_script(["run_demo.py", "--no-build", *DEMO_PAIRINGS[label]], 180)
    if rc is None:
        return Result(name, False, time.monotonic() - start, lines, count_failed=1)
    if rc == 0 and any(ln.startswith("DEMO OK") for ln in lines):
        return Result(name, True, time.monotonic() - start,
                      note="; ".join(ln[2:].split(":")[0] for ln in lines
                                     if ln.startswith(("# chat OK", "# arena OK"))))
    reasons = [ln[2:] for ln in lines if ln.startswith("# FAIL")][:10] or [f"exit code {rc}"]
    tail = "\n".join("      " + ln for ln in lines[-60:])
    return Result(name, False, time.monotonic() - start, reasons, tail, count_failed=1)


AUTOBAHN_ROLES = ("server", "client")


def run_autobahn(role: str) -> Result:
    """Autobahn|Testsuite, every case, with the addon as `role` (tests/autobahn/run_autobahn.py
    --check). SKIPPED (a pass with a note) where Python 2.7 or the suite cannot be had."""
    start = time.monotonic()
    name = f"autobahn[{role}]"
    rc, lines = run_script([os.path.join("autobahn", "run_autobahn.py"), "--role", role,
                            "--server", "godot", "--no-build", "--check", "--timeout", "600"], 900)
    if rc is None:
        return Result(name, False, time.monotonic() - start, lines, count_failed=1)
    skipped = [ln for ln in lines if ln.startswith("SKIPPED")]
    if rc == 0 and skipped:
        return Result(name, True, time.monotonic() - start, note=skipped[0])
    total = next((ln for ln in lines if ln.startswith("| **total**")), "")
    counts = re.findall(r"\*\*(\d+)\*\*", total)
    summary = (" / ".join(f"{n} {b}" for n, b in zip(counts, (
        "OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"))) or "no totals")
    if rc == 0:
        return Result(name, True, time.monotonic() - start, note=summary)
    reasons = [ln for ln in lines if ln.startswith(("CHECK FAILED", "FAIL"))] or \
        [f"exit code {rc}"]
    tail = "\n".join("      " + ln for ln in lines[-40:])
    return Result(name, False, time.monotonic() - start, [summary] + reasons[:10], tail,
                  count_failed=1)


def library_names() -> tuple[str, str]:
    key = (platform.system(), platform.machine())
    if key not in LIBRARY_NAMES:
        raise RuntimeError(f"no library name known for {key}: add it to LIBRARY_NAMES")
    return LIBRARY_NAMES[key]


def build_extension() -> Result:
    start = time.monotonic()
    name = f"build[{EXT_CRATE}]"
    cmd = ["cargo", "build", "--release", "-p", EXT_CRATE]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, errors="replace")
    if proc.returncode != 0:
        tail = "\n".join("      " + ln for ln in (proc.stdout + proc.stderr).splitlines()[-40:])
        return Result(name, False, time.monotonic() - start,
                      [f"`{' '.join(cmd)}` exit code {proc.returncode}"], tail, count_failed=1)
    try:
        built, installed = library_names()
    except RuntimeError as e:
        return Result(name, False, time.monotonic() - start, [str(e)], count_failed=1)
    target_dir = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
    src = os.path.join(target_dir, "release", built)
    if not os.path.exists(src):
        return Result(name, False, time.monotonic() - start, [f"{src} was not built"],
                      count_failed=1)
    os.makedirs(ADDON_BIN, exist_ok=True)
    dst = os.path.join(ADDON_BIN, installed)
    tmp = dst + ".tmp"
    shutil.copy2(src, tmp)
    os.replace(tmp, dst)  # atomic: never a half-written library
    return Result(name, True, time.monotonic() - start, note=f"-> {os.path.relpath(dst, REPO)}")


COPY_MARKER = ".made-by-run_tests"


def _link_or_copy(link: str, target_rel: str) -> str:
    """Makes `link` a symlink to `target_rel` (relative to link's dir), else a fresh copy.
    Refuses to remove a real directory it did not make."""
    target_abs = os.path.normpath(os.path.join(os.path.dirname(link), target_rel))
    if os.path.islink(link):
        if os.readlink(link) == target_rel:
            return "symlink"
        os.unlink(link)
    elif os.path.isdir(link):
        if not os.path.exists(os.path.join(link, COPY_MARKER)):
            raise RuntimeError(f"{link} is a directory run_tests.py did not make: move it away")
        shutil.rmtree(link)
    elif os.path.exists(link):
        os.unlink(link)
    os.makedirs(os.path.dirname(link), exist_ok=True)
    try:
        os.symlink(target_rel, link, target_is_directory=True)
        return "symlink"
    except (OSError, NotImplementedError):
        if os.path.isdir(target_abs):
            shutil.copytree(target_abs, link)
        else:
            os.makedirs(link, exist_ok=True)
        with open(os.path.join(link, COPY_MARKER), "w") as f:
            f.write(f"copy of {target_rel}, refreshed by tests/run_tests.py\n")
        return "copy"


def prepare_project(godot: str) -> list[str]:
    """Links the addon and the scenarios into the project and imports it. Returns warnings."""
    warnings = []
    _link_or_copy(os.path.join(PROJECT, "addons", "rust_websocket"),
                  os.path.join("..", "..", "addons", "rust_websocket"))
    _link_or_copy(os.path.join(PROJECT, "tests"), os.path.join("..", "tests", "godot"))
    proc = subprocess.run([godot, "--headless", "--path", PROJECT, "--import"], cwd=REPO,
                          capture_output=True, text=True, errors="replace", timeout=300,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        warnings.append(f"godot --import exit code {proc.returncode}:\n"
                        + "\n".join(proc.stderr.splitlines()[-20:]))
    has_ext = os.path.isdir(ADDON_DIR) and any(f.endswith(".gdextension")
                                               for f in os.listdir(ADDON_DIR))
    ext_list = os.path.join(PROJECT, ".godot", "extension_list.cfg")
    if not has_ext:
        warnings.append(f"no .gdextension in {os.path.relpath(ADDON_DIR, REPO)}: the "
                        f"{RUST} pairings will fail")
    elif not os.path.exists(ext_list):
        warnings.append("godot --import wrote no .godot/extension_list.cfg")
    return warnings


# ------------------------------------------------------------------------------------------

def print_result(r: Result) -> None:
    if r.ok:
        extra = f", {r.note}" if r.note else ""
        print(f"PASS {r.name} ({r.seconds:.1f}s{extra})", flush=True)
        if r.details:
            print(r.details, flush=True)
    else:
        print(f"FAIL {r.name}: {'; '.join(r.reasons)} ({r.seconds:.1f}s)", flush=True)
        if r.details:
            print(r.details, flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-k", dest="filter", action="append", default=[],
                    help="run only tests whose name contains SUBSTR (repeatable: any matches)")
    ap.add_argument("--peers", default="all",
                    help="pairings: builtin (the oracle alone) | rust (every pairing with the "
                         "addon) | rust-only | mixed | all, or a comma-separated list of those "
                         "and/or pairing labels like rust-srv/builtin-cli (default all)")
    ap.add_argument("-j", type=int, default=2, help="tests run in parallel (default 2)")
    ap.add_argument("--no-build", action="store_true",
                    help="skip cargo test and cargo build (use the library already in "
                         "addons/rust_websocket/bin)")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="print every process's full output")
    ap.add_argument("--list", action="store_true", help="list the tests and exit")
    ap.add_argument("--keep", action="store_true", help="keep the sync directory")
    return ap.parse_args(argv)


def select_pairings(spec: str) -> list[str]:
    labels: list[str] = []
    for part in spec.split(","):
        part = part.strip()
        if part in PEER_SETS:
            new = PEER_SETS[part]
        elif part in PAIRINGS:
            new = [part]
        else:
            raise SystemExit(f"--peers: unknown {part!r} (use {', '.join(PEER_SETS)} or "
                             f"{', '.join(PAIRINGS)})")
        labels += [x for x in new if x not in labels]
    return [x for x in PAIRINGS if x in labels]  # stable order


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    labels = select_pairings(args.peers)
    tests = build_tests(labels)
    wanted = lambda name: not args.filter or any(f in name for f in args.filter)  # noqa: E731
    tests = [t for t in tests if wanted(t.name)]
    run_cargo = not args.no_build and wanted(f"cargo_test[{CORE_CRATE}]")
    autobahn = [role for role in AUTOBAHN_ROLES
                if wanted(f"autobahn[{role}]") and (args.peers == "all" or "rust" in args.peers)]
    demos = [lb for lb in DEMO_PAIRINGS if wanted(f"demo[{lb}]") and (
        args.peers == "all" or "rust" in args.peers or lb in args.peers)]
    if args.list:
        if run_cargo:
            print(f"cargo_test[{CORE_CRATE}]")
        for t in tests:
            print(t.name)
        for lb in demos:
            print(f"demo[{lb}]")
        for role in autobahn:
            print(f"autobahn[{role}]")
        return 0

    suite_start = time.monotonic()
    results: list[Result] = []
    if run_cargo:
        r = run_cargo_test()
        print_result(r)
        results.append(r)
    needs_rust = any(p.cls == RUST for t in tests for p in t.procs) or bool(autobahn or demos)
    if not args.no_build and needs_rust:
        r = build_extension()
        if not r.ok:
            print_result(r)
            results.append(r)
        else:
            print(f"# built {EXT_CRATE} in {r.seconds:.1f}s ({r.note})", flush=True)

    if tests:
        try:
            godot = godot_bin.godot_path()
        except Exception as e:  # noqa: BLE001 - reported as a failing step
            r = Result("godot_binary", False, 0.0, [str(e)], count_failed=1)
            print_result(r)
            results.append(r)
            tests = []
    if tests:
        print(f"# godot: {godot} ({godot_bin.godot_version(godot)})", flush=True)
        provision.provide_for(t.hook for t in tests)  # Chromium, nginx... before the tests start
        try:
            for w in prepare_project(godot):
                print(f"# warning: {w}", flush=True)
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            r = Result("prepare_project", False, 0.0, [str(e)], count_failed=1)
            print_result(r)
            results.append(r)
            tests = []
    if tests:
        work = tempfile.mkdtemp(prefix="rwsmp-tests-")
        # Below the OS's ephemeral range (Linux 32768+, Windows/macOS 49152+), so a client's
        # outgoing socket can never hold a port a later test wants to listen on.
        base = random.randrange(10000, 32000 - PORTS_PER_TEST * (len(tests) + 1))
        ports = {t.name: base + i * PORTS_PER_TEST for i, t in enumerate(tests)}
        lock = threading.Lock()

        def one(t: Test) -> Result:
            r = run_godot_test(t, godot, ports[t.name], work, args.verbose)
            with lock:
                print_result(r)
            return r

        with ThreadPoolExecutor(max_workers=max(1, args.j)) as ex:
            results += list(ex.map(one, tests))
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"# sync dirs kept in {work}")
    # After the scenarios, one at a time: the demos pick their ports from the OS's ephemeral
    # range, and Autobahn's timing cases want the machine to themselves.
    for lb in demos:
        r = run_demo_test(lb)
        print_result(r)
        results.append(r)
    for role in autobahn:
        r = run_autobahn(role)
        print_result(r)
        results.append(r)

    passed = sum(r.count_passed if (r.count_passed or r.count_failed) else int(r.ok)
                 for r in results)
    failed = sum(r.count_failed if (r.count_passed or r.count_failed) else int(not r.ok)
                 for r in results)
    failed_names = [r.name for r in results if not r.ok]
    if failed_names:
        print("# failed: " + " ".join(failed_names))
    print(f"# total time {time.monotonic() - suite_start:.1f}s")
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
