#!/usr/bin/env python3
"""Autobahn|Testsuite (the RFC 6455 conformance suite) against RustWebSocketMultiplayerPeer.

    python3 tests/autobahn/run_autobahn.py                 # both servers, every case
    python3 tests/autobahn/run_autobahn.py --server godot --cases '1.*,2.*' --no-build
    python3 tests/autobahn/run_autobahn.py --role client   # the addon as the client

tests/run_tests.py runs it as autobahn[server] and autobahn[client] with --deflate-sample:
about 30 s each for the 301 cases outside 12.* and 13.*, and a minute for 48 of the 216
permessage-deflate cases; all 216 (1000 messages each, up to 128 KiB) took 44 min per role here
with the machine shared (the suite's Python is half of it), so they run only without it.
Steps:

1. Python 2.7 from `pyenv prefix 2.7.18` (or $RWSMP_PYTHON27, a python2.7 binary); without it
   the run is SKIPPED (exit 0) with a message.
2. `pip install --target CACHE/site autobahntestsuite==25.10.1` with that Python's pip, once
   (CACHE = $RWSMP_AUTOBAHN_CACHE or autobahn/ in tests/provision.py's cache); a
   `sitecustomize.py` that does `site.addsitedir(CACHE/site)` goes on PYTHONPATH.
3. Echo servers on 127.0.0.1: `godot` = tests/godot/autobahn_echo.gd, a headless Godot with
   RustWebSocketMultiplayerPeer (godot_protocol = false, 32 MiB buffers, compression_enabled
   with compression_threshold 0 unless --no-compression) echoing every message as the same
   frame type; `tungstenite` = tests/autobahn/echo-rs, tokio-tungstenite alone
   with the addon's buffer settings (built with cargo into target/autobahn-echo).
4. `CACHE/site/bin/wstest -m fuzzingclient -s spec.json` (the client side of the suite: it
   connects to the servers; nothing listens on other interfaces), then per-category counts of
   each behavior (OK, NON-STRICT, INFORMATIONAL, UNIMPLEMENTED, FAILED) from the JSON report
   (reports/index.json), printed as a Markdown table. The HTML report stays in --out.

With `--role client` the roles swap: `wstest -m fuzzingserver` listens on 127.0.0.1 and
tests/godot/autobahn_client.gd (RustWebSocketMultiplayerPeer as a raw-mode client, offering
permessage-deflate unless --no-compression) runs every case against it, echoing each message,
then asks for the reports. The suite negotiates permessage-deflate only in cases 12.* and 13.*
(all 216 of them with compression on; without it they are UNIMPLEMENTED).

Exit status 1 if any case FAILED for the addon, else 0. With --check (what tests/run_tests.py
runs, both roles, every case) also 1 for a NON-STRICT case outside the known ones
(ALLOWED_NON_STRICT), any UNIMPLEMENTED (outside 12.* and 13.* with --no-compression), or a
case with no result.
Only the Python 3 standard library is used here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
REPO = os.path.dirname(TESTS)
sys.path.insert(0, TESTS)

AUTOBAHN = "autobahntestsuite==25.10.1"
BEHAVIORS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
CATEGORY_NAMES = {
    1: "framing", 2: "pings/pongs", 3: "reserved bits", 4: "opcodes", 5: "fragmentation",
    6: "UTF-8 handling", 7: "close handling", 9: "limits/performance",
    10: "auto-fragmentation", 12: "permessage-deflate", 13: "permessage-deflate",
}
AGENTS = {"godot": "RustWebSocketMultiplayerPeer", "tungstenite": "tokio-tungstenite"}
# --check: the cases the addon may answer NON-STRICT (RELIABILITY.md says why: a valid message
# echoed before the bad frame after it was seen, or UTF-8 failed at the frame's end, not at the
# first bad byte), and the categories it may leave UNIMPLEMENTED with --no-compression
# (permessage-deflate; with compression on, none).
ALLOWED_NON_STRICT = {"3.2", "3.3", "3.4", "4.1.3", "4.1.4", "4.1.5", "4.2.3", "4.2.4", "4.2.5",
                      "5.15", "6.4.3", "6.4.4"}
ALLOWED_UNIMPLEMENTED = {12, 13}
ALL_CASES = 517  # Autobahn|Testsuite 25.10.1, every case
# --deflate-sample (what tests/run_tests.py runs): every case outside 12.* and 13.*, and of the
# 216 permessage-deflate cases the first four of each of the 12 groups (every offer and
# parameter set the suite tries, with 16 B to 1 KiB messages). All 216 take about 45 minutes
# per role on a 2-core machine (wstest compresses 1000 messages of up to 128 KiB per case in
# Python 2); the sample about a minute. Patterns with `*` match as prefixes in wstest, so the
# sample is spelled out.
DEFLATE_SAMPLE = [f"{a}.{b}.{c}" for a, groups in ((12, 5), (13, 7))
                  for b in range(1, groups + 1) for c in range(1, 5)]
SAMPLE_CATEGORIES = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"]
SAMPLE_CASES = 301 + len(DEFLATE_SAMPLE)


def log(msg: str) -> None:
    print(msg, flush=True)


def find_python27() -> str | None:
    env = os.environ.get("RWSMP_PYTHON27")
    if env:
        return env if os.access(env, os.X_OK) else None
    try:
        prefix = subprocess.run(["pyenv", "prefix", "2.7.18"], capture_output=True, text=True,
                                timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    path = os.path.join(prefix, "bin", "python2.7") if prefix else ""
    return path if path and os.access(path, os.X_OK) else None


def cache_dir() -> str:
    import provision  # tests/: the one cache of every program the suite provides
    return os.environ.get("RWSMP_AUTOBAHN_CACHE") or os.path.join(provision.cache_dir(), "autobahn")


def install_wstest(py27: str) -> tuple[str, str]:
    """Installs the suite once; returns (wstest path, directory with sitecustomize.py)."""
    cache = cache_dir()
    site_dir = os.path.join(cache, "site-" + AUTOBAHN.split("==")[1])
    wstest = os.path.join(site_dir, "bin", "wstest")
    sc_dir = os.path.join(cache, "sitecustomize")
    if not os.path.exists(wstest):
        os.makedirs(cache, exist_ok=True)
        if subprocess.run([py27, "-m", "pip", "--version"], capture_output=True).returncode != 0:
            log("# pip is missing for Python 2.7: python2.7 -m ensurepip")
            subprocess.run([py27, "-m", "ensurepip"], check=True)
        tmp = site_dir + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        log(f"# installing {AUTOBAHN} into {site_dir} (Python 2.7's pip, once)")
        subprocess.run([py27, "-m", "pip", "install", "--disable-pip-version-check",
                        "--no-warn-script-location", "--target", tmp, AUTOBAHN], check=True)
        os.replace(tmp, site_dir)
    os.makedirs(sc_dir, exist_ok=True)
    with open(os.path.join(sc_dir, "sitecustomize.py"), "w") as f:
        f.write(f"import site\nsite.addsitedir({site_dir!r})\n")
    return wstest, sc_dir


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def compression_args(args) -> list[str]:
    """The echo scripts' permessage-deflate settings: on, every message compressed."""
    return [] if args.no_compression else ["compression=1", "threshold=0"]


