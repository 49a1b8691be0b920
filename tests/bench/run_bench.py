#!/usr/bin/env python3
"""Side-by-side benchmark: RustWebSocketMultiplayerPeer vs Godot's WebSocketMultiplayerPeer
(and ENetMultiplayerPeer where the workload applies), headless Godot processes on 127.0.0.1.

    python3 tests/bench/run_bench.py            # full: 3 rounds, about 13 minutes on 2 cores
    python3 tests/bench/run_bench.py --quick    # 1 round, smaller counts: under 3 minutes
    python3 tests/bench/run_bench.py --rev HEAD # measure a commit, not the work tree
    python3 tests/bench/run_bench.py --only throughput,poll --classes rust,builtin --rounds 5

Workloads (every one bounded in time; the processes stop by themselves):
  throughput  one-way client->server, 64 B / 1 KiB / 16 KiB / 60 KiB packets, packets/s, MB/s and
              CPU µs per packet, counted by the receiver's GDScript get_packet loop, nothing
              dropped (windowed sender, completeness checked); frames uncapped, then with
              100 µs of sleep per frame                                  rust, builtin, enet
  tls         the same over wss (1 KiB, 16 KiB): an RSA 2048 self-signed certificate from
              Godot's Crypto, the client trusting it with the name checked    rust, builtin
  poll        server poll() cost with 0/10/100/1000/5000 idle raw clients, and the server's
              VmRSS at each stage (memory per idle connection)           rust, builtin
  rtt         32 B echo answered in the same frame, p50/p99/max, both frame pacings
                                                                         rust, builtin, enet
  rpc         reliable @rpc calls/s client->server through SceneMultiplayer   rust, builtin, enet
  fanout      1 KiB snapshot broadcast to 500 raw clients at 60 Hz for 10 s: server main-thread
              ms per frame (poll + put_packet) and delivered/expected    rust, builtin
  game        the same, while every client also sends a 32 B input at 30 Hz that the server
              drains each frame: ms per frame, snapshots delivered, inputs received  rust, builtin
  ceiling     the throughput and round-trip workloads with tokio-tungstenite alone
              (tests/bench/ceiling), plain and through the addon's queue architecture

Every measurement alternates the classes (A B A B ...) in the same run, each trial in fresh
processes; the table gives medians over the rounds and the rust/built-in ratio. Outputs go to
--out (default bench-out/): results.json (every trial), results.md (the table), bench.svg.

The library is built as tests/run_tests.py builds it (its build_extension step, reused by
import; --no-build skips it, --rev REV builds commit REV from `git archive` in
target/bench-rev/ instead) and copied into a private copy of godot-project under --out, so a
concurrent build or test run cannot swap it mid-run. Godot comes from tests/godot_bin.py.
See BENCHMARKS.md. Standard library only; the process, port and setup helpers are shared with
tls_storm.py in benchlib.py.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import sys
import time

from benchlib import (HERE, REPO, Proc, build_addon, free_port, library_names, loadavg, log,
                      machine_info, make_project, nofile, raise_nofile, thread_times)
import godot_bin  # found through benchlib, which puts tests/ on sys.path

BENCH_GD = os.path.join(HERE, "godot", "bench.gd")
RAWCLIENTS = os.path.join(HERE, "rawclients.py")
CEILING_DIR = os.path.join(HERE, "ceiling")
CEILING_TARGET = os.path.join(REPO, "target", "bench-ceiling")
CEILING_BIN = os.path.join(CEILING_TARGET, "release", "rwsmp-bench-ceiling")

CLASS_NAMES = {"rust": "RustWebSocketMultiplayerPeer", "builtin": "WebSocketMultiplayerPeer",
               "enet": "ENetMultiplayerPeer"}
# Same (raised) buffers for both WebSocket classes in the streaming workloads: 8 MiB in and out,
# 131072 queued packets. The sender's window (2 MiB / 16384 packets) stays far below them.
BIG_BUFFERS = ["inbuf=8388608", "outbuf=8388608", "maxq=131072"]
WORKLOADS = ["throughput", "tls", "poll", "rtt", "rpc", "fanout", "game", "ceiling"]
SIZES = [64, 1024, 16384, 61440]
TLS_SIZES = [1024, 16384]  # the tls workload: one-way throughput over wss
GAME_INPUT_HZ = 30  # the game workload: every client's input rate, beside 60 Hz snapshots
GAME_INPUT_SIZE = 32

# ------------------------------------------------------------------------------------------
# Settings

class Settings:
    def __init__(self, quick: bool, rounds: int | None):
        self.quick = quick
        self.rounds = rounds or (1 if quick else 3)
        self.tp_warmup = 0.3 if quick else 0.5
        self.tp_duration = 1.0 if quick else 2.0
        # Frame pacing of both throughput processes: 0 = uncapped (the main threads spin),
        # 100 = OS.low_processor_usage_mode_sleep_usec of 100 µs per frame.
        self.tp_sleeps = [0, 100]
        self.rtt_warm = 100 if quick else 200
        self.rtt_count = 1000 if quick else 5000
        self.rpc_warmup = 0.3 if quick else 0.5
        self.rpc_duration = 1.0 if quick else 2.0
        self.poll_stages = [0, 10, 100, 1000] if quick else [0, 10, 100, 1000, 5000]
        self.poll_seconds = 0.4 if quick else 1.0
        self.fanout_clients = 200 if quick else 500
        self.fanout_seconds = 3.0 if quick else 10.0
        self.fanout_rounds = 1 if quick else 2
        self.ceiling_duration = 1.0 if quick else 2.0


# ------------------------------------------------------------------------------------------
# Workloads (the processes: benchlib.Proc)

class Bench:
    def __init__(self, godot: str, project: str, settings: Settings, verbose: bool):
        self.godot = godot
        self.project = project
        self.s = settings
        self.verbose = verbose
        self.records: list[dict] = []
        self.failures: list[str] = []

    def godot_proc(self, label: str, **args) -> Proc:
        cmd = [self.godot, "--headless", "--path", self.project, "-s", BENCH_GD, "--"]
        extra = args.pop("extra", [])
        cmd += [f"{k}={v}" for k, v in args.items()] + list(extra)
        return Proc(cmd, label)

    def record(self, rec: dict) -> None:
        self.records.append(rec)

    def fail(self, what: str, procs: list[Proc]) -> None:
        msg = f"{what}: " + "; ".join(f"{p.label}: {', '.join(p.errors()) or 'no result'}"
                                       for p in procs)
        self.failures.append(msg)
        log("  ! " + msg)
        if self.verbose:
            for p in procs:
                log(f"  --- {p.label}\n{p.tail()}")

    # --------------------------------------------------------------------------------------
    # 1. throughput

    def throughput(self, cls: str, size: int, rnd: int, sleep_usec: int = 0,
                   tls: bool = False) -> None:
        port = free_port()
        timeout = self.s.tp_warmup + self.s.tp_duration + 25
        extra = list(BIG_BUFFERS)
        tls_dir = None
        if tls:
            tls_dir = tempfile.mkdtemp(prefix="rwsmp-bench-tls-")
            extra.append(f"tls_dir={tls_dir}")
        common = dict(workload="throughput", cls=cls, port=port, size=size,
                      warmup=self.s.tp_warmup, duration=self.s.tp_duration, timeout=timeout,
                      sleep_usec=sleep_usec, extra=extra)
        try:
            self._throughput(cls, size, rnd, sleep_usec, tls, common, timeout)
        finally:
            if tls_dir:
                shutil.rmtree(tls_dir, ignore_errors=True)

    def _throughput(self, cls: str, size: int, rnd: int, sleep_usec: int, tls: bool,
                    common: dict, timeout: float) -> None:
        workload = "throughput_tls" if tls else "throughput"
        what = f"{workload} {cls} {size}"
        srv = self.godot_proc(f"tp-server[{cls}]", role="server", **common)
        procs = [srv]
        if srv.wait_line("@@READY", 20) is None:
            srv.finish(5)
            return self.fail(what, procs)
        cli = self.godot_proc(f"tp-client[{cls}]", role="client", **common)
        procs.append(cli)
        # CPU time of every thread of both processes over the receiver's measurement window.
        cpu = None
        if srv.wait_line("@@WINDOW start", timeout) is not None:
            before = {"server": thread_cpu(srv.pid), "client": thread_cpu(cli.pid)}
            if srv.wait_line("@@WINDOW end", timeout) is not None:
                after = {"server": thread_cpu(srv.pid), "client": thread_cpu(cli.pid)}
                cpu = {f"{side}_{group}": after[side].get(group, 0.0) - before[side].get(group, 0.0)
                       for side in after for group in after[side]}
        srv.finish(timeout + 5)
        cli.finish(10)
        rs, rc = srv.results(), cli.results()
        if not rs or "pps" not in rs[0]:
            return self.fail(what, procs)
        r = rs[0]
        if cpu is not None and r.get("packets"):
            cpu = {k: v / r["packets"] * 1e6 for k, v in cpu.items()}  # µs per packet
            cpu["total"] = sum(cpu.values())
        rec = {"workload": workload, "cls": cls, "round": rnd, "size": size,
               "sleep_usec": sleep_usec, "pps": r["pps"], "mbps": r["mbps"], "complete": r["complete"],
               "received_total": r["received_total"], "sent_total": r["sent_total"],
               "put_errors": rc[0]["put_errors"] if rc else None,
               "receiver_frames": r.get("frames"), "exit_codes": [srv.rc, cli.rc],
               "cpu_us_per_packet": cpu,
               "cpu_s": {"server": srv.cpu_seconds(), "client": cli.cpu_seconds()}}
        self.record(rec)
        flag = "" if r["complete"] and rec["put_errors"] == 0 else \
            f"  INCOMPLETE ({r['received_total']}/{r['sent_total']}, put errors {rec['put_errors']})"
        if srv.rc or cli.rc:
            flag += f"  (exit codes: server {srv.rc}, client {cli.rc})"
        log(f"  {'wss' if tls else 'throughput'} {size:>6} B {sleep_label(sleep_usec):<9} {cls:<8} {r['pps']:>12,.0f} packets/s {r['mbps']:>9.1f} MB/s{flag}")

    # --------------------------------------------------------------------------------------
    # 3. rtt

    def rtt(self, cls: str, rnd: int, sleep_usec: int = 0) -> None:
        port = free_port()
        timeout = 40 if not self.s.quick else 20
        common = dict(workload="rtt", cls=cls, port=port, timeout=timeout,
                      warm=self.s.rtt_warm, count=self.s.rtt_count, sleep_usec=sleep_usec)
        srv = self.godot_proc(f"rtt-server[{cls}]", role="server", **common)
        procs = [srv]
        if srv.wait_line("@@READY", 20) is None:
            srv.finish(5)
            return self.fail(f"rtt {cls}", procs)
        cli = self.godot_proc(f"rtt-client[{cls}]", role="client", **common)
        procs.append(cli)
        cli.finish(timeout + 5)
        srv.finish(10)
        samples = []
        for ln in cli.stdout:
            if ln.startswith("@@SAMPLES "):
                samples = [int(x) for x in ln[len("@@SAMPLES "):].split(",") if x]
        if len(samples) < self.s.rtt_count // 2:
            return self.fail(f"rtt {cls}", procs)
        samples.sort()
        n = len(samples)
        rec = {"workload": "rtt", "cls": cls, "round": rnd, "n": n, "sleep_usec": sleep_usec,
               "p50_us": samples[n // 2], "p99_us": samples[min(n - 1, (n * 99) // 100)],
               "max_us": samples[-1], "mean_us": sum(samples) / n,
               "cpu_s": {"server": srv.cpu_seconds(), "client": cli.cpu_seconds()}}
        self.record(rec)
        log(f"  rtt {sleep_label(sleep_usec):<17} {cls:<8} p50 {rec['p50_us']:>6} µs  p99 {rec['p99_us']:>6} µs  "
            f"max {rec['max_us']:>7} µs  ({n} round trips)")

    # --------------------------------------------------------------------------------------
    # 4. rpc

    def rpc(self, cls: str, rnd: int) -> None:
        port = free_port()
        timeout = self.s.rpc_warmup + self.s.rpc_duration + 25
        common = dict(workload="rpc", cls=cls, port=port, warmup=self.s.rpc_warmup,
                      duration=self.s.rpc_duration, timeout=timeout, extra=BIG_BUFFERS)
        srv = self.godot_proc(f"rpc-server[{cls}]", role="server", **common)
        procs = [srv]
        if srv.wait_line("@@READY", 20) is None:
            srv.finish(5)
            return self.fail(f"rpc {cls}", procs)
        cli = self.godot_proc(f"rpc-client[{cls}]", role="client", **common)
        procs.append(cli)
        srv.finish(timeout + 5)
        cli.finish(10)
        rs = srv.results()
        if not rs or "cps" not in rs[0]:
            return self.fail(f"rpc {cls}", procs)
        r = rs[0]
        rec = {"workload": "rpc", "cls": cls, "round": rnd, "cps": r["cps"],
               "complete": r["complete"], "received_total": r["received_total"],
               "sent_total": r["sent_total"]}
        self.record(rec)
        flag = "" if r["complete"] else f"  INCOMPLETE ({r['received_total']}/{r['sent_total']})"
        log(f"  rpc {cls:<8} {r['cps']:>12,.0f} calls/s{flag}")

    # --------------------------------------------------------------------------------------
    # 2 + 5. idle connections: poll() cost and RSS

    def poll(self, cls: str, rnd: int) -> None:
        port = free_port()
        stages = self.s.poll_stages
        srv = self.godot_proc(f"poll-server[{cls}]", workload="idle", role="server", cls=cls,
                              port=port, stages=",".join(map(str, stages)),
                              poll_seconds=self.s.poll_seconds, timeout=240, stage_timeout=120)
        if srv.wait_line("@@READY", 20) is None:
            srv.finish(5)
            return self.fail(f"poll {cls}", [srv])
        raw = Proc([sys.executable, RAWCLIENTS, str(port), "--concurrency", "8"],
                   f"rawclients[{cls}]", stdin=subprocess.PIPE)
        ok = True
        try:
            for n in stages:
                if n > 0:
                    raw.popen.stdin.write(f"grow {n}\n")
                    raw.popen.stdin.flush()
                    ans = raw.wait_line("", 180)
                    if not ans or not ans.startswith("ok"):
                        log(f"  ! rawclients: {ans}")
                        ok = False
                        break
                line = srv.wait_line("@@STAGE", 120)
                if line is None:
                    ok = False
                    break
                st = json.loads(line[len("@@STAGE "):])
                rss_kib = read_rss_kib(srv.pid)
                rec = {"workload": "poll", "cls": cls, "round": rnd, "peers": st["peers"],
                       "stage": n, "poll_us": st["poll_us"], "poll_us_p10": st["poll_us_p10"],
                       "poll_us_p90": st["poll_us_p90"], "polls": st["polls"],
                       "rss_kib": rss_kib}
                self.record(rec)
                log(f"  poll {cls:<8} {st['peers']:>5} peers: {st['poll_us']:>9.2f} µs/poll "
                    f"(p10 {st['poll_us_p10']:.2f}, p90 {st['poll_us_p90']:.2f}), RSS {rss_kib / 1024:.1f} MiB")
        finally:
            try:
                raw.popen.stdin.write("quit\n")
                raw.popen.stdin.flush()
            except OSError:
                pass
            srv.finish(60)
            raw.finish(30)
        if not ok:
            self.fail(f"poll {cls}", [srv, raw])

    # --------------------------------------------------------------------------------------
    # 6. fan-out

    def fanout(self, cls: str, rnd: int, inputs_hz: int = 0) -> None:
        """Snapshots to every raw client at 60 Hz; with `inputs_hz` (the game workload) every
        client also sends a 32-byte input that often, which the server drains each frame."""
        workload = "game" if inputs_hz else "fanout"
        port = free_port()
        n = self.s.fanout_clients
        srv = self.godot_proc(f"fanout-server[{cls}]", workload="fanout", role="server", cls=cls,
                              port=port, clients=n, duration=self.s.fanout_seconds, hz=60,
                              size=1024, timeout=self.s.fanout_seconds + 120, stage_timeout=90)
        if srv.wait_line("@@READY", 20) is None:
            srv.finish(5)
            return self.fail(f"{workload} {cls}", [srv])
        raw = Proc([sys.executable, RAWCLIENTS, str(port), "--concurrency", "8"],
                   f"rawclients[{cls}]", stdin=subprocess.PIPE)
        try:
            raw.popen.stdin.write(f"grow {n}\n")
            raw.popen.stdin.flush()
            ans = raw.wait_line("", 120)
            if not ans or not ans.startswith("ok"):
                log(f"  ! rawclients: {ans}")
            elif srv.wait_line("@@STAGE", 60) is not None:
                raw.popen.stdin.write("reset\n")
                raw.popen.stdin.flush()
                raw.wait_line("ok", 10)
                sent = None
                if inputs_hz:
                    raw.popen.stdin.write(f"send {inputs_hz} {GAME_INPUT_SIZE}\n")
                    raw.popen.stdin.flush()
                    raw.wait_line("ok", 10)
                    # Stop inside the server's 1.5 s linger, which counts what is in flight.
                    time.sleep(self.s.fanout_seconds + 0.5)
                    raw.popen.stdin.write("stop\n")
                    raw.popen.stdin.flush()
                    ans = raw.wait_line("ok", 10)
                    sent = int(ans.split()[1]) if ans else None
                res = srv.wait_line("@@RESULT", self.s.fanout_seconds + 30)
                raw.popen.stdin.write("count\n")
                raw.popen.stdin.flush()
                cnt = raw.wait_line("count", 10)
                if res and cnt:
                    r = json.loads(res[len("@@RESULT "):])
                    got = int(cnt.split()[1])
                    expected = r["ticks"] * r["peers"]
                    rec = {"workload": workload, "cls": cls, "round": rnd, "peers": r["peers"],
                           "ticks": r["ticks"], "ms_p50": r["ms_p50"], "ms_p99": r["ms_p99"],
                           "ms_max": r["ms_max"], "ms_mean": r["ms_mean"],
                           "interval_ms_p50": r["interval_ms_p50"],
                           "interval_ms_p99": r["interval_ms_p99"],
                           "delivered": got, "expected": expected,
                           "delivered_ratio": got / expected if expected else float("nan"),
                           "put_errors": r["put_errors"]}
                    inputs = ""
                    if inputs_hz:
                        rec.update({"inputs_sent": sent, "inputs_received": r["received"],
                                    "inputs_ratio": r["received"] / sent if sent else
                                    float("nan")})
                        inputs = f"; inputs {r['received']}/{sent}"
                    self.record(rec)
                    log(f"  {workload} {cls:<8} {r['peers']} clients: {r['ms_p50']:.3f} ms/frame "
                        f"p50, {r['ms_p99']:.3f} p99, {r['ms_mean']:.3f} mean; delivered "
                        f"{got}/{expected} ({rec['delivered_ratio']:.4f}){inputs}")
        finally:
            try:
                raw.popen.stdin.write("quit\n")
                raw.popen.stdin.flush()
            except OSError:
                pass
            srv.finish(30)
            raw.finish(30)
        if not any(r["workload"] == workload and r["cls"] == cls and r["round"] == rnd
                   for r in self.records):
            self.fail(f"{workload} {cls}", [srv, raw])

    # --------------------------------------------------------------------------------------
    # 7. transport ceiling

    def ceiling(self, mode: str, size: int, rnd: int, sleep_usec: int = 0) -> None:
        port = free_port()
        recv = Proc([CEILING_BIN, "recv", str(port), str(self.s.tp_warmup),
                     str(self.s.ceiling_duration), mode, str(sleep_usec)], f"ceiling-recv[{mode}]")
        if recv.wait_line("READY", 10) is None:
            recv.finish(5)
            return self.fail(f"ceiling {mode} {size}", [recv])
        send = Proc([CEILING_BIN, "send", str(port), str(size), mode, str(sleep_usec)],
                    f"ceiling-send[{mode}]")
        recv.finish(self.s.ceiling_duration + 20)
        send.finish(10)
        res = [json.loads(ln) for ln in recv.stdout if ln.startswith("{")]
        if not res:
            return self.fail(f"ceiling {mode} {size}", [recv, send])
        r = res[0]
        self.record({"workload": "ceiling", "cls": f"tungstenite-{mode}", "round": rnd,
                     "size": size, "sleep_usec": sleep_usec, "pps": r["pps"], "mbps": r["mbps"]})
        pace = "" if mode == "plain" else sleep_label(sleep_usec)
        log(f"  ceiling {mode:<7} {pace:<17} {size:>6} B {r['pps']:>12,.0f} packets/s "
            f"{r['mbps']:>9.1f} MB/s")


    def ceiling_rtt(self, mode: str, rnd: int) -> None:
        port = free_port()
        echo = Proc([CEILING_BIN, "echo", str(port), mode], f"ceiling-echo[{mode}]")
        if echo.wait_line("READY", 10) is None:
            echo.finish(5)
            return self.fail(f"ceiling rtt {mode}", [echo])
        ping = Proc([CEILING_BIN, "ping", str(port), str(self.s.rtt_warm), str(self.s.rtt_count),
                     mode], f"ceiling-ping[{mode}]")
        ping.finish(60)
        echo.finish(10)  # it ends when the pinger closes the connection
        res = [json.loads(ln) for ln in ping.stdout if ln.startswith("{")]
        if not res:
            return self.fail(f"ceiling rtt {mode}", [echo, ping])
        r = res[0]
        self.record({"workload": "ceiling_rtt", "cls": f"tungstenite-{mode}", "round": rnd,
                     "p50_us": r["p50_us"], "p99_us": r["p99_us"], "max_us": r["max_us"]})
        log(f"  ceiling rtt {mode:<7} p50 {r['p50_us']:>6} µs  p99 {r['p99_us']:>6} µs  "
            f"max {r['max_us']:>7} µs")


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) by thread group: `main` (the Godot main thread), `io` (the
    addon's tokio workers, named rust-websocket), `other` (engine worker threads etc.)."""
    out: dict[str, float] = {"main": 0.0, "io": 0.0, "other": 0.0}
    for tid, comm, secs in thread_times(pid) or []:
        group = "main" if tid == pid else ("io" if comm.startswith("rust-websocket") else "other")
        out[group] += secs
    return out


