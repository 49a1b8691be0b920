#!/usr/bin/env python3
"""The project's test command: python3 tests/run_tests.py [-k SUBSTR] [--peers SET] [-j N] [--no-build]

Steps:
  1. cargo test --release -p rust_websocket_core          (counted as one or more tests)
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

Where things are: the table of tests is tests/suite.py, how one runs is tests/harness.py, the
steps other than scenarios (cargo, build, project, demos, Autobahn) are tests/steps.py.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import godot_bin  # noqa: E402
import provision  # noqa: E402
from harness import (PAIRINGS, PEER_SETS, PORTS_PER_TEST, PROJECT, RUST,  # noqa: E402
                     Result, Test, print_result, run_godot_test)
from steps import (AUTOBAHN_ROLES, CORE_CRATE, DEMO_PAIRINGS, EXT_CRATE,  # noqa: E402
                   build_extension, library_names, prepare_project, run_autobahn,
                   run_cargo_test, run_demo_test)
from suite import build_tests  # noqa: E402

# Imported from run_tests by tests/run_demo.py, tests/autobahn/run_autobahn.py and tests/bench/.
__all__ = ["PROJECT", "build_extension", "library_names", "prepare_project", "main"]


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
    ap.add_argument("--autobahn-deflate", choices=("sample", "all"), default="all",
                    help="the autobahn rows' permessage-deflate cases: all 216 (default; some "
                         "8-10 CPU-bound minutes per role on 2 idle cores) or a sample of 96 "
                         "(about 2 minutes per role)")
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


def run_scenarios(tests: list[Test], godot: str, args) -> list[Result]:
    """The Godot tests, `-j` at a time, each with PORTS_PER_TEST ports of its own."""
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
        results = list(ex.map(one, tests))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"# sync dirs kept in {work}")
    return results


def prepare_godot(tests: list[Test], results: list[Result]) -> str | None:
    """Godot's path once the programs the tests need are there and the project is imported;
    None (with a failed result) if that failed."""
    try:
        godot = godot_bin.godot_path()
    except Exception as e:  # noqa: BLE001 - reported as a failing step
        results.append(Result("godot_binary", False, 0.0, [str(e)], count_failed=1))
        print_result(results[-1])
        return None
    print(f"# godot: {godot} ({godot_bin.godot_version(godot)})", flush=True)
    provision.provide_for(t.hook for t in tests)  # Chromium, nginx... before the tests start
    try:
        for w in prepare_project(godot):
            print(f"# warning: {w}", flush=True)
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        results.append(Result("prepare_project", False, 0.0, [str(e)], count_failed=1))
        print_result(results[-1])
        return None
    return godot


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    tests = build_tests(select_pairings(args.peers))
    wanted = lambda name: not args.filter or any(f in name for f in args.filter)  # noqa: E731
    tests = [t for t in tests if wanted(t.name)]
    run_cargo = not args.no_build and wanted(f"cargo_test[{CORE_CRATE}]")
    autobahn = [role for role in AUTOBAHN_ROLES
                if wanted(f"autobahn[{role}]") and (args.peers == "all" or "rust" in args.peers)]
    demos = [lb for lb in DEMO_PAIRINGS if wanted(f"demo[{lb}]") and (
        args.peers == "all" or "rust" in args.peers or lb in args.peers)]
    if args.list:
        names = ([f"cargo_test[{CORE_CRATE}]"] if run_cargo else []) + [t.name for t in tests] \
            + [f"demo[{lb}]" for lb in demos] + [f"autobahn[{role}]" for role in autobahn]
        print("\n".join(names))
        return 0

    suite_start = time.monotonic()
    results: list[Result] = []
    if run_cargo:
        results.append(run_cargo_test())
        print_result(results[-1])
    needs_rust = any(p.cls == RUST for t in tests for p in t.procs) or bool(autobahn or demos)
    if not args.no_build and needs_rust:
        r = build_extension()
        if not r.ok:
            print_result(r)
            results.append(r)
        else:
            print(f"# built {EXT_CRATE} in {r.seconds:.1f}s ({r.note})", flush=True)
    godot = prepare_godot(tests, results) if tests else None
    if godot:
        results += run_scenarios(tests, godot, args)
    # After the scenarios, one at a time: the demos pick their ports from the OS's ephemeral
    # range, and Autobahn's timing cases want the machine to themselves.
    for lb in demos:
        results.append(run_demo_test(lb))
        print_result(results[-1])
    for role in autobahn:
        results.append(run_autobahn(role, args.autobahn_deflate == "all"))
        print_result(results[-1])

    counted = lambda r: bool(r.count_passed or r.count_failed)  # noqa: E731
    passed = sum(r.count_passed if counted(r) else int(r.ok) for r in results)
    failed = sum(r.count_failed if counted(r) else int(not r.ok) for r in results)
    failed_names = [r.name for r in results if not r.ok]
    if failed_names:
        print("# failed: " + " ".join(failed_names))
    print(f"# total time {time.monotonic() - suite_start:.1f}s")
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