def wait_ready(proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited ({proc.returncode}) before READY")
            continue
        if line.startswith("READY"):
            return
        if line.startswith("FAILED"):
            raise RuntimeError(f"{what}: {line.strip()}")
    raise RuntimeError(f"{what}: no READY within {timeout:.0f}s")


def prepare_godot(build: bool) -> str:
    """Builds the extension (unless told not to), links and imports the project; the Godot path."""
    import godot_bin
    import run_tests
    if build:
        r = run_tests.build_extension()
        if not r.ok:
            raise RuntimeError("building the extension failed: " + "; ".join(r.reasons)
                               + "\n" + r.details)
    godot = godot_bin.godot_path()
    for w in run_tests.prepare_project(godot):
        log(f"# warning: {w}")
    return godot


def wstest_command(args, py27: str, wstest: str, sc_dir: str, work: str, mode: str,
                   **spec) -> tuple[list[str], dict]:
    """Writes work/spec.json (the case selection from args, plus `spec`) and returns the
    wstest command line for `mode` and its environment."""
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if args.deflate_sample:
        cases = SAMPLE_CATEGORIES + DEFLATE_SAMPLE
    spec.update({"outdir": os.path.join(work, "reports"),
                 "cases": cases,
                 "exclude-cases": [c.strip() for c in args.exclude.split(",") if c.strip()],
                 "exclude-agent-cases": {}})
    spec_path = os.path.join(work, "spec.json")
    with open(spec_path, "w") as f:
        json.dump(spec, f, indent=1)
    return [py27, wstest, "-m", mode, "-s", spec_path], dict(os.environ, PYTHONPATH=sc_dir)


class Servers:
    """Starts the echo servers; stops them on exit."""

    def __init__(self, work: str):
        self.work = work
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.stop_file = os.path.join(work, "stop-godot")
        self.logs: dict[str, str] = {}

    def start_godot(self, build: bool, extra: list[str]) -> int:
        import run_tests
        godot = prepare_godot(build)
        port = free_port()
        out = os.path.join(self.work, "godot-echo.log")
        self.logs["godot"] = out
        proc = subprocess.Popen(
            [godot, "--headless", "--path", run_tests.PROJECT, "-s",
             "res://tests/autobahn_echo.gd", "--", f"port={port}", f"stop={self.stop_file}",
             *extra],
            stdout=subprocess.PIPE, stderr=open(out, "w"), stdin=subprocess.DEVNULL, text=True,
            errors="replace", cwd=REPO)
        self.procs.append(("godot", proc))
        wait_ready(proc, "the Godot echo server")
        return port

    def start_tungstenite(self) -> int:
        target = os.path.join(REPO, "target", "autobahn-echo")
        manifest = os.path.join(HERE, "echo-rs", "Cargo.toml")
        log("# cargo build --release (tests/autobahn/echo-rs)")
        subprocess.run(["cargo", "build", "--release", "--quiet", "--manifest-path", manifest,
                        "--target-dir", target], check=True, cwd=REPO)
        exe = os.path.join(target, "release", "rust_websocket_autobahn_echo")
        port = free_port()
        proc = subprocess.Popen([exe, str(port)], stdout=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True)
        self.procs.append(("tungstenite", proc))
        wait_ready(proc, "the tokio-tungstenite echo server")
        return port

    def stop(self) -> None:
        with open(self.stop_file, "w") as f:
            f.write("1")
        for name, proc in self.procs:
            try:
                if name == "godot":
                    out, _ = proc.communicate(timeout=10)
                    for ln in out.splitlines():
                        if ln.startswith("echoed"):
                            log(f"# godot echo server: {ln.strip()}")
                else:
                    proc.terminate()
                    proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run_client_role(args, py27: str, wstest: str, sc_dir: str, work: str) -> None:
    """wstest as the fuzzing server, the addon as the client (tests/godot/autobahn_client.gd)."""
    import run_tests
    godot = prepare_godot(not args.no_build)
    port = free_port()
    cmd, env = wstest_command(args, py27, wstest, sc_dir, work, "fuzzingserver",
                              url=f"ws://127.0.0.1:{port}")
    log(f"# {' '.join(cmd)}")
    wlog = open(os.path.join(work, "wstest.log"), "w")
    server = subprocess.Popen(cmd, cwd=work, env=env, stdout=wlog, stderr=subprocess.STDOUT)
    try:
        end = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > end:
                    raise RuntimeError(f"the fuzzing server did not listen (see {work}/wstest.log)")
                time.sleep(0.2)
        t0 = time.monotonic()
        out = os.path.join(work, "godot-client.log")
        proc = subprocess.run(
            [godot, "--headless", "--path", run_tests.PROJECT, "-s",
             "res://tests/autobahn_client.gd", "--", f"url=ws://127.0.0.1:{port}",
             f"agent={AGENTS['godot']}", *compression_args(args)],
            stdout=subprocess.PIPE, stderr=open(out, "w"), stdin=subprocess.DEVNULL, text=True,
            errors="replace", cwd=REPO, timeout=args.timeout)
        lines = proc.stdout.splitlines()
        for ln in lines:
            if ln.startswith(("CASES", "echoed", "TIMEOUT", "FAILED")):
                log(f"# godot client: {ln}")
        log(f"# godot client exit code {proc.returncode} after {time.monotonic() - t0:.0f}s"
            + ("" if "DONE" in lines else " (no DONE)"))
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        wlog.close()


def summarize(index: dict) -> dict:
    """agent -> category -> behavior -> count, plus agent -> list of non-OK cases."""
    out: dict = {}
    for agent, cases in index.items():
        cats: dict = {}
        odd: list = []
        for case_id, res in cases.items():
            cat = int(case_id.split(".")[0])
            beh = res.get("behavior", "?")
            cats.setdefault(cat, {b: 0 for b in BEHAVIORS})
            cats[cat][beh] = cats[cat].get(beh, 0) + 1
            if beh not in ("OK", "INFORMATIONAL", "UNIMPLEMENTED") or \
                    res.get("behaviorClose") not in ("OK", "INFORMATIONAL", None):
                odd.append((case_id, beh, res.get("behaviorClose")))
        out[agent] = {"categories": cats, "odd": sorted(odd, key=lambda x: _case_key(x[0]))}
    return out


def _case_key(case_id: str) -> tuple:
    return tuple(int(p) for p in case_id.split(".") if p.isdigit())


def markdown(summary: dict) -> str:
    lines = []
    for agent, data in summary.items():
        cats = data["categories"]
        lines.append(f"**{agent}**\n")
        lines.append("| category | " + " | ".join(BEHAVIORS) + " |")
        lines.append("|---|" + "---|" * len(BEHAVIORS))
        total = {b: 0 for b in BEHAVIORS}
        for cat in sorted(cats):
            row = cats[cat]
            for b in BEHAVIORS:
                total[b] += row.get(b, 0)
            lines.append(f"| {cat} {CATEGORY_NAMES.get(cat, '')} | "
                         + " | ".join(str(row.get(b, 0)) for b in BEHAVIORS) + " |")
        lines.append("| **total** | " + " | ".join(f"**{total[b]}**" for b in BEHAVIORS) + " |")
        if data["odd"]:
            lines.append("\nnot OK: " + ", ".join(
                f"{c} ({b}" + (f", close {bc}" if bc not in ("OK", None) else "") + ")"
                for c, b, bc in data["odd"]))
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--role", choices=("server", "client"), default="server",
                    help="the addon as the server (default; wstest is the fuzzing client) or "
                    "as the client (wstest is the fuzzing server)")
    ap.add_argument("--server", choices=("godot", "tungstenite", "both"), default="both")
    ap.add_argument("--cases", default="*", help="comma-separated case patterns (default *)")
    ap.add_argument("--exclude", default="",
                    help="comma-separated case patterns to skip, e.g. '12.*,13.*'")
    ap.add_argument("--deflate-sample", action="store_true",
                    help="every case outside 12.*/13.*, and 48 of those 216 (see DEFLATE_SAMPLE)")
    ap.add_argument("--no-compression", action="store_true",
                    help="the addon without permessage-deflate (12.* and 13.* UNIMPLEMENTED)")
    ap.add_argument("--no-build", action="store_true",
                    help="use the library already in addons/rust_websocket/bin")
    ap.add_argument("--out", default="", help="keep the reports here (default: a temp dir, "
                    "removed unless --keep)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--timeout", type=float, default=3600, help="limit for wstest (s)")
    ap.add_argument("--check", action="store_true",
                    help="strict (tests/run_tests.py): exit 1 also for a NON-STRICT or "
                    "UNIMPLEMENTED case outside the known ones, or a case not run; a missing "
                    "Python 2.7 or a failed install of the suite prints SKIPPED and exits 0")
    args = ap.parse_args(argv)

    py27 = find_python27()
    if not py27:
        log("SKIPPED: Python 2.7 not found (`pyenv prefix 2.7.18` or $RWSMP_PYTHON27); "
            "Autobahn|Testsuite 25.10.1 needs it")
        return 0
    try:
        wstest, sc_dir = install_wstest(py27)
    except (OSError, subprocess.SubprocessError) as e:
        if not args.check:
            raise
        log(f"SKIPPED: installing {AUTOBAHN} with {py27} failed: {e}")
        return 0
    work = args.out or tempfile.mkdtemp(prefix="rwsmp-autobahn-")
    os.makedirs(work, exist_ok=True)
    if args.role == "client":
        run_client_role(args, py27, wstest, sc_dir, work)
        return report(args, work)
    servers = Servers(work)
    try:
        targets = []
        if args.server in ("godot", "both"):
            targets.append({"agent": AGENTS["godot"],
                            "url": "ws://127.0.0.1:%d" % servers.start_godot(
                                not args.no_build, compression_args(args))})
        if args.server in ("tungstenite", "both"):
            targets.append({"agent": AGENTS["tungstenite"],
                            "url": f"ws://127.0.0.1:{servers.start_tungstenite()}"})
        cmd, env = wstest_command(args, py27, wstest, sc_dir, work, "fuzzingclient",
                                  servers=targets)
        log(f"# {' '.join(cmd)}  (servers: {', '.join(t['url'] for t in targets)})")
        t0 = time.monotonic()
        with open(os.path.join(work, "wstest.log"), "w") as wlog:
            proc = subprocess.run(cmd, cwd=work, env=env, stdout=wlog, stderr=subprocess.STDOUT,
                                  timeout=args.timeout)
        took = time.monotonic() - t0
        log(f"# wstest exit code {proc.returncode} after {took:.0f}s")
    finally:
        servers.stop()
    return report(args, work)