def read_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


# ------------------------------------------------------------------------------------------
# Build and setup

def build_rev(rev: str) -> tuple[str, str, str] | None:
    """Builds the library of commit `rev` (not the work tree) from `git archive` in
    target/bench-rev/, with its own target directory so other builds are not disturbed.
    Returns (library, addon dir of that commit, short sha)."""
    sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=REPO, capture_output=True,
                         text=True).stdout.strip()
    if not sha:
        log(f"# --rev: unknown revision {rev!r}")
        return None
    base = os.path.join(REPO, "target", "bench-rev")
    src = os.path.join(base, "src")
    if os.path.isdir(src):
        shutil.rmtree(src)
    os.makedirs(src)
    archive = subprocess.run(["git", "archive", "--format=tar", sha], cwd=REPO,
                             capture_output=True)
    # -m: fresh mtimes, so cargo never takes another commit's build output as up to date
    subprocess.run(["tar", "-x", "-m", "-C", src], input=archive.stdout, check=True)
    env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(base, "target"))
    start = time.monotonic()
    proc = subprocess.run(["cargo", "build", "--release", "-p", "rust_websocket"], cwd=src,
                          env=env, capture_output=True, text=True, errors="replace")
    if proc.returncode != 0:
        log(f"# build of {sha} failed:\n{proc.stderr[-3000:]}")
        return None
    log(f"# built rust_websocket of commit {sha} (release) in {time.monotonic() - start:.1f}s")
    built_name, _ = library_names()
    return (os.path.join(base, "target", "release", built_name),
            os.path.join(src, "addons", "rust_websocket"), sha)


