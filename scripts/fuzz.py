#!/usr/bin/env python3
"""Runs the fuzz targets in fuzz/ (libFuzzer through cargo-fuzz, on the nightly toolchain)
for a bounded time each and reports what they reached and found. Not part of the test
command (tests/run_tests.py); RELIABILITY.md ("Fuzzing") has the targets and the results.

    python3 scripts/fuzz.py --minutes 5                      # every target, 5 minutes each
    python3 scripts/fuzz.py --minutes 1 --targets protocol,url
    python3 scripts/fuzz.py --coverage --targets proxy_protocol    # source coverage, no fuzzing

Steps: writes the seed corpora (scripts/fuzz_seeds.py) into fuzz/corpus/<target>/, builds
every target with `cargo +nightly fuzz build` (debug assertions on, so overflows panic), then
runs them one after the other with -max_total_time, -rss_limit_mb and -malloc_limit_mb (and
-dict=fuzz/dict/<target>.dict where there is one: a format's tokens). The
corpus grows across runs (fuzz/corpus is not committed). Prints one line per target: runs,
runs/s, libFuzzer's final coverage (`cov`: edges, `ft`: features), corpus size, and the
findings (crash, leak, timeout and out-of-memory inputs written to fuzz/artifacts/<target>/
during this run; replay one with `cargo +nightly fuzz run <target> <file>`). Exits 1 on a
finding or a failed build.

--coverage runs no fuzzer: it replays each target's corpus through a build instrumented for
source coverage (`cargo +nightly fuzz coverage`), merges the profiles with llvm-profdata and
prints line and region coverage of the core's source files the target is there for
(PARSER_FILES) with `llvm-cov export`; the lines never run are listed in
fuzz/coverage/<target>/uncovered.txt. The nightly's profiles need its own LLVM (22): the
toolchain's llvm-tools component when installed, else Debian's llvm-22 provided privately by
tests/provision.py (`$LLVM_COV` / `$LLVM_PROFDATA` name others).

Needs: a nightly toolchain (`rustup toolchain install nightly`) and cargo-fuzz
(`cargo install cargo-fuzz`). Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FUZZ = os.path.join(ROOT, "fuzz")
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import fuzz_seeds  # noqa: E402

TARGETS = list(fuzz_seeds.SEEDS)
# Largest input per target: room for a frame over 64 KiB's header and many small ones, and for
# a request head over MAX_HEAD (16 KiB); the others are small by nature.
MAX_LEN = {"frame_decoder": 16384, "protocol": 16384, "deflate": 16384, "http_request": 20480,
           "http_response": 8192}
FINDING_PREFIXES = ("crash-", "leak-", "timeout-", "oom-")
# The runtime's source files (under rust/core/src) each target is there for: what --coverage
# reports. Others the target reaches (std, tungstenite, zlib-rs, the fuzzing handles) are not.
PARSER_FILES = {
    "frame_decoder": ["protocol/decode/mod.rs"],
    "protocol": ["protocol/mod.rs", "protocol/decode/mod.rs", "protocol/heartbeat.rs",
                 "frame.rs"],
    "deflate": ["protocol/deflate.rs", "protocol/mod.rs", "protocol/decode/mod.rs"],
    "http_request": ["http.rs", "fence.rs", "server/handshake.rs", "proxy.rs"],
    "http_response": ["client.rs", "fence.rs"],
    "close_payload": ["frame.rs", "protocol/decode/mod.rs"],
    "url": ["url.rs"],
    "proxy_headers": ["proxy.rs"],
    "x509": ["tls/x509.rs"],
    "proxy_protocol": ["proxy_protocol.rs"],
    "extension": ["protocol/extension.rs"],
}
CORE_SRC = os.path.join(ROOT, "rust", "core", "src")


def host_triple() -> str:
    out = subprocess.run(["rustc", "+nightly", "-vV"], capture_output=True, text=True,
                         check=True).stdout
    return re.search(r"^host: (\S+)", out, re.M).group(1)


def build(sanitizer: str) -> bool:
    cmd = ["cargo", "+nightly", "fuzz", "build", "--sanitizer", sanitizer,
           "--debug-assertions"]
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT).returncode == 0


def final_stats(log: str) -> dict[str, str]:
    """libFuzzer's last status line (`#N DONE cov: X ft: Y corp: C/S ...`, or the last
    progress line if it stopped early) and its -print_final_stats lines."""
    stats: dict[str, str] = {}
    for line in log.splitlines():
        m = re.match(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/(\S+)", line)
        if m:
            stats.update(runs=m.group(1), cov=m.group(2), ft=m.group(3), corpus=m.group(4),
                         corpus_size=m.group(5))
        m = re.match(r"#(\d+): cov: (\d+) ft: (\d+) corp: (\d+) ", line)  # with -fork
        if m:
            stats.update(runs=m.group(1), cov=m.group(2), ft=m.group(3), corpus=m.group(4))
        m = re.match(r"stat::(\w+):\s+(\d+)", line)
        if m:
            stats[m.group(1)] = m.group(2)
    return stats


def run_target(binary: str, target: str, seconds: int, rss_mb: int, malloc_mb: int,
               jobs: int) -> dict:
    corpus = os.path.join(FUZZ, "corpus", target)
    artifacts = os.path.join(FUZZ, "artifacts", target)
    logs = os.path.join(FUZZ, "logs")
    os.makedirs(artifacts, exist_ok=True)
    os.makedirs(logs, exist_ok=True)
    before = set(os.listdir(artifacts))
    args = [binary, corpus, f"-max_total_time={seconds}", f"-rss_limit_mb={rss_mb}",
            f"-malloc_limit_mb={malloc_mb}", "-timeout=10", "-print_final_stats=1",
            f"-artifact_prefix={artifacts}/"]
    if target in MAX_LEN:
        args.append(f"-max_len={MAX_LEN[target]}")
    dictionary = os.path.join(FUZZ, "dict", f"{target}.dict")
    if os.path.exists(dictionary):
        args.append(f"-dict={dictionary}")
    if jobs > 1:
        args += [f"-fork={jobs}", "-ignore_crashes=1", "-ignore_timeouts=1", "-ignore_ooms=1"]
    print(f"== {target}: {seconds} s", flush=True)
    t0 = time.monotonic()
    proc = subprocess.run(args, cwd=FUZZ, capture_output=True, text=True, errors="replace")
    took = time.monotonic() - t0
    log = proc.stderr + proc.stdout
    with open(os.path.join(logs, f"{target}.log"), "w") as f:
        f.write(log)
    found = sorted(a for a in set(os.listdir(artifacts)) - before
                   if a.startswith(FINDING_PREFIXES))
    stats = final_stats(log)
    if proc.returncode != 0 and not found:
        found = [f"exit {proc.returncode} (see fuzz/logs/{target}.log)"]
    for line in log.splitlines():
        if "panicked at" in line or line.startswith("==") and "ERROR" in line:
            print("   " + line.strip()[:200])
    return {"target": target, "seconds": took, "stats": stats, "found": found,
            "corpus_files": len(os.listdir(corpus))}


def llvm_tools() -> tuple[str, str]:
    """(llvm-cov, the directory of an llvm-profdata next to it) of the nightly's LLVM."""
    sysroot = subprocess.run(["rustc", "+nightly", "--print", "sysroot"], capture_output=True,
                             text=True, check=True).stdout.strip()
    rustlib = os.path.join(sysroot, "lib", "rustlib", host_triple(), "bin")
    if os.path.exists(os.path.join(rustlib, "llvm-cov")) and not os.environ.get("LLVM_COV"):
        return os.path.join(rustlib, "llvm-cov"), rustlib
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import provision  # noqa: E402 (tests/ is no package)
    return provision.path("llvm-cov"), os.path.dirname(provision.llvm_profdata())


