#!/usr/bin/env python3
"""Autobahn|Testsuite (the RFC 6455 conformance suite) against RustWebSocketMultiplayerPeer.

    python3 tests/autobahn/run_autobahn.py                 # both servers, every case
    python3 tests/autobahn/run_autobahn.py --server godot --cases '1.*,2.*' --no-build
    python3 tests/autobahn/run_autobahn.py --role client   # the addon as the client

tests/run_tests.py runs it as autobahn[server] and autobahn[client] with --deflate-sample
--jobs 2: the 301 cases outside 12.* and 13.* (about 30 s), then 96 of the 216
permessage-deflate cases over two wstest processes side by side. All 216 (1000 messages each,
up to 128 KiB, echoed one at a time) are CPU-bound: wstest compresses, hashes and decompresses
every message in Python 2 and the addon compresses each echo at level 6, about 11 GB per role;
they run only without --deflate-sample (RELIABILITY.md has the time and CPU of a full run).
Autobahn's optional C helpers (wsaccel) were measured and are not used: these cases neither
mask nor validate UTF-8 in Python.
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
   With --jobs N the cases outside 12.* and 13.* run first in one wstest, then the
   permessage-deflate ones in N at once (balanced by bytes echoed), each wstest with its own
   spec, log and reports in --out/run-P-J; their index.json files are merged.

With `--role client` the roles swap: `wstest -m fuzzingserver --webport 0` (no status page)
listens on 127.0.0.1 and
tests/godot/autobahn_client.gd (RustWebSocketMultiplayerPeer as a raw-mode client, offering
permessage-deflate unless --no-compression) runs every case against it, echoing each message,
then asks for the reports; with --jobs, one such pair per case list. The suite negotiates permessage-deflate only in cases 12.* and 13.*
(all 216 of them with compression on; without it they are UNIMPLEMENTED).

Exit status 1 if any case FAILED for the addon, else 0. With --check (what tests/run_tests.py
runs, both roles, every case) also 1 for a NON-STRICT case outside the known ones
(ALLOWED_NON_STRICT), any UNIMPLEMENTED (outside 12.* and 13.* with --no-compression), or a
case with no result.
Only the Python 3 standard library is used here.

Over 500 lines: setting up the suite (Python 2, the echo peers), running it in both roles
and judging its report (what --check allows) are one procedure.
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
# 216 permessage-deflate cases eight of each of the 12 groups: 1-6 (1000 messages of 16 B to
# 8 KiB) and 11-12 (8 and 16 KiB sent in 256-byte frames), so every offer and parameter set
# the suite tries, with whole and fragmented compressed messages. The other 120 (32 KiB to
# 128 KiB messages) are nearly all of the bytes: all 216 took 37 to 45 minutes per role on a
# shared 2-core machine, CPU-bound on wstest compressing in Python 2 and on the addon's
# deflate at level 6 (RELIABILITY.md has the figures). Patterns with `*` match as prefixes in
# wstest, so the sample is spelled out.
DEFLATE_SAMPLE = [f"{a}.{b}.{c}" for a, groups in ((12, 5), (13, 7))
                  for b in range(1, groups + 1) for c in (1, 2, 3, 4, 5, 6, 11, 12)]
DEFLATE_ALL = [f"{a}.{b}.{c}" for a, groups in ((12, 5), (13, 7))
               for b in range(1, groups + 1) for c in range(1, 19)]
# Bytes each 12.x.c / 13.x.c case echoes (message size of c = 1..18 times its 1000 messages,
# from the suite's case12_x_x.py): what --jobs balances.
DEFLATE_BYTES = [1000 * n for n in (16, 64, 256, 1024, 4096, 8192, 16384, 32768, 65536, 131072,
                                    8192, 16384, 32768, 65536, 131072, 131072, 131072, 131072)]
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
    return [] if args.no_compression else ["compression=1", "threshold=0",
                                           f"level={args.level}"]


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


def selected_cases(args) -> list[str]:
    """The case patterns the arguments select."""
    if args.deflate_sample:
        return SAMPLE_CATEGORIES + DEFLATE_SAMPLE
    return [c.strip() for c in args.cases.split(",") if c.strip()]


def plan(args) -> list[list[list[str]]]:
    """Phases, run one after the other, of case lists run side by side (one wstest each).
    With --jobs N over the default selection (every case, or --deflate-sample): the cases
    outside 12.* and 13.* alone first (their timing cases want the machine), then the
    permessage-deflate cases split N ways by message size. Otherwise one list."""
    default = (args.cases == "*" and not args.exclude) or args.deflate_sample
    if args.jobs <= 1 or not default:
        return [[selected_cases(args)]]
    deflate = DEFLATE_SAMPLE if args.deflate_sample else DEFLATE_ALL
    return [[SAMPLE_CATEGORIES], split_cases(deflate, args.jobs)]


def split_cases(cases: list[str], jobs: int) -> list[list[str]]:
    """`cases` (12.x.y / 13.x.y) over `jobs` lists of about equal bytes echoed: the largest
    first, each to the list with the fewest bytes so far."""
    lists: list[list[str]] = [[] for _ in range(jobs)]
    load = [0] * jobs
    for case in sorted(cases, key=lambda c: -DEFLATE_BYTES[int(c.split(".")[2]) - 1]):
        i = load.index(min(load))
        lists[i].append(case)
        load[i] += DEFLATE_BYTES[int(case.split(".")[2]) - 1]
    return [sorted(lst, key=_case_key) for lst in lists if lst]


def wstest_command(args, py27: str, wstest: str, sc_dir: str, work: str, mode: str,
                   cases: list[str], **spec) -> tuple[list[str], dict]:
    """Writes work/spec.json (`cases`, the exclusions from args, plus `spec`, reports into
    work/reports) and returns the wstest command line for `mode` and its environment."""
    os.makedirs(work, exist_ok=True)
    spec.update({"outdir": os.path.join(work, "reports"),
                 "cases": cases,
                 "exclude-cases": [c.strip() for c in args.exclude.split(",") if c.strip()],
                 "exclude-agent-cases": {}})
    spec_path = os.path.join(work, "spec.json")
    with open(spec_path, "w") as f:
        json.dump(spec, f, indent=1)
    return [py27, wstest, "-m", mode, "-s", spec_path], dict(os.environ, PYTHONPATH=sc_dir)


def job_dirs(work: str, phases: list[list[list[str]]]) -> list[list[str]]:
    """Each wstest's own directory: `work` itself for a single one, else work/run-P-J."""
    if len(phases) == 1 and len(phases[0]) == 1:
        return [[work]]
    return [[os.path.join(work, f"run-{p}-{j}") for j in range(len(ph))]
            for p, ph in enumerate(phases)]


