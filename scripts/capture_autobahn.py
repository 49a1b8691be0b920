#!/usr/bin/env python3
"""Records real Autobahn|Testsuite traffic for the fuzz seeds (scripts/fuzz_seeds.py turns it
into each target's input format). Not part of any test run.

    nice -n 19 python3 scripts/capture_autobahn.py      # writes fuzz/autobahn-capture.json.gz

wstest (Autobahn|Testsuite 25.10.1, installed as tests/autobahn/run_autobahn.py installs it)
runs in fuzzingclient mode against the addon's own Godot echo server (tests/godot/
autobahn_echo.gd, raw mode, permessage-deflate accepted, every echo compressed) through a
recording TCP proxy on 127.0.0.1. For each connection it keeps the client's bytes (the upgrade
request, then masked frames) and the server's (the 101, then unmasked frames), each cut at
LIMIT bytes: CASES, two to five per case group 1-13, with and without permessage-deflate.
The library must be built (cargo build --release -p rust_websocket); it is copied into the
addon as the test harness does. wstest masks with random keys, so a new capture differs from
the committed one in its masks and in nothing the seeds depend on.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "autobahn"))

import run_autobahn  # noqa: E402
import steps  # noqa: E402

OUT = os.path.join(ROOT, "fuzz", "autobahn-capture.json.gz")
# Bytes kept per direction of a connection: the largest fuzz input (scripts/fuzz.py MAX_LEN).
LIMIT = 16384
# Two to five cases per group: every length encoding, pings, reserved bits and opcodes,
# fragments, valid and invalid UTF-8 split across frames, close codes, large messages,
# auto-fragmentation, and permessage-deflate with each offer the suite makes (13.1-13.7) and
# message sizes of 16 B to 8 KiB in whole and 256-byte frames.
CASES = ["1.1.3", "1.1.7", "1.2.3", "1.2.8", "2.3", "2.6", "2.10", "3.2", "3.7", "4.1.3",
         "4.2.4", "5.6", "5.9", "5.19", "6.2.3", "6.4.1", "6.12.1", "6.21.1", "7.1.6", "7.3.2",
         "7.5.1", "7.7.1", "7.9.1", "9.1.1", "9.7.1", "10.1.1", "12.1.1", "12.2.3", "12.3.2",
         "12.4.11", "12.5.1", "13.1.1", "13.2.2", "13.3.1", "13.4.3", "13.5.2", "13.6.1",
         "13.7.11"]


class Recorder:
    """A TCP proxy from `listen` to 127.0.0.1:`target` keeping each connection's first LIMIT
    bytes each way, in the order connections arrive."""

    def __init__(self, target: int):
        self.target = target
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections: list[dict[str, bytearray]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            rec = {"client": bytearray(), "server": bytearray()}
            self.connections.append(rec)
            for src, dst, key in ((client, server, "client"), (server, client, "server")):
                threading.Thread(target=self._pump, args=(src, dst, rec[key]),
                                 daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, kept: bytearray) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                kept += data[:LIMIT - len(kept)]
                dst.sendall(data)
        except OSError:
            pass
        for s in (dst, src):
            try:
                s.shutdown(socket.SHUT_WR if s is dst else socket.SHUT_RD)
            except OSError:
                pass


def main() -> int:
    py27 = run_autobahn.find_python27()
    if py27 is None:
        print("needs Python 2.7 (pyenv 2.7.18 or $RWSMP_PYTHON27)", file=sys.stderr)
        return 2
    wstest, sc_dir = run_autobahn.install_wstest(py27)
    built, installed = steps.library_names()
    src = os.path.join(ROOT, "target", "release", built)
    if not os.path.exists(src):
        print(f"{src} is missing: cargo build --release -p rust_websocket", file=sys.stderr)
        return 2
    os.makedirs(steps.ADDON_BIN, exist_ok=True)
    shutil.copy2(src, os.path.join(steps.ADDON_BIN, installed))
    work = tempfile.mkdtemp(prefix="autobahn-capture-")
    servers = run_autobahn.Servers(work)
    try:
        port = servers.start_godot(False, ["compression=1", "threshold=0", "level=6"])
        rec = Recorder(port)
        spec = {"servers": [{"agent": "RustWebSocketMultiplayerPeer",
                             "url": f"ws://127.0.0.1:{rec.port}"}]}
        args = types.SimpleNamespace(exclude="")  # what wstest_command reads of the options
        cmd, env = run_autobahn.wstest_command(args, py27, wstest, sc_dir, work, "fuzzingclient",
                                               CASES, **spec)
        with open(os.path.join(work, "wstest.log"), "w") as log:
            subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, check=True,
                           cwd=work, timeout=900)
    finally:
        servers.stop()
    cases = sorted(CASES, key=run_autobahn._case_key)
    if len(rec.connections) != len(cases):
        print(f"{len(rec.connections)} connections for {len(cases)} cases", file=sys.stderr)
        return 1
    out = [{"case": case, "client": base64.b64encode(bytes(c["client"])).decode(),
            "server": base64.b64encode(bytes(c["server"])).decode()}
           for case, c in zip(cases, rec.connections)]
    with gzip.open(OUT, "wt") as f:
        json.dump({"wstest": run_autobahn.AUTOBAHN, "limit": LIMIT, "connections": out}, f,
                  indent=0)
    total = sum(len(c["client"]) + len(c["server"]) for c in rec.connections)
    print(f"{len(out)} connections, {total} bytes -> {os.path.relpath(OUT, ROOT)} "
          f"({os.path.getsize(OUT)} bytes)")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
