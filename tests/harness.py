"""How one Godot test runs: its processes (tests/godot/*.gd, through tests/godot/lib/base.gd), an
optional Python hook beside them, and the verdict read from what they print.

This is the library under tests/run_tests.py (the command) and tests/suite.py (the table of
tests); the hook modules (tests/*_hook.py, tests/*_hooks.py) use `Ctx` and `Checks` from here.
It knows nothing about particular tests. Only the Python standard library is used.

A test is a list of `Proc`s (one Godot process each, with its role and peer class) and a hook.
`run_godot_test` starts them all with the same port block and sync directory, runs the hook in
a thread, kills what overruns, and fails the test on a failed check, a missing `@@DONE`, a
non-zero exit, a process that made no check, a timeout, `SCRIPT ERROR`, a leak warning, an
error message missing between two `@@MARK`s (`StderrExpect`), or a failed hook check.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROJECT = os.path.join(REPO, "godot-project")

BUILTIN = "WebSocketMultiplayerPeer"
RUST = "RustWebSocketMultiplayerPeer"
CLASSES = {"builtin": BUILTIN, "rust": RUST}
# pairing label -> (server class, client class)
PAIRINGS = {
    "builtin-srv/builtin-cli": (BUILTIN, BUILTIN),
    "rust-srv/rust-cli": (RUST, RUST),
    "rust-srv/builtin-cli": (RUST, BUILTIN),
    "builtin-srv/rust-cli": (BUILTIN, RUST),
}
PEER_SETS = {
    "builtin": ["builtin-srv/builtin-cli"],                 # the oracle alone
    "rust": ["rust-srv/rust-cli", "rust-srv/builtin-cli",   # every pairing with the addon
             "builtin-srv/rust-cli"],
    "rust-only": ["rust-srv/rust-cli"],
    "mixed": ["rust-srv/builtin-cli", "builtin-srv/rust-cli"],
    "all": list(PAIRINGS),
}

SCENARIO_TIMEOUT = 20.0     # the scenario's own watchdog (tests/godot/lib/base.gd)
ABORT_GRACE = 3.0           # once one process of a test failed, the others get this long
PORTS_PER_TEST = 10
LEAK_PATTERNS = ("leaked at exit", "ObjectDB instances leaked", "Leaked instance")
TAIL_LINES = 25


def short_name(cls: str) -> str:
    """"builtin" or "rust", as in test names like api_local[rust]."""
    return "rust" if cls == RUST else "builtin"


# ------------------------------------------------------------------------------------------
# What a test is

@dataclass
class Proc:
    label: str              # "server" / "client" / "main" / ...: also the scenario's role
    script: str             # file in tests/godot/
    cls: str                # peer class name
    extra: dict = field(default_factory=dict)
    # (port, sync dir) -> words put before the Godot command line (e.g. `ip netns exec NAME`)
    prefix: Callable[[int, str], list[str]] | None = None


@dataclass
class StderrExpect:
    """For a process, the stderr between `@@MARK mark` and the next mark must match regex."""
    proc: str
    mark: str
    regex: str  # searched in the ERROR/WARNING lines of that section


@dataclass
class Test:
    name: str
    procs: list[Proc] = field(default_factory=list)
    # Runs in a thread beside the processes; returns a list of (ok, name, detail).
    hook: Callable[["Ctx"], list] | None = None
    hook_party: bool = False        # the hook takes part in barriers as party "py"
    stderr_expect: list[StderrExpect] = field(default_factory=list)
    process_timeout: float = 30.0   # hard limit per Godot process (then killed)
    args: dict = field(default_factory=dict)  # the test's arguments, for the hook (Ctx.args)


@dataclass
class Result:
    name: str
    ok: bool
    seconds: float
    reasons: list[str] = field(default_factory=list)
    details: str = ""
    count_passed: int = 0
    count_failed: int = 0
    note: str = ""


# ------------------------------------------------------------------------------------------
# What a hook gets and returns

class Checks(list):
    """The (ok, "py.<name>", detail) rows a hook returns. Rows whose name ends in `_info` are
    notes: they are printed after PASS and never fail a test."""

    def check(self, ok: bool, name: str, detail: str = "") -> bool:
        self.append((bool(ok), "py." + name, detail))
        return bool(ok)

    def info(self, name: str, detail: str) -> None:
        self.append((True, f"py.{name}_info", detail))


class Ctx:
    """What a hook gets: the test's base port, sync dir, arguments, and the file-based sync
    that tests/godot/lib/base.gd speaks (flags, values, barriers)."""

    def __init__(self, port: int, sync_dir: str, stop: threading.Event,
                 args: dict | None = None, classes: dict[str, str] | None = None):
        self.port = port
        self.dir = sync_dir
        self.stop = stop            # set once every Godot process of the test has exited
        self.args = args or {}      # Test.args
        self.classes = classes or {}  # role -> peer class of that process

    def _path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def _write(self, name: str, text: str) -> None:
        tmp = self._path(name) + ".tmp.py"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self._path(name))

    def flag(self, name: str) -> None:
        self._write("flag_" + name, "1")

    def wait_flag(self, name: str, timeout: float) -> bool:
        end = time.monotonic() + timeout
        path = self._path("flag_" + name)
        while time.monotonic() < end and not self.stop.is_set():
            if os.path.exists(path):
                return True
            time.sleep(0.01)
        return False

    def barrier(self, name: str) -> None:
        """Reaches barrier `name` as party "py" (does not wait for the others)."""
        self.flag(f"bar_{name}.py")

    def put_value(self, key: str, value) -> None:
        """A value for the scenario's get_value(key): an int, or a str already in Godot's
        var_to_str form (a string literal is '"text"')."""
        self._write("val_" + key, str(value))

    def read_value(self, key: str) -> str:
        """What a process published with put_value(key), as text ("?" if nothing yet)."""
        try:
            with open(self._path("val_" + key)) as f:
                return f.read().strip()
        except OSError:
            return "?"

    def godot_pid(self, role: str) -> tuple[int | None, str]:
        """The pid a scenario process published with put_value("pid_<role>"), if it is Godot:
        (pid, "") or (None, why not)."""
        try:
            with open(self._path("val_pid_" + role)) as f:
                pid = int(f.read().strip())
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except (OSError, ValueError) as e:
            return None, f"no pid for {role}, or the process is gone: {e}"
        if b"godot" not in cmdline.lower():
            return None, f"pid {pid} is not Godot: {cmdline[:200]!r}"
        return pid, ""


def proc_state(pid: int) -> str:
    """The one-letter state in /proc/PID/stat ("" if the process is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def process_gone(pid: int) -> bool:
    """The process has exited (a zombie counts as gone)."""
    return proc_state(pid) in ("", "Z", "X")


# ------------------------------------------------------------------------------------------
# Running Godot processes

class Running:
    def __init__(self, proc: Proc, cmd: list[str]):
        self.proc = proc
        self.cmd = cmd
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.start = time.monotonic()
        self.popen = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      stdin=subprocess.DEVNULL, cwd=REPO,
                                      start_new_session=True, text=True, errors="replace")
        self.killed_reason = ""
        self.script_error = False
        self.threads = [threading.Thread(target=self._read, args=(self.popen.stdout, self.stdout),
                                         daemon=True),
                        threading.Thread(target=self._read, args=(self.popen.stderr, self.stderr),
                                         daemon=True)]
        for t in self.threads:
            t.start()

    def _read(self, stream, sink: list[str]) -> None:
        for line in stream:
            line = line.rstrip("\n")
            sink.append(line)
            if "SCRIPT ERROR" in line or "Parse Error" in line:
                self.script_error = True

    def kill(self, reason: str) -> None:
        if self.popen.poll() is None:
            self.killed_reason = reason
            try:
                os.killpg(self.popen.pid, 9)
            except (ProcessLookupError, PermissionError):
                self.popen.kill()

    def finish(self) -> None:
        self.popen.wait()
        for t in self.threads:
            t.join(timeout=5)