def build_ceiling() -> bool:
    lock = os.path.join(CEILING_DIR, "Cargo.lock")
    if not os.path.exists(lock) and os.path.exists(os.path.join(REPO, "Cargo.lock")):
        shutil.copy2(os.path.join(REPO, "Cargo.lock"), lock)  # same dependency versions
    cmd = ["cargo", "build", "--release", "--manifest-path", os.path.join(CEILING_DIR, "Cargo.toml"),
           "--target-dir", CEILING_TARGET]
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, errors="replace")
    if proc.returncode != 0:
        log(f"# ceiling build failed:\n{proc.stderr[-3000:]}")
        return False
    log(f"# built the ceiling program in {time.monotonic() - start:.1f}s")
    return True


# ------------------------------------------------------------------------------------------
# Summary

def med(vals: list[float]) -> float | None:
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def pick(records: list[dict], **kw) -> list[dict]:
    return [r for r in records if all(r.get(k) == v for k, v in kw.items())]


def fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "—"
    if abs(v) >= 1000:
        s = f"{v:,.0f}"
    elif abs(v) >= 100:
        s = f"{v:.0f}"
    elif abs(v) >= 10:
        s = f"{v:.1f}"
    else:
        s = f"{v:.2f}"
    return s + unit


def sleep_label(sleep_usec: int) -> str:
    return "uncapped" if not sleep_usec else f"{sleep_usec} µs sleep/frame"


