"""The steps of the test command that are not Godot scenarios: the core's cargo tests, building
and installing the extension, linking and importing the Godot project, and the demo and
Autobahn runs, each reported as a `harness.Result`.

tests/run_tests.py runs them in order; tests/run_demo.py, tests/autobahn/run_autobahn.py and
tests/bench/ reuse `build_extension`, `library_names` and `prepare_project` (through
run_tests, which re-exports them).
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import time

from harness import PROJECT, REPO, RUST, Result

ADDON_DIR = os.path.join(REPO, "addons", "rust_websocket")
ADDON_BIN = os.path.join(ADDON_DIR, "bin")

CORE_CRATE = "rust_websocket_core"
EXT_CRATE = "rust_websocket"
# Built library name -> the name the .gdextension expects, per (system, machine).
LIBRARY_NAMES = {
    ("Linux", "x86_64"): ("librust_websocket.so", "librust_websocket.linux.x86_64.so"),
    ("Linux", "aarch64"): ("librust_websocket.so", "librust_websocket.linux.arm64.so"),
    ("Windows", "AMD64"): ("rust_websocket.dll", "rust_websocket.windows.x86_64.dll"),
    ("Darwin", "arm64"): ("librust_websocket.dylib", "librust_websocket.macos.universal.dylib"),
    ("Darwin", "x86_64"): ("librust_websocket.dylib", "librust_websocket.macos.universal.dylib"),
}

# demo[...] tests: tests/run_demo.py (the chat and arena demos, 1 server + 2 clients each)
# in these pairings; label -> run_demo.py's flags.
DEMO_PAIRINGS = {"rust": [], "rust-srv/builtin-cli": ["--builtin-clients"],
                 "builtin-srv/rust-cli": ["--builtin-server"]}
AUTOBAHN_ROLES = ("server", "client")


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


def run_autobahn(role: str, all_deflate: bool = False) -> Result:
    """Autobahn|Testsuite with the addon as `role` (tests/autobahn/run_autobahn.py --check):
    every case outside permessage-deflate and 96 of its 216 (--deflate-sample), or with
    `all_deflate` all 216, those over two wstest processes side by side. SKIPPED (a pass with
    a note) where Python 2.7 or the suite cannot be had."""
    start = time.monotonic()
    name = f"autobahn[{role}]"
    sample = [] if all_deflate else ["--deflate-sample"]
    timeout = 1500 if all_deflate else 900
    rc, lines = run_script([os.path.join("autobahn", "run_autobahn.py"), "--role", role,
                            "--server", "godot", "--no-build", "--check", *sample,
                            "--jobs", "2", "--timeout", str(timeout)], timeout + 100)
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