def run_godot_test(test: Test, godot: str, port: int, work: str, verbose: bool) -> Result:
    start = time.monotonic()
    sync_dir = os.path.join(work, re.sub(r"[^A-Za-z0-9_.-]+", "_", test.name))
    os.makedirs(sync_dir, exist_ok=True)
    parties = [p.label for p in test.procs] + (["py"] if test.hook_party else [])
    stop = threading.Event()
    hook_checks: list = []
    hook_thread = None
    if test.hook:
        ctx = Ctx(port, sync_dir, stop, test.args, {p.label: p.cls for p in test.procs})

        def run_hook():
            try:
                hook_checks.extend(test.hook(ctx))
            except Exception as e:  # a broken hook fails the test, with the reason
                hook_checks.append((False, "py.hook", f"{type(e).__name__}: {e}"))
        hook_thread = threading.Thread(target=run_hook, daemon=True)
        hook_thread.start()

    running: list[Running] = []
    for p in test.procs:
        args = {"role": p.label, "peer_class": p.cls, "port": port, "dir": sync_dir,
                "parties": ",".join(parties), "timeout": SCENARIO_TIMEOUT, **p.extra}
        cmd = [godot, "--headless", "--path", PROJECT, "-s", f"res://tests/{p.script}", "--",
               *[f"{k}={v}" for k, v in args.items()]]
        if p.prefix:
            cmd = p.prefix(port, sync_dir) + cmd
        running.append(Running(p, cmd))

    _supervise(running, test.process_timeout)
    for r in running:
        r.finish()
    stop.set()
    if hook_thread:
        hook_thread.join(timeout=20)
        if hook_thread.is_alive():
            hook_checks.append((False, "py.hook", "hook did not finish"))

    reasons: list[str] = []
    failing: list[Running] = []
    for r in running:
        own = _verdict(r, test.stderr_expect)
        if own:
            failing.append(r)
            reasons += own
    for ok, name, detail in hook_checks:
        if not ok:
            reasons.append(f"{name}: {detail}")
    note = "; ".join(f"{d}" for ok, n, d in hook_checks if ok and n.endswith("_info"))

    details = ""
    show = running if verbose else failing
    if reasons or verbose:
        parts = []
        for r in show:
            out = r.stdout if verbose else r.stdout[-TAIL_LINES:]
            err = r.stderr if verbose else r.stderr[-TAIL_LINES:]
            parts.append(f"    --- {r.proc.label} ({r.proc.cls}) stdout:\n"
                         + "\n".join("      " + ln for ln in out)
                         + f"\n    --- {r.proc.label} stderr:\n"
                         + "\n".join("      " + ln for ln in err))
        if hook_checks and (verbose or any(not ok for ok, _, _ in hook_checks)):
            parts.append("    --- python hook:\n" + "\n".join(
                f"      {'ok' if ok else 'FAIL'} {name} {detail}" for ok, name, detail in hook_checks))
        details = "\n".join(parts)
    return Result(test.name, not reasons, time.monotonic() - start, reasons, details,
                  note=note)