def size_label(size: int) -> str:
    return f"{size // 1024} KiB" if size >= 1024 else f"{size} B"


def summarize(records: list[dict], settings: Settings) -> tuple[list[list[str]], list[dict]]:
    """Rows of the markdown table, and the target verdicts."""
    rows: list[list[str]] = []
    verdicts: list[dict] = []

    def row(workload: str, metric: str, vals: dict, ratio: float | None, target: str = "",
            met: bool | None = None, n: int = 0) -> None:
        mark = "" if met is None else ("✅ met" if met else "❌ not met")
        rows.append([workload, metric, fmt(vals.get("rust")), fmt(vals.get("builtin")),
                     fmt(vals.get("enet")), "—" if ratio is None else f"{ratio:.3g}×",
                     f"{target} {mark}".strip(), str(n) if n else ""])
        if met is not None:
            verdicts.append({"what": f"{workload}: {metric}", "target": target, "met": met,
                             "ratio": ratio, "rust": vals.get("rust"), "builtin": vals.get("builtin")})

    def meds(key: str, **kw) -> tuple[dict, int]:
        out, n = {}, 0
        for cls in ("rust", "builtin", "enet"):
            rs = pick(records, cls=cls, **kw)
            if rs:
                out[cls] = med([r.get(key) for r in rs])
                n = max(n, len(rs))
        return out, n

    def ratio(vals: dict) -> float | None:
        a, b = vals.get("rust"), vals.get("builtin")
        return a / b if a is not None and b else None

    sleeps = sorted({r.get("sleep_usec", 0) for r in records if r["workload"] == "throughput"})
    for sl in sleeps:
        pace = "uncapped" if not sl else f"{sl} µs sleep/frame"
        for size in SIZES:
            if not pick(records, workload="throughput", size=size, sleep_usec=sl):
                continue
            v, n = meds("pps", workload="throughput", size=size, sleep_usec=sl)
            r = ratio(v)
            tgt, met = ("≥ 3×", r is not None and r >= 3) if size in (64, 1024) else ("", None)
            row(f"one-way {size_label(size)}, {pace}", "packets/s", v, r, tgt,
                met if r is not None else None, n)
            v, n = meds("mbps", workload="throughput", size=size, sleep_usec=sl)
            r = ratio(v)
            tgt, met = ("≥ 5×", r is not None and r >= 5) if size == 16384 else ("", None)
            row(f"one-way {size_label(size)}, {pace}", "MB/s", v, r, tgt,
                met if r is not None else None, n)
            cpu = {}
            for cls in ("rust", "builtin", "enet"):
                vals = [(r.get("cpu_us_per_packet") or {}).get("total") for r in
                        pick(records, workload="throughput", size=size, sleep_usec=sl, cls=cls)]
                if any(x is not None for x in vals):
                    cpu[cls] = med(vals)
            if cpu:
                row(f"one-way {size_label(size)}, {pace}",
                    "CPU µs per packet (all threads, both processes)", cpu, ratio(cpu), n=n)
    for sl in sorted({r.get("sleep_usec", 0) for r in records
                      if r["workload"] == "throughput_tls"}):
        pace = "uncapped" if not sl else f"{sl} µs sleep/frame"
        for size in TLS_SIZES:
            if not pick(records, workload="throughput_tls", size=size, sleep_usec=sl):
                continue
            for key, unit in (("pps", "packets/s"), ("mbps", "MB/s")):
                v, n = meds(key, workload="throughput_tls", size=size, sleep_usec=sl)
                row(f"wss one-way {size_label(size)}, {pace}", unit, v, ratio(v), n=n)
    ceil = [r for r in records if r["workload"] == "ceiling"]
    variants = [("plain", 0, "tokio-tungstenite alone")] + [
        ("channel", sl, "tokio-tungstenite + the addon's queues, "
         + ("spinning main threads" if not sl else f"{sl} µs sleep when idle")) for sl in sleeps]
    for size in SIZES:
        for mode, sl, label in variants:
            rs = [r for r in pick(ceil, size=size, cls=f"tungstenite-{mode}")
                  if mode == "plain" or r.get("sleep_usec", 0) == sl]
            if not rs:
                continue
            mb = med([r["mbps"] for r in rs])
            pps = med([r["pps"] for r in rs])
            rust = med([r["mbps"] for r in pick(records, workload="throughput", size=size,
                                                 cls="rust", sleep_usec=sl)])
            pace = "uncapped" if not sl else f"{sl} µs sleep/frame"
            rows.append([f"ceiling {size_label(size)}", f"{label}: MB/s (packets/s)",
                         f"{fmt(mb)} ({fmt(pps)})", "", "", "—",
                         f"addon ({pace}) reaches {rust / mb:.0%} of it" if rust else "",
                         str(len(rs))])
    stages = sorted({r["stage"] for r in records if r["workload"] == "poll"})
    p10 = None
    for st in stages:
        v, n = meds("poll_us", workload="poll", stage=st)
        r = ratio(v)
        if st == 10:
            p10 = v.get("rust")
        if st == 1000 and v.get("rust") is not None:
            rust = v["rust"]
            ok = rust <= 10 and (p10 is None or rust <= 2 * max(p10, 0.0))
            row("poll(), idle peers", f"µs per poll, {st} peers", v, r,
                "≤ 10 µs and ≤ 2× the 10-peer cost", ok, n)
        else:
            row("poll(), idle peers", f"µs per poll, {st} peers", v, r, n=n)
    for st in stages:
        if st < 1000:
            continue
        v = {}
        for cls in ("rust", "builtin"):
            per = []
            for rnd in sorted({r["round"] for r in pick(records, workload="poll", cls=cls)}):
                base = pick(records, workload="poll", cls=cls, round=rnd, stage=0)
                at = pick(records, workload="poll", cls=cls, round=rnd, stage=st)
                if base and at and at[0]["peers"]:
                    per.append((at[0]["rss_kib"] - base[0]["rss_kib"]) / at[0]["peers"])
            if per:
                v[cls] = med(per)
        if v:
            r = ratio(v)
            if st == 1000:
                row("memory", f"server RSS KiB per idle connection ({st})", v, r, "≤ 16 KiB",
                    v.get("rust") is not None and v["rust"] <= 16, 0)
            else:
                row("memory", f"server RSS KiB per idle connection ({st})", v, r)
    for sl in sorted({r.get("sleep_usec", 0) for r in records if r["workload"] == "rtt"}):
        pace = "uncapped" if not sl else f"{sl} µs sleep/frame"
        for key, label in (("p50_us", "p50 µs"), ("p99_us", "p99 µs"), ("max_us", "max µs")):
            v, n = meds(key, workload="rtt", sleep_usec=sl)
            r = ratio(v)
            if key == "p99_us":
                row(f"round trip 32 B, {pace}", label, v, r, "rust ≤ built-in",
                    r is not None and r <= 1.0, n)
            else:
                row(f"round trip 32 B, {pace}", label, v, r, n=n)
    for mode, label in (("plain", "tokio-tungstenite alone"),
                        ("channel", "tokio-tungstenite + the addon's thread hand-offs")):
        rs = pick(records, workload="ceiling_rtt", cls=f"tungstenite-{mode}")
        if rs:
            rows.append(["ceiling round trip 32 B", f"{label}: p50 / p99 / max µs",
                         " / ".join(fmt(med([r[k] for r in rs])) for k in
                                    ("p50_us", "p99_us", "max_us")),
                         "", "", "—", "", str(len(rs))])
    if pick(records, workload="rpc"):
        v, n = meds("cps", workload="rpc")
        row("reliable @rpc", "calls/s", v, ratio(v), n=n)
    if pick(records, workload="fanout"):
        peers = pick(records, workload="fanout")[0]["peers"]
        for key, label in (("ms_p50", "server ms/frame p50"), ("ms_p99", "server ms/frame p99"),
                           ("delivered_ratio", "delivered/expected")):
            v, n = meds(key, workload="fanout")
            row(f"fan-out 1 KiB × {peers} @ 60 Hz", label, v, ratio(v), n=n)
    if pick(records, workload="game"):
        peers = pick(records, workload="game")[0]["peers"]
        for key, label in (("ms_p50", "server ms/frame p50"), ("ms_p99", "server ms/frame p99"),
                           ("delivered_ratio", "snapshots delivered/expected"),
                           ("inputs_ratio", "inputs received/sent")):
            v, n = meds(key, workload="game")
            row(f"game tick: 1 KiB × {peers} out @ 60 Hz, {GAME_INPUT_SIZE} B × {peers} in "
                f"@ {GAME_INPUT_HZ} Hz", label, v, ratio(v), n=n)
    return rows, verdicts


