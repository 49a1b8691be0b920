#!/usr/bin/env python3
"""The demo command: python3 tests/run_demo.py [--demo chat|arena|all] [--builtin] [--no-build]

Runs the demos of godot-project/ as one headless server and two headless clients each, three
separate Godot processes on 127.0.0.1 and a free port, one demo after the other:

  chat   demo/demo.tscn: names registered by RPC, chat relayed by the server with the sender's
         id, a client->client whisper, clean leaves
  arena  demo/arena.tscn (the project's main scene, played with the arrow keys in a window) in
         its --autotest mode: the clients move by themselves, positions go client -> server ->
         everyone as unreliable RPCs at 30 Hz, each client must see every other client move

Steps:
  1. cargo build --release -p rust_websocket, copied into addons/rust_websocket/bin/
  2. godot-project/addons/rust_websocket -> ../../addons/rust_websocket (symlink or copy) and
     godot --headless --path godot-project --import (run again if it fails: the first import
     of a fresh project can crash at exit, godotengine/godot#123511)
  3. per demo, the server, then the clients once the server listens; their output is
     streamed, each line prefixed with its process's role
  4. checks: every process exited 0 by itself, no leaked instances, script errors, engine
     errors or crash; chat: each client got every client's chat lines relayed by the server
     with the right sender id, the whisper arrived with the whisperer's id, every client closed
     its connection and the server saw everyone leave; arena: each client printed ARENA OK
     (saw every other client move), left with a close handshake, and the server saw all leave.

Exits 0 only if all of that holds. It builds and imports with tests/run_tests.py's steps,
which also runs it (demo[...], three pairings). $GODOT selects the Godot binary (see
tests/godot_bin.py). Standard library only.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import godot_bin  # noqa: E402

import run_tests as _rt  # noqa: E402  (its build and project steps)

REPO = os.path.dirname(HERE)
PROJECT = os.path.join(REPO, "godot-project")
EXT_CRATE = "rust_websocket"
# demo -> (scene, what its lines start with: "" for "[server]", "arena " for "[arena server]")
SCENES = {"chat": ("res://demo/demo.tscn", ""), "arena": ("res://demo/arena.tscn", "arena ")}

RUST = "RustWebSocketMultiplayerPeer"
BUILTIN = "WebSocketMultiplayerPeer"

DEMO_TIMEOUT = 10          # the demo's own watchdog (--timeout), seconds
PROCESS_TIMEOUT = 30.0     # hard limit per Godot process, then it is killed
LISTEN_TIMEOUT = 20.0      # how long to wait for the server's "listening" line
SLOW_CLOSE_MS = 1000       # a close handshake slower than this is noted
BAD_PATTERNS = ("ObjectDB instances leaked", "leaked at exit", "Leaked instance",
                "SCRIPT ERROR", "Parse Error", "handle_crash", "Program crashed")

_print_lock = threading.Lock()


def out(line: str) -> None:
    with _print_lock:
        print(line, flush=True)


# ------------------------------------------------------------------------------------------
# Build and project setup: tests/run_tests.py's steps

def build() -> bool:
    r = _rt.build_extension()
    if r.ok:
        out(f"# built {EXT_CRATE} in {r.seconds:.1f}s ({r.note})")
        return True
    out(f"# build failed: {'; '.join(r.reasons)}")
    if r.details:
        out(r.details)
    return False


def _import(godot: str) -> tuple[int, str]:
    proc = subprocess.run([godot, "--headless", "--path", PROJECT, "--import"], cwd=REPO,
                          capture_output=True, text=True, errors="replace", timeout=300,
                          stdin=subprocess.DEVNULL)
    return proc.returncode, "\n".join(proc.stderr.splitlines()[-20:])


def prepare(godot: str) -> bool:
    """Links the addon into the project and imports it (twice if the first import crashes)."""
    warnings = _rt.prepare_project(godot)
    import_failed = any("--import" in w for w in warnings)
    for w in warnings:
        if "--import" not in w:
            out(f"# warning: {w}")
    attempt = 1
    while import_failed and attempt < 3:
        attempt += 1
        # The first --import of a fresh project may crash at exit (godotengine/godot#123511).
        out("# godot --import failed (the first import of a fresh project can crash at exit, "
            "godotengine/godot#123511): running it again")
        rc, err = _import(godot)
        import_failed = rc != 0
        if import_failed and attempt == 3:
            out(f"# godot --import failed {attempt} times (exit code {rc}):\n{err}")
    if not os.path.exists(os.path.join(PROJECT, ".godot", "extension_list.cfg")):
        out("# warning: godot --import wrote no .godot/extension_list.cfg")
    return not import_failed


# ------------------------------------------------------------------------------------------
# Processes

class Proc:
    def __init__(self, label: str, prefix: str, cmd: list[str]):
        self.label = label
        self.prefix = prefix          # what the demo itself prints first, e.g. "[server]"
        self.cmd = cmd
        self.lines: list[str] = []    # stdout and stderr, in arrival order
        self.killed = ""
        self.start = time.monotonic()
        self.seen = threading.Event()
        self.wait_for = ""
        kw: dict = {}
        if os.name == "posix":
            kw["start_new_session"] = True
        else:
            kw["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
        self.popen = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, errors="replace", **kw)
        self.threads = [threading.Thread(target=self._read, args=(self.popen.stdout, False),
                                         daemon=True),
                        threading.Thread(target=self._read, args=(self.popen.stderr, True),
                                         daemon=True)]
        for t in self.threads:
            t.start()

    def _read(self, stream, is_err: bool) -> None:
        for raw in stream:
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            self.lines.append(line)
            if line.startswith(self.prefix + " "):
                out(line)
            else:
                out(f"{self.prefix}{' (stderr)' if is_err else ''} {line}")
            if self.wait_for and self.wait_for in line:
                self.seen.set()

    def kill(self, reason: str) -> None:
        if self.popen.poll() is None:
            self.killed = reason
            try:
                if os.name == "posix":
                    os.killpg(self.popen.pid, 9)
                else:
                    self.popen.kill()
            except (ProcessLookupError, PermissionError, OSError):
                self.popen.kill()

    def finish(self) -> None:
        self.popen.wait()
        for t in self.threads:
            t.join(timeout=5)

    def own(self) -> list[str]:
        """The demo's own lines (prefix removed)."""
        p = self.prefix + " "
        return [ln[len(p):] for ln in self.lines if ln.startswith(p)]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_demo(godot: str, demo: str, names: list[str], server_builtin: bool,
             client_builtin: bool, port: int) -> list[Proc]:
    scene, tag = SCENES[demo]
    common = [f"--port={port}", f"--timeout={DEMO_TIMEOUT if demo == 'chat' else 20}"]
    if demo == "arena":
        common.append("--autotest")

    def demo_cmd(args: list[str]) -> list[str]:
        return [godot, "--headless", "--path", PROJECT, scene, "--", *args]

    srv_args = ["--server", "--bind=127.0.0.1", f"--clients={len(names)}", *common]
    if server_builtin:
        srv_args.append("--builtin")
    server = Proc("server", f"[{tag}server]", demo_cmd(srv_args))
    server.wait_for = "listening on"
    procs = [server]
    deadline = time.monotonic() + LISTEN_TIMEOUT
    while not server.seen.wait(0.05):
        if server.popen.poll() is not None or time.monotonic() > deadline:
            break
    if server.seen.is_set():
        for name in names:
            cli_args = ["--client", f"--name={name}", "--host=127.0.0.1", *common]
            if client_builtin:
                cli_args.append("--builtin")
            procs.append(Proc(f"client {name}", f"[{tag}client {name}]", demo_cmd(cli_args)))
    else:
        server.kill("server did not start listening")

    abort_at = None
    while True:
        alive = [p for p in procs if p.popen.poll() is None]
        if not alive:
            break
        now = time.monotonic()
        for p in alive:
            if now - p.start > PROCESS_TIMEOUT:
                p.kill(f"killed after {PROCESS_TIMEOUT:.0f}s")
        if abort_at is None and any(p.popen.poll() not in (None, 0) for p in procs):
            abort_at = now + 5.0
        elif abort_at is not None and now > abort_at:
            for p in alive:
                p.kill("killed 5s after another process failed")
        time.sleep(0.05)
    for p in procs:
        p.finish()
    return procs


