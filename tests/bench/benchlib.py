"""Helpers shared by the benchmark scripts run_bench.py and tls_storm.py (standard library only).

Child processes with their output collected by threads (Proc), free ports, load average and
open-file limit, per-thread CPU time from /proc, and the setup steps: building the library with
tests/run_tests.py's build_extension (imported on first use), a private copy of godot-project
with a snapshot of the library, and the machine's description. Not a script of its own.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import queue
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
REPO = os.path.dirname(TESTS)
PROJECT = os.path.join(REPO, "godot-project")
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)  # godot_bin and run_tests

_print_lock = threading.Lock()


def log(msg: str) -> None:
    with _print_lock:
        print(msg, flush=True)


# ------------------------------------------------------------------------------------------
# Processes

class Proc:
    """A child process whose stdout/stderr lines are collected by threads.

    Every stdout line also goes to a queue that `wait_line` reads. `finish` reaps the process
    with os.wait4, so `rusage` (and `cpu_seconds()`) are known afterwards, and `rc` is its exit
    code. With `new_session`, the child runs in a session of its own and a kill (at the end of
    `finish`'s time, or `kill()`) goes to its whole process group; otherwise to its pid."""

    def __init__(self, cmd: list[str], label: str, cwd: str = REPO, stdin=None,
                 new_session: bool = False):
        self.label = label
        self.cmd = cmd
        self.new_session = new_session
        self.popen = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE,
                                      stdin=stdin if stdin is not None else subprocess.DEVNULL,
                                      text=True, errors="replace", bufsize=1,
                                      start_new_session=new_session)
        self.pid = self.popen.pid
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.lines: "queue.Queue[str]" = queue.Queue()
        self.rusage = None
        self._threads = [
            threading.Thread(target=self._pump, args=(self.popen.stdout, self.stdout, True),
                             daemon=True),
            threading.Thread(target=self._pump, args=(self.popen.stderr, self.stderr, False),
                             daemon=True)]
        for t in self._threads:
            t.start()

    @property
    def rc(self) -> int | None:
        return self.popen.returncode

    def _pump(self, stream, sink: list, to_queue: bool) -> None:
        for line in stream:
            line = line.rstrip("\n")
            sink.append(line)
            if to_queue:
                self.lines.put(line)

    def wait_line(self, prefix: str, timeout: float) -> str | None:
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return None
            try:
                line = self.lines.get(timeout=min(left, 0.2))
            except queue.Empty:
                if self.popen.poll() is not None and self.lines.empty():
                    return None
                continue
            if line.startswith(prefix):
                return line

    def send(self, line: str) -> None:
        """Writes a line to the child's stdin (stdin=subprocess.PIPE); errors are ignored."""
        try:
            self.popen.stdin.write(line + "\n")
            self.popen.stdin.flush()
        except (OSError, ValueError, AttributeError):
            pass

    def _sigkill(self) -> None:
        try:
            if self.new_session:
                os.killpg(self.pid, signal.SIGKILL)
            else:
                os.kill(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def finish(self, timeout: float) -> int | None:
        """Waits for the exit (killing this process after `timeout`, then waiting up to 10 s
        more), reaps it with its rusage. Returns the exit code (None if it never ended)."""
        end = time.monotonic() + timeout
        killed = False
        while self.popen.returncode is None:
            try:
                pid, status, ru = os.wait4(self.pid, os.WNOHANG)
            except ChildProcessError:  # already reaped by Popen (poll() or kill()), no rusage
                break
            if pid == self.pid:
                self.rusage = ru
                self.popen.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > end:
                if killed:
                    break
                log(f"  ! {self.label}: still running after {timeout:.0f}s, killing it")
                self._sigkill()
                killed = True
                end = time.monotonic() + 10
            time.sleep(0.02)
        for t in self._threads:
            t.join(timeout=2)
        return self.popen.returncode

    def kill(self) -> None:
        """Kills the process now (if it is still running) and reaps it."""
        if self.popen.poll() is None:
            self._sigkill()
            self.popen.wait(timeout=10)

    def cpu_seconds(self) -> float:
        return (self.rusage.ru_utime + self.rusage.ru_stime) if self.rusage else float("nan")

    def results(self) -> list[dict]:
        out = []
        for ln in self.stdout:
            if ln.startswith("@@RESULT "):
                out.append(json.loads(ln[len("@@RESULT "):]))
        return out

    def errors(self) -> list[str]:
        errs = [ln for ln in self.stdout if ln.startswith("@@ERROR")]
        errs += [ln for ln in self.stderr if "SCRIPT ERROR" in ln or "Parse Error" in ln]
        if self.popen.returncode not in (0, None):
            errs.append(f"exit code {self.popen.returncode}")
        return errs

    def tail(self, n: int = 15) -> str:
        return "\n".join("    " + ln for ln in (self.stdout[-n:] + self.stderr[-n:]))


_used_ports: set[int] = set()


def free_port() -> int:
    """A port free for TCP and UDP on 127.0.0.1 that this run has not used yet."""
    for _ in range(200):
        p = random.randrange(41000, 59000)
        if p in _used_ports:
            continue
        try:
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                with socket.socket(socket.AF_INET, kind) as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        _used_ports.add(p)
        return p
    raise RuntimeError("no free port found")


def thread_times(pid: int) -> list[tuple[int, str, float]] | None:
    """Every thread of process `pid` as (thread id, name, CPU seconds user + system), from
    /proc/PID/task/*/stat; None if the process is gone."""
    tick = os.sysconf("SC_CLK_TCK")
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    out = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", encoding="ascii", errors="replace") as f:
                data = f.read()
        except OSError:
            continue
        comm = data[data.index("(") + 1:data.rindex(")")]
        fields = data[data.rindex(")") + 2:].split()
        out.append((int(tid), comm, (int(fields[11]) + int(fields[12])) / tick))  # utime, stime
    return out


def loadavg() -> list[float]:
    with open("/proc/loadavg", encoding="ascii") as f:
        return [float(x) for x in f.read().split()[:3]]


def nofile() -> int:
    """The soft limit on open files (-1 where unknown)."""
    try:
        import resource
        return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, ValueError):
        return -1