def markdown(rows: list[list[str]], info: dict, cmdline: str, loads: dict, minutes: float) -> str:
    head = ["workload", "metric", "rust", "built-in", "ENet", "rust / built-in", "target",
            "rounds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    meta = (f"Machine: {info['cores']} cores, {info['cpu_model']}, {info['mem_gib']} GiB, "
            f"Linux {info['kernel']}; {info['godot']}; {info['rustc']}; library: "
            f"{info.get('measured', 'work tree')} (HEAD {info['commit']}"
            f"{', dirty tree' if info['dirty'] else ''}). Load average before "
            f"{loads['before']}, after {loads['after']}. Run took {minutes:.1f} min: `{cmdline}`.")
    return "\n".join(lines) + "\n\n" + meta + "\n"


# ------------------------------------------------------------------------------------------
# Plot (SVG written by hand, no dependency)

COLORS = {"rust": "#d9480f", "builtin": "#1c7ed6", "enet": "#2b8a3e",
          "tungstenite-plain": "#868e96", "tungstenite-channel": "#495057"}
LABELS = {"rust": "RustWebSocketMultiplayerPeer", "builtin": "WebSocketMultiplayerPeer",
          "enet": "ENetMultiplayerPeer", "tungstenite-plain": "tokio-tungstenite alone",
          "tungstenite-channel": "tokio-tungstenite + the addon's queues (same pacing)"}