def coverage(target: str, corpora: str, llvm_cov: str, llvm_dir: str, jobs: int) -> dict:
    """Replays corpora/<target> through the coverage build; line/region counts of
    PARSER_FILES."""
    corpus = os.path.join(corpora, target)
    triple = host_triple()
    build_dir = os.path.join(FUZZ, "target", triple, "coverage")  # cargo-fuzz's own default
    cmd = ["cargo", "+nightly", "fuzz", "coverage", "--debug-assertions", "--target-dir",
           build_dir, "--llvm-path", llvm_dir, "-j", str(jobs), target, corpus]
    print("$ " + " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, errors="replace")
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return {"target": target, "files": [], "error": f"exit {proc.returncode}"}
    binary = os.path.join(build_dir, triple, "release", target)
    out = os.path.join(FUZZ, "coverage", target)
    profile = ["-instr-profile=" + os.path.join(out, "coverage.profdata"), binary]
    files = [os.path.join(CORE_SRC, f) for f in PARSER_FILES[target]]
    summary = json.loads(subprocess.run([llvm_cov, "export", "-summary-only", *profile, *files],
                                        capture_output=True, text=True, check=True).stdout)
    by_name = {f["filename"]: f["summary"] for f in summary["data"][0]["files"]}
    with open(os.path.join(out, "uncovered.txt"), "w") as f:
        for name in files:
            runs = uncovered_lines(subprocess.run(
                [llvm_cov, "show", "-format=text", "-show-line-counts", *profile, name],
                capture_output=True, text=True, check=True).stdout)
            f.write(f"{os.path.relpath(name, CORE_SRC)}: {sum(len(r) for r in runs)} lines\n")
            for run in runs:
                f.write(f"  {run[0][0]}-{run[-1][0]}: {run[0][1].strip()[:100]}\n")
    rows = []
    for name in files:
        s = by_name.get(name)
        if s is None:  # nothing of it linked in
            rows.append({"file": os.path.relpath(name, CORE_SRC), "lines": None})
            continue
        rows.append({"file": os.path.relpath(name, CORE_SRC),
                     "lines": (s["lines"]["covered"], s["lines"]["count"]),
                     "regions": (s["regions"]["covered"], s["regions"]["count"])})
    return {"target": target, "files": rows,
            "inputs": len(os.listdir(corpus))}


def uncovered_lines(shown: str) -> list[list[tuple[int, str]]]:
    """From `llvm-cov show -show-line-counts` text of one file: runs of lines with code and a
    count of 0 (lines without code between two such lines join them)."""
    runs: list[list[tuple[int, str]]] = []
    joinable = False
    for line in shown.splitlines():
        m = re.match(r"\s*(\d+)\|\s*([^|]*)\|(.*)", line)
        if not m:
            continue
        number, count, code = int(m.group(1)), m.group(2).strip(), m.group(3)
        if count == "0":
            if joinable:
                runs[-1].append((number, code))
            else:
                runs.append([(number, code)])
            joinable = True
        elif count:
            joinable = False  # ran: the next uncovered line starts a run of its own
    return runs


def coverage_table(results: list[dict]) -> str:
    rows = [("target", "file", "lines", "line %", "regions", "region %", "inputs")]
    for r in results:
        if not r["files"]:
            rows.append((r["target"], r.get("error", "?"), "", "", "", "", ""))
        for f in r["files"]:
            if f["lines"] is None:
                rows.append((r["target"], f["file"], "not linked", "", "", "", ""))
                continue
            (lc, lt), (rc, rt) = f["lines"], f["regions"]
            rows.append((r["target"], f["file"], f"{lc}/{lt}", f"{100 * lc / max(lt, 1):.1f}",
                         f"{rc}/{rt}", f"{100 * rc / max(rt, 1):.1f}", str(r["inputs"])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def table(results: list[dict]) -> str:
    head = ("target", "min", "runs", "runs/s", "cov", "ft", "corpus", "findings")
    rows = [head]
    for r in results:
        s = r["stats"]
        runs = int(s.get("number_of_executed_units", s.get("runs", "0")))
        rows.append((r["target"], f"{r['seconds'] / 60:.1f}", str(runs),
                     str(int(runs / max(r["seconds"], 1e-9))), s.get("cov", "?"),
                     s.get("ft", "?"), str(r["corpus_files"]),
                     ", ".join(r["found"]) if r["found"] else "none"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, help="time per target")
    ap.add_argument("--coverage", action="store_true",
                    help="no fuzzing: source coverage of each target's corpus (see above)")
    ap.add_argument("--targets", default=",".join(TARGETS),
                    help="comma-separated, from: " + ", ".join(TARGETS))
    ap.add_argument("--sanitizer", default="none", choices=("none", "address"),
                    help="none (default: safe Rust, twice the runs) or address")
    ap.add_argument("--rss-limit-mb", type=int, default=2048)
    ap.add_argument("--malloc-limit-mb", type=int, default=256,
                    help="one allocation larger than this is a finding")
    ap.add_argument("--corpora", default=os.path.join(FUZZ, "corpus"),
                    help="--coverage: the directory of the <target> corpus directories")
    ap.add_argument("--jobs", type=int, default=1, help="libFuzzer -fork workers per target")
    ap.add_argument("--no-build", action="store_true")
    a = ap.parse_args()
    targets = [t for t in a.targets.split(",") if t]
    unknown = set(targets) - set(TARGETS)
    if unknown:
        ap.error(f"unknown targets {sorted(unknown)}")
    if shutil.which("cargo") is None or subprocess.run(
            ["cargo", "+nightly", "fuzz", "--version"], capture_output=True).returncode != 0:
        print("needs `cargo +nightly fuzz`: rustup toolchain install nightly; "
              "cargo install cargo-fuzz", file=sys.stderr)
        return 2
    if a.coverage:
        llvm_cov, llvm_dir = llvm_tools()
        results = [coverage(t, a.corpora, llvm_cov, llvm_dir, a.jobs) for t in targets]
        print()
        print(coverage_table(results))
        print("\nlines never run: fuzz/coverage/<target>/uncovered.txt")
        return 1 if any(not r["files"] for r in results) else 0
    if a.minutes is None:
        ap.error("--minutes is needed (or --coverage)")
    counts = fuzz_seeds.write_seeds(os.path.join(FUZZ, "corpus"), targets)
    print("seeds: " + ", ".join(f"{t} {n}" for t, n in counts.items()), flush=True)
    if not a.no_build and not build(a.sanitizer):
        print("build failed", file=sys.stderr)
        return 1
    bindir = os.path.join(FUZZ, "target", host_triple(), "release")
    results = []
    for t in targets:
        results.append(run_target(os.path.join(bindir, t), t, max(1, int(a.minutes * 60)),
                                  a.rss_limit_mb, a.malloc_limit_mb, a.jobs))
    print()
    print(table(results))
    findings = sum(len(r["found"]) for r in results)
    print(f"\n{len(results)} targets, {findings} findings")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