def raise_nofile(need: int) -> None:
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = min(hard, max(soft, need))
        if want > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ImportError, ValueError, OSError):
        pass


# ------------------------------------------------------------------------------------------
# Build and setup

@functools.lru_cache(maxsize=None)
def run_tests_module() -> tuple[object | None, str]:
    """tests/run_tests.py imported (its build and library-name steps), or (None, the error)."""
    try:
        import run_tests
        return run_tests, ""
    except Exception as e:  # noqa: BLE001
        return None, str(e)


def library_names() -> tuple[str, str]:
    """(the name cargo builds, the name the .gdextension expects), from run_tests.py."""
    rt, _ = run_tests_module()
    if rt is not None:
        try:
            return rt.library_names()
        except Exception:  # noqa: BLE001
            pass
    return ("librust_websocket.so", "librust_websocket.linux.x86_64.so")


def build_addon() -> bool:
    """cargo build --release -p rust_websocket (run_tests.py's step, which also installs it into
    addons/rust_websocket/bin). Retried: another run installing at the same moment can race."""
    rt, err = run_tests_module()
    if rt is None:
        log(f"# cannot import tests/run_tests.py ({err}); building directly")
        return subprocess.run(["cargo", "build", "--release", "-p", "rust_websocket"],
                              cwd=REPO).returncode == 0
    for attempt in range(3):
        try:
            r = rt.build_extension()
        except OSError as e:  # e.g. a concurrent install renamed the temporary file
            log(f"# install step failed ({e}), retrying")
            time.sleep(1 + attempt)
            continue
        if not r.ok:
            log(f"# build failed: {'; '.join(r.reasons)}\n{r.details}")
            return False
        log(f"# built rust_websocket (release) in {r.seconds:.1f}s")
        return True
    return False


def make_project(godot: str, out: str, lib: str, addon_src: str) -> tuple[str, str]:
    """A private copy of godot-project in `out`/project with a snapshot of the library `lib`
    (and the .gdextension files of `addon_src`), so that builds and installs by other runs in
    this work tree cannot change the library under a benchmark. Returns (project dir, sha256
    prefix of the library)."""
    _, installed = library_names()
    proj = os.path.join(out, "project")
    if os.path.isdir(proj):
        shutil.rmtree(proj)
    addon = os.path.join(proj, "addons", "rust_websocket")
    os.makedirs(os.path.join(addon, "bin"))
    shutil.copy2(os.path.join(PROJECT, "project.godot"), proj)
    for f in os.listdir(addon_src):
        if f.endswith(".gdextension"):
            shutil.copy2(os.path.join(addon_src, f), addon)
    dst = os.path.join(addon, "bin", installed)
    shutil.copy2(lib, dst)
    with open(dst, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    for _ in range(2):  # the first import of a fresh project can crash at exit
        subprocess.run([godot, "--headless", "--path", proj, "--import"], cwd=REPO,
                       capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
        if os.path.exists(os.path.join(proj, ".godot", "extension_list.cfg")):
            break
    else:
        log("# warning: godot --import wrote no .godot/extension_list.cfg")
    return proj, digest


def cmd_out(cmd: list[str]) -> str:
    """A command's stdout, stripped ("" if it cannot run)."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                              cwd=REPO).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info(godot: str) -> dict:
    """CPU model ("" where /proc/cpuinfo has none), cores, memory, kernel, Godot and rustc
    versions, HEAD and whether tracked files are changed, the open-file limit."""
    import godot_bin
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gib = 0.0
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            mem_gib = int(f.readline().split()[1]) / 1024 / 1024
    except OSError:
        pass
    return {
        "cpu_model": model, "cores": os.cpu_count(), "mem_gib": round(mem_gib, 1),
        "kernel": platform.release(), "godot": godot_bin.godot_version(godot),
        "rustc": cmd_out(["rustc", "--version"]),
        "commit": cmd_out(["git", "rev-parse", "--short", "HEAD"]),
        "dirty": bool(cmd_out(["git", "status", "--porcelain", "--untracked-files=no"])),
        "nofile": nofile(),
    }