def _log_ticks(lo: float, hi: float) -> list[float]:
    import math
    out = []
    e = math.floor(math.log10(lo))
    while 10 ** e <= hi * 1.0001:
        for m in (1, 2, 5):
            v = m * 10 ** e
            if lo * 0.9999 <= v <= hi * 1.0001:
                out.append(v)
        e += 1
    return out


def _panel(x0: float, y0: float, w: float, h: float, title: str, xlabel: str, ylabel: str,
           series: dict, xticks: list[tuple[float, str]], points: dict | None = None) -> list[str]:
    import math
    allx = [x for s in series.values() for x, _ in s] + [x for x, _ in xticks]
    ally = [y for s in series.values() for _, y in s if y and y > 0]
    if points:
        ally += [y for s in points.values() for _, y in s if y and y > 0]
    if not ally:
        return []
    xlo, xhi = min(allx), max(allx)
    ylo, yhi = min(ally), max(ally)
    ylo = 10 ** math.floor(math.log10(ylo))
    yhi = 10 ** math.ceil(math.log10(yhi))
    lx = lambda x: x0 + (math.log10(x) - math.log10(xlo)) / max(1e-9, math.log10(xhi) - math.log10(xlo)) * w  # noqa: E731
    ly = lambda y: y0 + h - (math.log10(y) - math.log10(ylo)) / max(1e-9, math.log10(yhi) - math.log10(ylo)) * h  # noqa: E731
    out = [f'<text x="{x0 + w / 2}" y="{y0 - 12}" text-anchor="middle" font-size="14" '
           f'font-weight="bold">{title}</text>',
           f'<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="#adb5bd"/>']
    for yv in _log_ticks(ylo, yhi):
        yy = ly(yv)
        out.append(f'<line x1="{x0}" y1="{yy:.1f}" x2="{x0 + w}" y2="{yy:.1f}" stroke="#e9ecef"/>')
        lab = f"{yv:g}" if yv < 1e4 else (f"{yv / 1e3:g}k" if yv < 1e6 else f"{yv / 1e6:g}M")
        out.append(f'<text x="{x0 - 6}" y="{yy + 4:.1f}" text-anchor="end" font-size="11">{lab}</text>')
    for xv, lab in xticks:
        xx = lx(xv)
        out.append(f'<line x1="{xx:.1f}" y1="{y0}" x2="{xx:.1f}" y2="{y0 + h}" stroke="#e9ecef"/>')
        out.append(f'<text x="{xx:.1f}" y="{y0 + h + 16}" text-anchor="middle" font-size="11">{lab}</text>')
    out.append(f'<text x="{x0 + w / 2}" y="{y0 + h + 34}" text-anchor="middle" font-size="12">{xlabel}</text>')
    out.append(f'<text x="{x0 - 48}" y="{y0 + h / 2}" text-anchor="middle" font-size="12" '
               f'transform="rotate(-90 {x0 - 48} {y0 + h / 2})">{ylabel}</text>')
    for key, pts in (points or {}).items():
        for x, y in pts:
            if y and y > 0:
                out.append(f'<circle cx="{lx(x):.1f}" cy="{ly(y):.1f}" r="2" fill="{COLORS.get(key, "#000")}" '
                           f'fill-opacity="0.35"/>')
    for key, pts in series.items():
        pts = [(x, y) for x, y in sorted(pts) if y and y > 0]
        if not pts:
            continue
        dash = ' stroke-dasharray="5,4"' if key.startswith("tungstenite") else ""
        path = " ".join(f"{'M' if i == 0 else 'L'}{lx(x):.1f},{ly(y):.1f}" for i, (x, y) in enumerate(pts))
        out.append(f'<path d="{path}" fill="none" stroke="{COLORS.get(key, "#000")}" stroke-width="2"{dash}/>')
        for x, y in pts:
            out.append(f'<circle cx="{lx(x):.1f}" cy="{ly(y):.1f}" r="3.5" fill="{COLORS.get(key, "#000")}"/>')
    return out