# ------------------------------------------------------------------------------------------
# Checks on the output

def check_procs(procs: list[Proc], names: list[str]) -> list[str]:
    """Every process exited 0 by itself, without leaks, script errors or engine errors."""
    fails: list[str] = []
    for p in procs:
        rc = p.popen.returncode
        if p.killed:
            fails.append(f"{p.label}: {p.killed}")
        elif rc != 0:
            fails.append(f"{p.label}: exit code {rc}")
        text = "\n".join(p.lines)
        for pat in BAD_PATTERNS:
            if pat in text:
                fails.append(f"{p.label}: output contains {pat!r}")
        errors = [ln for ln in p.lines if ln.startswith(("ERROR:", "USER ERROR:"))]
        if errors and p.popen.returncode == 0:
            fails.append(f"{p.label}: {len(errors)} engine error(s), first: {errors[0]}")
    missing = [n for n in names if not any(p.label == f"client {n}" for p in procs)]
    if missing:
        fails.append(f"clients never started: {', '.join(missing)}")
    return fails


def check_arena(procs: list[Proc], names: list[str]) -> tuple[list[str], list[str]]:
    """The arena's self-test: each client saw every other move, all left, the server saw it."""
    fails = check_procs(procs, names)
    for p in procs:
        own = p.own()
        if p.label == "server":
            if "every client has left" not in own:
                fails.append("server: never saw every client leave after the round")
            continue
        if not any(ln.startswith("ARENA OK") for ln in own):
            fails.append(f"{p.label}: never saw every other player move")
        if "left the server" not in own:
            fails.append(f"{p.label}: never left cleanly")
    return fails, []


