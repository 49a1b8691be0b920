"""The table of Godot tests: one row per scenario, expanded into one test per pairing.

A row says which script runs (tests/godot/<script>.gd, the row's name unless said), with
which roles, in which pairings, with which Python hook (tests/*_hook*.py) beside it, and which
error messages the rust class must print (checked between the `mark()`s of the script). The
runner is tests/run_tests.py; how one test runs is tests/harness.py. To add a test, add a row
(tests/README.md, "Adding a test").

Pairings (`Row.pairings`):
    "all"          every selected pairing, named name[rust-srv/builtin-cli] etc.
    "alone"        each class on its own (X-srv/X-cli selected), named name[builtin] / name[rust]
    "rust-alone"   the rust class on its own: name[rust]
    "rust-server"  the pairings with a rust server
    "rust-any"     the pairings with a rust server or a rust client
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import hostile_hook
import netem_hook
import process_hooks
import wire_hooks
from browser_hook import browser_hook
from compression_hook import compression_hook
from failure_close_hook import failure_close_hook
from handshake_handler_hook import handshake_handler_hook
from haproxy_drain_hook import haproxy_drain_hook
from haproxy_hook import haproxy_hook
from health_hook import health_hook
from metrics_hook import metrics_hook
from shutdown_hook import shutdown_hook
from sigterm_drain_hook import expect_sigterm_prefix, server_prefix, sigterm_drain_hook
from harness import PAIRINGS, RUST, Proc, StderrExpect, Test, short_name
from proxy_hook import proxy_hook
from proxy_protocol_hook import proxy_protocol_hook
from tls_certs import pki_hook


@dataclass
class Row:
    name: str
    script: str = ""                      # tests/godot/<script>.gd; default: the name
    roles: tuple[str, ...] | Callable[[dict], tuple[str, ...]] = ("server", "client")
    pairings: str = "all"
    hook: Callable | None = None          # harness.Ctx -> checks, in a thread beside Godot
    hook_party: bool = False              # the hook is barrier party "py"
    # Arguments for every process's command line and for the hook (Ctx.args): a dict, or a
    # function of (server class, client class).
    args: dict | Callable[[str, str], dict] = field(default_factory=dict)
    # role -> {mark: regex}: what a rust process of that role must print (on stderr, between
    # mark(name) and the next mark). The built-in's wording is not checked.
    rust_stderr: dict[str, dict[str, str]] = field(default_factory=dict)
    prefix: dict[str, Callable] = field(default_factory=dict)  # role -> Proc.prefix
    process_timeout: float = 30.0


def _when(pairings: str, srv: str, cli: str) -> bool:
    return {"all": True,
            "alone": srv == cli,
            "rust-alone": srv == cli == RUST,
            "rust-server": srv == RUST,
            "rust-any": RUST in (srv, cli)}[pairings]


def _heartbeat_parts(srv: str, cli: str) -> dict:
    # Part a (the server drops a frozen client) needs a rust server, part b (a client notices
    # a frozen server) a rust client.
    return {"parts": ("a" if srv == RUST else "") + ("b" if cli == RUST else "")}


def _hostile(group: str, pairings: str = "alone", **args) -> Row:
    """A group of tests/hostile_hook.py against tests/godot/hostile.gd. The built-in runs the
    cheap groups as a comparison (its documented weaknesses are notes, not failures)."""
    name = "lifecycle" if group == "lifecycle" else f"hostile_{group}"
    return Row(name, "hostile", pairings=pairings, hook=hostile_hook.hook, hook_party=True,
               args=lambda srv, cli: {**hostile_hook.GODOT_ARGS, "group": group,
                                      **{k: v(srv) if callable(v) else v
                                         for k, v in args.items()}},
               rust_stderr={"server": hostile_hook.RUST_LOG.get(group, {})})


TLS_REFUSED = {  # the client's failed verification cases (tests/godot/tls.gd attempt())
    "tls_name_mismatch": r"(?i)name",
    "tls_untrusted": r"(?i)not trusted",
    "tls_unsafe_wrong_chain": r"(?i)not trusted",
    "tls_plain_on_wss": r"(?i)handshake|closed",
}

# Each refusal of tests/proxy_protocol_hook.py prints its own cause (all in one section).
PROXY_PROTOCOL_REFUSALS = "(?s)" + "".join(f"(?=.*{cause})" for cause in (
    r"127\.0\.0\.1, which is not in trusted_proxies",
    r"but proxy_protocol is off",
    r"trusted proxy 127\.0\.0\.1:\d+ closed: no PROXY protocol header",
    r"malformed PROXY protocol header: v1 address",
    r"malformed PROXY protocol header: v2 version",
    r"PROXY protocol header too long",
    r"truncated PROXY protocol header",
    r"no complete PROXY protocol header within handshake_timeout"))

TABLE = [
    # --- one class on its own
    Row("api_local", roles=("main",), pairings="alone", rust_stderr={"main": {
        "port_in_use": r"(?i)in use",
        "server_on_active": r"(?i)already",
        "client_on_active": r"(?i)already",
        "bad_url_http": r"(?i)http",
        "bad_url_ftp": r"(?i)ftp",
        "bad_url_empty": r"(?i)url|empty",
        "bad_url_nohost": r"(?i)host|url",
        "bad_url_wssx": r"(?i)wss\+x",
        "fresh_put_packet": r"(?i)not connected|unconfigured|connected",
        "unknown_target": r"(?i)12345"}}),
    Row("wire", roles=("server",), pairings="alone", hook=wire_hooks.wire_hook,
        hook_party=True),
    Row("headers", roles=("main",), pairings="alone", hook=wire_hooks.headers_hook,
        hook_party=True),
    Row("free_in_signal", roles=("main",), pairings="alone"),
    Row("send_bytes", roles=("main",), pairings="rust-alone"),
    Row("failure_close", roles=("main",), pairings="rust-alone", hook=failure_close_hook,
        hook_party=True, process_timeout=90.0,
        rust_stderr={"main": {"too_big": r"exceeds inbound_buffer_size"}}),
    # Hostile and broken clients, the 2000-socket burst (rust only: the built-in accepts one
    # connection per poll with a listen backlog of 8), connect/disconnect cycles.
    _hostile("http"),
    _hostile("frames"),
    _hostile("flow"),
    _hostile("conns", pairings="rust-alone"),
    _hostile("lifecycle", cycles=lambda srv: 10000 if srv == RUST else 2000),
    Row("raw_mode", roles=("server",), pairings="rust-alone", hook=wire_hooks.raw_mode_hook,
        hook_party=True),
    Row("proxy_protocol", roles=("server",), pairings="rust-alone", hook=proxy_protocol_hook,
        hook_party=True, rust_stderr={"server": {"refusals": PROXY_PROTOCOL_REFUSALS}}),
    Row("haproxy", pairings="rust-server", hook=haproxy_hook, hook_party=True),
    # Three rust servers (roles a, b, c) behind one HAProxy, 200 raw clients, a drains: told
    # by a flag (shutdown()), or by SIGTERM to its Godot process (shutdown_on_sigterm).
    *[Row(name, "haproxy_drain", roles=("a", "b", "c"), pairings="rust-alone",
          hook=haproxy_drain_hook, hook_party=True, args={"timeout": 100, "trigger": trigger},
          process_timeout=120.0)
      for name, trigger in (("haproxy_drain", "flag"), ("haproxy_drain_sigterm", "sigterm"))],
    Row("shutdown", pairings="rust-server", hook=shutdown_hook, hook_party=True,
        rust_stderr={"server": {"shutdown_twice": r"already shutting down",
                                "bad_shutdown_delay": r"shutdown_delay must be 0 or a positive"}}),
    Row("health", roles=("server",), pairings="rust-alone", hook=health_hook, hook_party=True,
        rust_stderr={"server": {"bad_health_path": r"health_path must be .*got 'healthz'",
                                "bad_health_allow": r"invalid health_allow entry"}}),
    # SIGTERM straight to Godot: opted in (deploy/dedicated_server.gd) it drains and exits 0;
    # not opted in it dies at once; a second SIGTERM during a drain ends it at once.
    Row("sigterm_drain", roles=("server", "plain", "twice"), pairings="rust-alone",
        hook=sigterm_drain_hook, hook_party=True,
        prefix={"server": server_prefix, "plain": expect_sigterm_prefix,
                "twice": expect_sigterm_prefix}),
    Row("metrics", roles=("server",), pairings="rust-alone", hook=metrics_hook, hook_party=True,
        rust_stderr={"server": {"bad_metrics_path": r"metrics_path must be .*got 'metrics'",
                                "bad_metrics_allow": r"invalid metrics_allow entry",
                                "same_paths": r"metrics_path and health_path are both"}}),
    Row("handshake_handler", pairings="rust-alone", hook=handshake_handler_hook,
        hook_party=True, rust_stderr={"server": {"reject_bad_status": r"400-599",
                                                 "double_answer": r"(?i)already answered"}}),
    Row("monitors", roles=("main",), pairings="rust-alone",
        rust_stderr={"main": {"add_twice": r"(?i)already exists"}}),
    # The JavaScript client (godot-project/web/) in headless Chromium. Chromium's first start
    # on a fresh, loaded machine can take over 20 s: tests/cdp.py gives it 60 s and a retry,
    # and the scenario's own watchdog and the process limit leave room for both.
    Row("browser", roles=("server",), pairings="alone", hook=browser_hook, hook_party=True,
        args={"timeout": 150}, process_timeout=160.0),
    # The same with compression on: Chromium offers permessage-deflate, the rust server accepts.
    Row("browser_compressed", "browser", roles=("server",), pairings="rust-alone",
        hook=browser_hook, hook_party=True, args={"timeout": 150, "compression": "1"},
        process_timeout=160.0),
    # permessage-deflate with Python's `websockets` as client and server, a decompression
    # bomb, and mixed pairs with the built-in (which offers and accepts nothing).
    Row("compression", roles=("main",), pairings="rust-alone", hook=compression_hook,
        hook_party=True, args={"timeout": 90}, process_timeout=120.0,
        rust_stderr={"main": {"bomb": r"inflates past inbound_buffer_size"}}),
    Row("slow_consumer", roles=("main",), pairings="rust-alone",
        hook=wire_hooks.slow_consumer_hook, hook_party=True,
        rust_stderr={"main": {"slow": r"closed \(1008\)"}}),
    # trusted_proxies behind a real nginx; clients of both classes.
    Row("proxy", pairings="rust-alone", hook=proxy_hook, hook_party=True, rust_stderr={
        "server": {"cidr_typo": r"host bits set; the network is 0\.0\.0\.0/0",
                   "forwarded_port": r"X-Forwarded-Port '99999' from trusted proxy "
                                     r"127\.0\.0\.1 is not a port"}}),
    Row("tls_local", roles=("main",), pairings="alone", rust_stderr={"main": {
        "tls_server_opts_on_client": r"TLSOptions\.client",
        "tls_client_opts_on_server": r"TLSOptions\.server",
        "tls_key_mismatch": r"(?i)does not match"}}),

    # --- a server and a client, in every selected pairing
    Row("connect"),
    Row("bytes_and_order"),
    Row("targets"),
    Row("rpc"),
    Row("disconnect"),
    Row("refuse_new_connections"),
    Row("errors_connected", rust_stderr={
        "server": {"server_too_big": r"(?i)65536|too (big|large)|buffer|limit"},
        "client": {"client_too_big": r"(?i)65536|too (big|large)|buffer|limit"}}),
    Row("handshake_timeout", hook=wire_hooks.handshake_timeout_hook,
        hook_party=True),
    Row("protocols"),
    Row("tls", rust_stderr={"client": TLS_REFUSED}),
    Row("tls_chain", hook=pki_hook, hook_party=True, rust_stderr={
        "client": {"bundle_by_method": r"(?i)returns the first one 3 times"}}),
    Row("peer_handle", hook=wire_hooks.peer_handle_hook),
    Row("ipv6", hook=wire_hooks.ipv6_hook),
    Row("too_big_one_peer"),
    *[Row(f"quit_live_{mode}", "quit_live", hook=process_hooks.quit_live_hook,
          args={"mode": mode}) for mode in ("server_first", "client_first", "pending")],

    # --- what only the rust class has, where it is the server and/or the client
    Row("server_control", pairings="rust-server"),
    Row("heartbeat", pairings="rust-any", hook=process_hooks.heartbeat_hook,
        args=_heartbeat_parts,
        roles=lambda a: ("server", "frozen", "client") if "a" in a["parts"]
        else ("server", "client")),
    # One stalling side per test: a side with a heartbeat of its own would (rightly) drop a
    # peer that answers no ping for two intervals.
    Row("stall", pairings="rust-any",
        args=lambda srv, cli: {"parts": "a" if srv == RUST else "b"}),
    # The client in a network namespace behind a veth that drops every packet.
    Row("link_cut", pairings="rust-server", hook=netem_hook.link_cut_hook,
        prefix={"client": netem_hook.client_prefix}),
]


def expand(row: Row, peer_labels: list[str]) -> list[Test]:
    """The tests of one row for the selected pairings."""
    tests = []
    for label in peer_labels:
        srv, cli = PAIRINGS[label]
        if not _when(row.pairings, srv, cli):
            continue
        args = row.args(srv, cli) if callable(row.args) else dict(row.args)
        roles = row.roles(args) if callable(row.roles) else row.roles
        classes = {role: cli if role in ("client", "frozen") else srv for role in roles}
        alone = row.pairings in ("alone", "rust-alone")
        t = Test(f"{row.name}[{short_name(srv) if alone else label}]",
                 [Proc(role, f"{row.script or row.name}.gd", classes[role], dict(args),
                       prefix=row.prefix.get(role)) for role in roles],
                 hook=row.hook, hook_party=row.hook_party, process_timeout=row.process_timeout,
                 args=args)
        t.stderr_expect = [StderrExpect(role, mark, regex)
                           for role, marks in row.rust_stderr.items()
                           if role in classes and classes[role] == RUST
                           for mark, regex in marks.items()]
        tests.append(t)
    return tests


def build_tests(peer_labels: list[str]) -> list[Test]:
    """Every test of the table for the selected pairings, in table order."""
    return [t for row in TABLE for t in expand(row, peer_labels)]