def _supervise(running: list[Running], process_timeout: float) -> None:
    """Waits for every process; kills one that overruns `process_timeout`, and the others
    ABORT_GRACE seconds after one failed."""
    abort_at = None
    abort_cause = ""
    while True:
        alive = [r for r in running if r.popen.poll() is None]
        if not alive:
            return
        now = time.monotonic()
        for r in alive:
            if now - r.start > process_timeout:
                r.kill(f"killed after the {process_timeout:.0f}s hard timeout")
        if abort_at is None:
            for r in running:
                rc = r.popen.poll()
                if (rc is not None and rc != 0) or r.script_error:
                    abort_at = now + ABORT_GRACE
                    abort_cause = r.proc.label
                    break
        elif now > abort_at:
            for r in alive:
                r.kill(f"killed {ABORT_GRACE:.0f}s after {abort_cause} failed")
        time.sleep(0.02)


def _verdict(r: Running, stderr_expect: list[StderrExpect]) -> list[str]:
    """Why process `r` failed its test (empty if it did not)."""
    own: list[str] = []
    label = r.proc.label
    fails = [ln.split(" ", 3) for ln in r.stdout if ln.startswith("@@CHECK fail")]
    for f in fails:
        own.append(f"{f[2]}: {f[3] if len(f) > 3 else ''}".strip())
    oks = sum(1 for ln in r.stdout if ln.startswith("@@CHECK ok"))
    if r.killed_reason:
        own.append(f"{label} {r.killed_reason}")
    elif not any(ln.startswith("@@DONE") for ln in r.stdout):
        own.append(f"{label} ended without @@DONE")
    rc = r.popen.returncode
    if rc != 0 and not r.killed_reason and not fails:
        own.append(f"{label} exit code {rc}")
    if oks == 0 and not fails and not r.killed_reason:
        own.append(f"{label} made no checks")
    err_text = "\n".join(r.stderr)
    if r.script_error:
        first = next((ln for ln in r.stderr + r.stdout
                      if "SCRIPT ERROR" in ln or "Parse Error" in ln), "")
        own.append(f"{label} {first.strip()}")
    for pat in LEAK_PATTERNS:
        if pat in err_text or pat in "\n".join(r.stdout):
            own.append(f"{label} stderr: {pat}")
    for exp in stderr_expect:
        if exp.proc != label:
            continue
        section = marked_section(r.stderr, exp.mark)
        if section is None:
            own.append(f"{label}: mark {exp.mark} never printed")
        elif not re.search(exp.regex, section):
            own.append(f"{label}: no error message matching /{exp.regex}/ at {exp.mark} "
                       f"(stderr there: {section.strip()[:200]!r})")
    return own


def marked_section(lines: list[str], mark: str) -> str | None:
    """The engine ERROR/WARNING lines printed between `@@MARK mark` and the next mark."""
    out: list[str] = []
    inside = False
    found = False
    for ln in lines:
        if ln.startswith("@@MARK "):
            inside = ln[len("@@MARK "):].strip() == mark
            found = found or inside
            continue
        if inside and ln.lstrip().startswith(("ERROR:", "WARNING:", "USER ERROR:",
                                               "USER WARNING:")):
            out.append(ln)
    return "\n".join(out) if found else None


def print_result(r: Result) -> None:
    if r.ok:
        extra = f", {r.note}" if r.note else ""
        print(f"PASS {r.name} ({r.seconds:.1f}s{extra})", flush=True)
    else:
        print(f"FAIL {r.name}: {'; '.join(r.reasons)} ({r.seconds:.1f}s)", flush=True)
    if r.details:
        print(r.details, flush=True)