def plot_svg(records: list[dict], path: str, subtitle: str) -> None:
    W, H = 1180, 490
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
             f'viewBox="0 0 {W} {H}" font-family="sans-serif">',
             f'<rect width="{W}" height="{H}" fill="white"/>']
    tp = [r for r in records if r["workload"] in ("throughput", "ceiling")]
    classes = [c for c in ("rust", "builtin", "enet", "tungstenite-plain", "tungstenite-channel")
               if any(r["cls"] == c for r in tp + records)]
    size_ticks = [(s, size_label(s)) for s in SIZES]

    def series(recs: list[dict], xkey: str, ykey: str) -> tuple[dict, dict]:
        s, p = {}, {}
        for c in classes:
            rs = [r for r in recs if r["cls"] == c]
            xs = sorted({r[xkey] for r in rs})
            s[c] = [(x, med([r[ykey] for r in rs if r[xkey] == x])) for x in xs]
            p[c] = [(r[xkey], r[ykey]) for r in rs]
        return s, p
    for i, sl in enumerate((0, 100)):
        recs = [r for r in tp if r.get("sleep_usec", 0) == sl or r["cls"] == "tungstenite-plain"]
        s, p = series(recs, "size", "mbps")
        parts += _panel(80 + 390 * i, 50, 300, 320,
                        "One-way throughput, " + ("frames uncapped" if not sl else
                                                  f"{sl} µs sleep per frame"),
                        "packet size", "MB/s (log)", s, size_ticks, p)
    pl = [r for r in records if r["workload"] == "poll" and r["peers"] > 0]
    if pl:
        peers = sorted({r["peers"] for r in pl})
        s, p = series(pl, "peers", "poll_us")
        parts += _panel(860, 50, 300, 320, "Server poll() cost, idle peers", "connected peers",
                        "µs per poll (log)", s, [(x, f"{x:g}") for x in peers], p)
    lx, ly = 80, H - 62
    for c in classes:
        width = 34 + 7 * len(LABELS[c])
        if lx + width > W - 10:
            lx, ly = 80, ly + 20
        parts.append(f'<rect x="{lx}" y="{ly - 6}" width="14" height="4" fill="{COLORS[c]}"/>')
        parts.append(f'<text x="{lx + 20}" y="{ly}" font-size="12">{LABELS[c]}</text>')
        lx += width
    parts.append(f'<text x="80" y="{H - 14}" font-size="11" fill="#495057">{subtitle}</text>')
    parts.append("</svg>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts) + "\n")


# ------------------------------------------------------------------------------------------

def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer rounds, smaller counts (< 3 min)")
    ap.add_argument("--rounds", type=int, help="rounds per measurement (default 3, quick 1)")
    ap.add_argument("--only", default=",".join(WORKLOADS),
                    help=f"comma-separated workloads among {','.join(WORKLOADS)}")
    ap.add_argument("--classes", default="rust,builtin,enet",
                    help="peer classes to measure, in alternation order (default rust,builtin,enet)")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)),
                    help="throughput packet sizes in bytes")
    ap.add_argument("--no-build", action="store_true",
                    help="use the library already in addons/rust_websocket/bin")
    ap.add_argument("--rev", metavar="REV",
                    help="measure the library of git commit REV (built from `git archive` in "
                         "target/bench-rev/) instead of the work tree")
    ap.add_argument("--out", default=os.path.join(REPO, "bench-out"), help="output directory")
    ap.add_argument("--wait-load", type=float, default=0.0, metavar="L",
                    help="before starting, wait (up to 10 min) until the 1-minute load average "
                         "is below L")
    ap.add_argument("--from-json", metavar="FILE",
                    help="only re-render results.md and bench.svg from a results.json into --out")
    ap.add_argument("-v", "--verbose", action="store_true", help="show failing processes' output")
    return ap.parse_args(argv)