def merge_reports(work: str, dirs: list[list[str]]) -> None:
    """The jobs' reports/index.json merged into work/reports/index.json (HTML stays in each)."""
    flat = [d for ph in dirs for d in ph]
    if flat == [work]:
        return
    merged: dict = {}
    for d in flat:
        path = os.path.join(d, "reports", "index.json")
        if not os.path.exists(path):
            log(f"# no report from {d} (see its wstest.log)")
            continue
        with open(path) as f:
            for agent, cases in json.load(f).items():
                merged.setdefault(agent, {}).update(cases)
    if merged:
        os.makedirs(os.path.join(work, "reports"), exist_ok=True)
        with open(os.path.join(work, "reports", "index.json"), "w") as f:
            json.dump(merged, f, indent=1)


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
    """wstest as the fuzzing server, the addon as the client (tests/godot/autobahn_client.gd);
    with --jobs, one pair of them per case list of a phase, side by side."""
    godot = prepare_godot(not args.no_build)
    phases = plan(args)
    dirs = job_dirs(work, phases)
    deadline = time.monotonic() + args.timeout
    for cases_lists, pdirs in zip(phases, dirs):
        pairs = []
        try:
            for cases, jdir in zip(cases_lists, pdirs):
                pairs.append(start_client_pair(args, py27, wstest, sc_dir, jdir, godot, cases))
            for server, client, wlog, jdir, t0 in pairs:
                try:
                    out, _ = client.communicate(timeout=max(1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    client.kill()
                    out, _ = client.communicate()
                    log(f"# godot client ({jdir}) killed at the --timeout")
                lines = out.splitlines()
                for ln in lines:
                    if ln.startswith(("CASES", "echoed", "TIMEOUT", "FAILED")):
                        log(f"# godot client: {ln}")
                log(f"# godot client exit code {client.returncode} after "
                    f"{time.monotonic() - t0:.0f}s" + ("" if "DONE" in lines else " (no DONE)"))
        finally:
            for server, client, wlog, _, _ in pairs:
                if client.poll() is None:
                    client.kill()
                    client.wait()
                server.terminate()
                try:
                    server.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    server.kill()
                wlog.close()
    merge_reports(work, dirs)


def start_client_pair(args, py27: str, wstest: str, sc_dir: str, jdir: str, godot: str,
                      cases: list[str]) -> tuple:
    """A wstest fuzzing server for `cases` (reports in jdir) and a Godot client running them."""
    import run_tests
    port = free_port()
    cmd, env = wstest_command(args, py27, wstest, sc_dir, jdir, "fuzzingserver", cases,
                              url=f"ws://127.0.0.1:{port}")
    cmd += ["--webport", "0"]  # no status page (it would listen on every interface, port 8080)
    log(f"# {' '.join(cmd)}")
    wlog = open(os.path.join(jdir, "wstest.log"), "w")
    server = subprocess.Popen(cmd, cwd=jdir, env=env, stdout=wlog, stderr=subprocess.STDOUT)
    end = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > end:
                server.kill()
                wlog.close()
                raise RuntimeError(f"the fuzzing server did not listen (see {jdir}/wstest.log)")
            time.sleep(0.2)
    client = subprocess.Popen(
        [godot, "--headless", "--path", run_tests.PROJECT, "-s",
         "res://tests/autobahn_client.gd", "--", f"url=ws://127.0.0.1:{port}",
         f"agent={AGENTS['godot']}", *compression_args(args)],
        stdout=subprocess.PIPE, stderr=open(os.path.join(jdir, "godot-client.log"), "w"),
        stdin=subprocess.DEVNULL, text=True, errors="replace", cwd=REPO)
    return server, client, wlog, jdir, time.monotonic()


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
                    help="every case outside 12.*/13.*, and 96 of those 216 (see DEFLATE_SAMPLE)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="run the permessage-deflate cases of the default selection over this "
                    "many wstest processes side by side, after the others (see plan())")
    ap.add_argument("--level", type=int, default=6,
                    help="the addon's compression_level in the echo scripts (default 6)")
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
        phases = plan(args)
        dirs = job_dirs(work, phases)
        t0 = time.monotonic()
        for cases_lists, pdirs in zip(phases, dirs):
            procs = []
            for cases, jdir in zip(cases_lists, pdirs):
                cmd, env = wstest_command(args, py27, wstest, sc_dir, jdir, "fuzzingclient",
                                          cases, servers=targets)
                log(f"# {' '.join(cmd)}  (servers: {', '.join(t['url'] for t in targets)})")
                wlog = open(os.path.join(jdir, "wstest.log"), "w")
                procs.append((subprocess.Popen(cmd, cwd=jdir, env=env, stdout=wlog,
                                               stderr=subprocess.STDOUT), wlog, jdir))
            for proc, wlog, jdir in procs:
                try:
                    proc.wait(timeout=max(1, t0 + args.timeout - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    log(f"# wstest ({jdir}) killed at the --timeout")
                wlog.close()
                log(f"# wstest exit code {proc.returncode} after {time.monotonic() - t0:.0f}s")
        merge_reports(work, dirs)
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