def check(procs: list[Proc], names: list[str]) -> tuple[list[str], list[str]]:
    """The chat demo's checks. Returns (failures, notes)."""
    notes: list[str] = []
    by_label = {p.label: p for p in procs}
    server = by_label["server"]
    clients = {n: by_label.get(f"client {n}") for n in names}
    fails = check_procs(procs, names)
    if any(c is None for c in clients.values()):
        return fails, notes

    # Each client's own peer id.
    ids: dict[str, int] = {}
    for n, c in clients.items():
        m = next((re.match(r"connected as peer (\d+)", ln) for ln in c.own()
                  if ln.startswith("connected as peer")), None)
        if m:
            ids[n] = int(m.group(1))
        else:
            fails.append(f"client {n}: never connected")
    if len(ids) != len(names):
        return fails, notes

    chat_re = re.compile(r'chat from (\S+) \((\d+)\)(?: \(mine\))?: "hello (\d+)/(\d+) from (\S+)"')
    relay_re = re.compile(r'chat from (\S+) \((\d+)\): "hello (\d+)/(\d+) from (\S+)" -> relaying')
    # Server: every chat RPC arrived, get_remote_sender_id() named the right client.
    relayed: dict[str, int] = {n: 0 for n in names}
    per_client = 0
    for ln in server.own():
        m = relay_re.match(ln)
        if not m:
            continue
        who, wid, _, total, author = m.group(1), int(m.group(2)), m.group(3), int(m.group(4)), m.group(5)
        per_client = total
        if who != author or ids.get(who) != wid:
            fails.append(f"server: chat by {author} attributed to {who} ({wid}); "
                         f"{author}'s id is {ids.get(author)}")
        relayed[author] = relayed.get(author, 0) + 1
    if per_client == 0:
        fails.append("server: relayed no chat")
    for n in names:
        if relayed[n] != per_client:
            fails.append(f"server: relayed {relayed[n]} chat lines from {n}, expected {per_client}")
    if not any(ln.startswith("every client has left") for ln in server.own()):
        fails.append("server: never saw every client leave")

    # Clients: each got every client's chat lines (its own included), with the right sender.
    for n, c in clients.items():
        got: dict[str, int] = {x: 0 for x in names}
        for ln in c.own():
            m = chat_re.match(ln)
            if not m or ln.endswith("-> relaying"):
                continue
            who, wid, author = m.group(1), int(m.group(2)), m.group(5)
            if who != author or ids.get(who) != wid:
                fails.append(f"client {n}: chat by {author} arrived as from {who} ({wid})")
            got[author] = got.get(author, 0) + 1
        for other in names:
            if got.get(other, 0) != per_client:
                fails.append(f"client {n}: got {got.get(other, 0)} chat lines from {other}, "
                             f"expected {per_client}")
        m = None
        for ln in c.own():
            m = re.match(r"disconnected from the server \(close handshake took (\d+) ms\)", ln) or m
        if m is None:
            fails.append(f"client {n}: never disconnected cleanly")
        elif int(m.group(1)) > SLOW_CLOSE_MS:
            notes.append(f"client {n}: the close handshake took {m.group(1)} ms")

    # The whisper: the client with the lowest id whispers to every other client, directly.
    whisperer = min(names, key=lambda x: ids[x])
    for n, c in clients.items():
        ws = [re.match(r'whisper from (\S+) \((\d+)\): "psst (\S+),', ln) for ln in c.own()
              if ln.startswith("whisper from")]
        if n == whisperer:
            if ws:
                fails.append(f"client {n}: got a whisper but it is the whisperer")
            continue
        if len(ws) != 1 or ws[0] is None:
            fails.append(f"client {n}: got {len(ws)} whispers from {whisperer}, expected 1")
            continue
        who, wid, to = ws[0].group(1), int(ws[0].group(2)), ws[0].group(3)
        if who != whisperer or wid != ids[whisperer] or to != n:
            fails.append(f"client {n}: whisper for {to} arrived from {who} ({wid}); expected "
                         f"from {whisperer} ({ids[whisperer]})")
    return fails, notes