def main(argv: list[str]) -> int:
    global SIZES
    args = parse_args(argv)
    settings = Settings(args.quick, args.rounds)
    only = [w.strip() for w in args.only.split(",") if w.strip()]
    for w in only:
        if w not in WORKLOADS:
            raise SystemExit(f"--only: unknown workload {w!r} ({', '.join(WORKLOADS)})")
    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    for c in classes:
        if c not in CLASS_NAMES:
            raise SystemExit(f"--classes: unknown class {c!r} ({', '.join(CLASS_NAMES)})")
    SIZES = [int(x) for x in args.sizes.split(",") if x.strip()]
    ws_classes = [c for c in classes if c != "enet"]
    if args.from_json:
        with open(args.from_json, encoding="utf-8") as f:
            data = json.load(f)
        settings = Settings(data.get("quick", False), data.get("rounds"))
        rows, _ = summarize(data["records"], settings)
        md = markdown(rows, data["machine"], data["command"], data["load"], data["minutes"])
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "results.md"), "w", encoding="utf-8") as f:
            f.write(md)
        m, ld = data["machine"], data["load"]
        plot_svg(data["records"], os.path.join(args.out, "bench.svg"),
                 f"{m['cores']} cores {m['cpu_model']}, {m['godot']}, medians of "
                 f"{data['rounds']} round(s), load {ld['before'][0]:.2f}→{ld['after'][0]:.2f}; "
                 "dots: single rounds")
        print(md)
        return 0
    raise_nofile(2 * max(settings.poll_stages) + 1024)
    if "poll" in only and nofile() < max(settings.poll_stages) + 512:
        settings.poll_stages = [s for s in settings.poll_stages if s + 512 <= nofile()]
        log(f"# open-file limit {nofile()}: poll stages cut to {settings.poll_stages}")

    start = time.monotonic()
    addon_src = os.path.join(REPO, "addons", "rust_websocket")
    built_name, installed = library_names()
    lib = os.path.join(addon_src, "bin", installed)
    measured = "work tree"
    if args.rev:
        got = build_rev(args.rev)
        if got is None:
            return 1
        lib, addon_src, sha = got
        measured = f"commit {sha}"
    elif not args.no_build:
        if not build_addon():
            return 1
        target_dir = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
        lib = os.path.join(target_dir, "release", built_name)
    if not os.path.exists(lib):
        log(f"# no library at {lib}: run without --no-build")
        return 1
    godot = godot_bin.godot_path()
    os.makedirs(args.out, exist_ok=True)
    project, lib_digest = make_project(godot, os.path.abspath(args.out), lib, addon_src)
    log(f"# benchmark project {os.path.relpath(project, REPO)} (library "
        f"{os.path.relpath(lib, REPO)}, sha256 {lib_digest})")
    if "ceiling" in only and not build_ceiling():
        only.remove("ceiling")
    if args.wait_load > 0:
        end = time.monotonic() + 600
        while loadavg()[0] >= args.wait_load and time.monotonic() < end:
            log(f"# waiting for load < {args.wait_load} (now {loadavg()})")
            time.sleep(15)
    info = machine_info(godot)
    loads = {"before": loadavg()}
    log(f"# {info['cores']} cores, {info['cpu_model']}; {info['godot']}; load {loads['before']}")
    info["library_sha256"] = lib_digest
    info["measured"] = measured
    bench = Bench(godot, project, settings, args.verbose)
    R = settings.rounds
    for rnd in range(1, R + 1):
        log(f"# round {rnd}/{R}")
        if "throughput" in only:
            for sleep_usec in settings.tp_sleeps:
                for size in SIZES:
                    for cls in classes:
                        bench.throughput(cls, size, rnd, sleep_usec)
        if "tls" in only:
            for sleep_usec in settings.tp_sleeps:
                for size in TLS_SIZES:
                    for cls in ws_classes:
                        bench.throughput(cls, size, rnd, sleep_usec, tls=True)
        if "poll" in only:
            for cls in ws_classes:
                bench.poll(cls, rnd)
        if "rtt" in only:
            for sleep_usec in settings.tp_sleeps:
                for cls in classes:
                    bench.rtt(cls, rnd, sleep_usec)
        if "rpc" in only:
            for cls in classes:
                bench.rpc(cls, rnd)
        if "fanout" in only and rnd <= settings.fanout_rounds:
            for cls in ws_classes:
                bench.fanout(cls, rnd)
        if "game" in only and rnd <= settings.fanout_rounds:
            for cls in ws_classes:
                bench.fanout(cls, rnd, GAME_INPUT_HZ)
        if "ceiling" in only and rnd <= (1 if settings.quick else 2):
            for size in SIZES:
                bench.ceiling("plain", size, rnd)
                for sleep_usec in settings.tp_sleeps:
                    bench.ceiling("channel", size, rnd, sleep_usec)
            for mode in ("plain", "channel"):
                bench.ceiling_rtt(mode, rnd)
    loads["after"] = loadavg()
    minutes = (time.monotonic() - start) / 60
    cmdline = "python3 tests/bench/run_bench.py " + " ".join(argv)
    rows, verdicts = summarize(bench.records, settings)
    md = markdown(rows, info, cmdline.strip(), loads, minutes)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as f:
        json.dump({"when": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                   "machine": info, "load": loads, "command": cmdline.strip(),
                   "quick": settings.quick, "rounds": R, "minutes": minutes,
                   "records": bench.records, "verdicts": verdicts,
                   "failures": bench.failures}, f, indent=1)
    with open(os.path.join(args.out, "results.md"), "w", encoding="utf-8") as f:
        f.write(md)
    subtitle = (f"{info['cores']} cores {info['cpu_model']}, {info['godot']}, medians of {R} "
                f"round(s), load {loads['before'][0]:.2f}→{loads['after'][0]:.2f}; dots: single rounds")
    plot_svg(bench.records, os.path.join(args.out, "bench.svg"), subtitle)
    log("")
    log(md)
    for v in verdicts:
        log(f"# target {'MET' if v['met'] else 'NOT MET'}: {v['what']} ({v['target']})")
    if bench.failures:
        log(f"# {len(bench.failures)} measurement(s) failed:")
        for fl in bench.failures:
            log(f"#   {fl}")
    log(f"# wrote {os.path.relpath(args.out, REPO)}/results.md, results.json, bench.svg "
        f"in {minutes:.1f} min")
    return 1 if bench.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