def report(args, work: str) -> int:
    """Prints the per-category table from the JSON report; 1 if the addon FAILED a case."""
    index_path = os.path.join(work, "reports", "index.json")
    if not os.path.exists(index_path):
        log(f"FAIL: no report at {index_path} (see {work}/wstest.log)")
        return 1
    with open(index_path) as f:
        summary = summarize(json.load(f))
    with open(os.path.join(work, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    log(markdown(summary))
    log(f"# reports: {os.path.join(work, 'reports', 'index.html')}"
        if (args.out or args.keep) else "# (reports removed; --keep or --out DIR to keep them)")
    failed = sum(c.get("FAILED", 0)
                 for c in summary.get(AGENTS["godot"], {}).get("categories", {}).values())
    allowed = ALLOWED_UNIMPLEMENTED if args.no_compression else set()
    expected = SAMPLE_CASES if args.deflate_sample else \
        ALL_CASES if args.cases == "*" and not args.exclude else None
    problems = check(summary, expected, allowed) if args.check else []
    for p in problems:
        log(f"CHECK FAILED: {p}")
    if not (args.out or args.keep):
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed or problems else 0


def check(summary: dict, expected: int | None, allowed_unimplemented: set) -> list[str]:
    """What --check rejects beyond FAILED: unexpected NON-STRICT/UNIMPLEMENTED, missing cases
    (`expected`: how many cases must have results; None: not checked)."""
    data = summary.get(AGENTS["godot"])
    if data is None:
        return [f"no results for {AGENTS['godot']}"]
    problems = []
    ran = sum(sum(row.values()) for row in data["categories"].values())
    if expected is not None and ran != expected:
        problems.append(f"{ran} cases have results, expected {expected}")
    for case, beh, close in data["odd"]:
        if beh == "FAILED" or close == "FAILED":
            problems.append(f"{case} FAILED")
        elif beh == "NON-STRICT" and case not in ALLOWED_NON_STRICT:
            problems.append(f"{case} NON-STRICT (not one of the known cases)")
        elif beh not in ("OK", "NON-STRICT", "INFORMATIONAL") or \
                close not in ("OK", "INFORMATIONAL", None):
            problems.append(f"{case} {beh}, close {close}")
    for cat, row in data["categories"].items():
        if row.get("UNIMPLEMENTED", 0) and int(cat) not in allowed_unimplemented:
            problems.append(f"category {cat}: {row['UNIMPLEMENTED']} UNIMPLEMENTED")
    return problems


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