# ------------------------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--builtin", action="store_true",
                    help="use the engine's WebSocketMultiplayerPeer everywhere")
    ap.add_argument("--builtin-server", action="store_true",
                    help="the server uses the built-in peer (clients stay Rust unless --builtin)")
    ap.add_argument("--builtin-clients", action="store_true",
                    help="the clients use the built-in peer")
    ap.add_argument("--demo", choices=("chat", "arena", "all"), default="all",
                    help="which demo: the chat (demo/demo.tscn), the arena (demo/arena.tscn, "
                    "its --autotest mode), or both one after the other (default)")
    ap.add_argument("--names", default="Alice,Bob", help="client names (default Alice,Bob)")
    ap.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    ap.add_argument("--no-build", action="store_true",
                    help="skip cargo build (use the library already in addons/rust_websocket/bin)")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.names.split(",") if n.strip()]
    if len(names) < 2 or len(set(names)) != len(names) or any(" " in n for n in names):
        ap.error("--names: at least two distinct names without spaces")
    server_builtin = args.builtin or args.builtin_server
    client_builtin = args.builtin or args.builtin_clients
    needs_rust = not (server_builtin and client_builtin)

    start = time.monotonic()
    if needs_rust and not args.no_build and not build():
        out("DEMO FAILED: build")
        return 1
    try:
        godot = godot_bin.godot_path()
    except Exception as e:  # noqa: BLE001
        out(f"DEMO FAILED: no Godot binary: {e}")
        return 1
    out(f"# godot: {godot} ({godot_bin.godot_version(godot)})")
    if not prepare(godot):
        out("DEMO FAILED: godot --import")
        return 1

    cls = lambda b: BUILTIN if b else RUST  # noqa: E731
    failed = []
    for demo in (["chat", "arena"] if args.demo == "all" else [args.demo]):
        port = args.port or free_port()
        out(f"# {demo} demo on 127.0.0.1:{port}: server {cls(server_builtin)}, clients "
            f"{', '.join(names)} {cls(client_builtin)}")
        procs = run_demo(godot, demo, names, server_builtin, client_builtin, port)
        fails, notes = (check if demo == "chat" else check_arena)(procs, names)
        for n in notes:
            out(f"# note: {n}")
        for f in fails:
            out(f"# FAIL {demo}: {f}")
        if fails:
            failed.append(demo)
        elif demo == "chat":
            out(f"# chat OK: server and {len(names)} clients exited 0; every client got every "
                "chat line with the right sender, the whisper arrived client to client, all "
                "left cleanly")
        else:
            out(f"# arena OK: server and {len(names)} clients exited 0; every client saw every "
                "other client move through the server, all left cleanly")
    secs = time.monotonic() - start
    if failed:
        out(f"DEMO FAILED: {', '.join(failed)} ({secs:.1f}s)")
        return 1
    out(f"DEMO OK ({secs:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
