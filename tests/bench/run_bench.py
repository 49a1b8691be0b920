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
  tls         the same over wss (1 KiB, 16 KiB), and the 32 B round trip over wss: an RSA
              2048 self-signed certificate from Godot's Crypto, the client trusting it with
              the name checked                                           rust, builtin
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
  compression permessage-deflate (issue 14), five classes: rust with compression_enabled
              (rust-z; rust-z1 at compression_level 1; rust-znc without context
              takeover), rust without, built-in. A game snapshot (var_to_bytes of 100 moving
              entities, about 10.8 KB) broadcast at 60 Hz to raw clients that offer deflate:
              bytes on the wire and server CPU µs per message, main-thread ms per frame, RSS
              per connection idle and busy, delivered/expected; then one-way 16 KiB throughput
              of a JSON leaderboard and of random bytes (--compression-clients N, default 500;
              --compression-outbuf BYTES). Runs only when named in --only; its classes
              are its own (--classes does not apply).

Every measurement alternates the classes (A B A B ...) in the same run, each trial in fresh
processes; the table gives medians over the rounds and the rust/built-in ratio. Outputs go to
--out (default bench-out/): results.json (every trial), results.md (the table), bench.svg.

The library is built as tests/run_tests.py builds it (its build_extension step, reused by
import; --no-build skips it, --rev REV builds commit REV from `git archive` in
target/bench-rev/ instead) and copied into a private copy of godot-project under --out, so a
concurrent build or test run cannot swap it mid-run. Godot comes from tests/godot_bin.py.
See BENCHMARKS.md. Standard library only. The workloads are in workloads.py, the table and
plot in report.py; the process, port and setup helpers are shared with tls_storm.py in
benchlib.py.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time

from benchlib import (REPO, build_addon, library_names, loadavg, log, machine_info,
                      make_project, nofile, raise_nofile)
import godot_bin  # found through benchlib, which puts tests/ on sys.path
from report import GAME_INPUT_HZ, compression_markdown, markdown, plot_svg, summarize
from workloads import CEILING_DIR, CEILING_TARGET, Bench

CLASS_NAMES = {"rust": "RustWebSocketMultiplayerPeer", "builtin": "WebSocketMultiplayerPeer",
               "enet": "ENetMultiplayerPeer"}
WORKLOADS = ["throughput", "tls", "poll", "rtt", "rpc", "fanout", "game", "ceiling",
             "compression"]
# The compression workload's classes: rust-z is the rust class with compression_enabled,
# rust-z1 the same with compression_level 1, rust-znc with compression_no_context_takeover.
COMPRESSION_CLASSES = ["rust-z", "rust-z1", "rust-znc", "rust", "builtin"]
SIZES = [64, 1024, 16384, 61440]
TLS_SIZES = [1024, 16384]  # the tls workload: one-way throughput over wss

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
        # 20,000: 5000 uncapped round trips last about 0.1 s, too short for a stable p99.
        self.rtt_count = 1000 if quick else 20000
        self.rpc_warmup = 0.3 if quick else 0.5
        self.rpc_duration = 1.0 if quick else 2.0
        self.poll_stages = [0, 10, 100, 1000] if quick else [0, 10, 100, 1000, 5000]
        self.poll_seconds = 0.4 if quick else 1.0
        self.fanout_clients = 200 if quick else 500
        self.fanout_seconds = 3.0 if quick else 10.0
        self.fanout_rounds = 1 if quick else 2
        self.ceiling_duration = 1.0 if quick else 2.0
        self.compression_clients = 100 if quick else 500
        self.compression_hz = 60
        self.compression_seconds = 3.0 if quick else 5.0
        self.compression_inflate_every = 50  # one client in 50 inflates and checks
        self.compression_outbuf = None  # outbound_buffer_size; None: the classes' default
        # Niceness of the raw clients (fan-out, game): 0 = they compete with the server for the
        # 2 cores; 10 = they only get what the server's threads leave (models remote clients).
        self.clients_nice = 0
        self.runtime_nice = 0  # an experiment: the server's runtime threads this much nicer


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

def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer rounds, smaller counts (< 3 min)")
    ap.add_argument("--rounds", type=int, help="rounds per measurement (default 3, quick 1)")
    ap.add_argument("--only", default=",".join(w for w in WORKLOADS if w != "compression"),
                    help=f"comma-separated workloads among {','.join(WORKLOADS)} (default: all "
                         "but compression, which runs only when named)")
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
    ap.add_argument("--compression-clients", type=int, metavar="N",
                    help="raw clients of the compression workload's broadcast (default 500)")
    ap.add_argument("--compression-outbuf", type=int, metavar="BYTES",
                    help="outbound_buffer_size of the compression workload's broadcasting "
                         "server, every class (default: the classes' default, 65535)")
    ap.add_argument("--clients-nice", type=int, default=0, metavar="N",
                    help="run the fan-out and game workloads' raw clients under `nice -n N`, so "
                         "they do not preempt the server (models clients on other machines)")
    ap.add_argument("--runtime-nice", type=int, default=0, metavar="N",
                    help="experiment: make the fan-out server's runtime threads (rust-websocket*) "
                         "N nicer than its main thread")
    ap.add_argument("--fanout-clients", type=int, metavar="N",
                    help="raw clients of the fan-out and game workloads (default 500, quick 200)")
    ap.add_argument("--fanout-seconds", type=float, metavar="S",
                    help="measured seconds of the fan-out and game workloads (default 10, quick 3)")
    ap.add_argument("--fanout-rounds", type=int, metavar="N",
                    help="rounds of the fan-out and game workloads (default 2, quick 1)")
    ap.add_argument("-v", "--verbose", action="store_true", help="show failing processes' output")
    return ap.parse_args(argv)


def main(argv: list[str]) -> int:
    global SIZES
    args = parse_args(argv)
    settings = Settings(args.quick, args.rounds)
    if args.compression_clients:
        settings.compression_clients = args.compression_clients
    settings.compression_outbuf = args.compression_outbuf
    settings.clients_nice = args.clients_nice
    settings.runtime_nice = args.runtime_nice
    for key in ("fanout_clients", "fanout_seconds", "fanout_rounds"):
        if getattr(args, key) is not None:
            setattr(settings, key, getattr(args, key))
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
        comp = compression_markdown(data["records"])
        if comp:
            md += "\n" + comp
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
                for cls in ws_classes:
                    bench.rtt(cls, rnd, sleep_usec, tls=True)
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
        if "compression" in only:
            for cls in COMPRESSION_CLASSES:
                bench.compression(cls, rnd)
            for payload in ("json", "random"):
                for cls in COMPRESSION_CLASSES:
                    bench.throughput(cls, 16384, rnd, 100, payload=payload)
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
    comp = compression_markdown(bench.records)
    if comp:
        md += "\n" + comp
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
