"""The machinery of the hostile-client tests (tests/hostile_hook.py): the limits they hold the
server to, the wire helpers for what a normal client would not send, the server process's RSS,
threads and fds from /proc, and `Harness`, which talks to tests/godot/hostile.gd and runs
each case with its survival, progress and memory checks. The cases are in
tests/hostile_cases_wire.py and tests/hostile_cases_load.py.
"""

from __future__ import annotations

import json
import os
import threading
import time

import rawws
from harness import Checks, process_gone

try:
    import resource  # Unix only; the hooks skip themselves elsewhere (they need /proc too)
except ImportError:  # pragma: no cover - Windows
    resource = None

MB = 1024 * 1024
# Memory slack: RSS after a case, and at the end of a group, must be within AFTER_SLACK of the
# baseline taken once the server and its normal client run; the peak during a case within
# PEAK_SLACK. Generous on purpose (allocator caches, other load on a 2-core machine).
AFTER_SLACK = 20 * MB
# After a 2000-connection burst the allocator keeps the high-water mark of that many
# simultaneous peers (about 16 KiB each, so ~32 MB); it is reused by the next burst, which
# burst.no_growth checks. Leaks show there, not in this slack.
BURST_AFTER_SLACK = 40 * MB
PEAK_SLACK = 64 * MB
# Connect/disconnect cycles leave nothing behind: RSS at the middle and end of the run within
# this of its start.
LIFECYCLE_SLACK = 8 * MB
HANDSHAKE_TIMEOUT = 1.0  # the server's handshake_timeout in these tests (hostile.gd argument)
LIFECYCLE_CYCLES_SUITE = 10000

GROUPS = ("http", "frames", "flow", "conns", "lifecycle")


# ------------------------------------------------------------------------------------------
# Wire helpers: the client is tests/rawws.py's; the cases below build what a normal client
# would not send with `frame` and `upgrade_request`.

frame = rawws.encode_frame  # any opcode, flags, length field and mask key
Closed = rawws.Closed


def upgrade_request(port: int, version: str | None = "13", key: str | None = None,
                    extra: str = "", method: str = "GET", upgrade: str = "websocket",
                    http: str = "HTTP/1.1") -> bytes:
    """An upgrade request for "/", with `extra` (raw header lines) before its end; the options
    make the variants case_bad_upgrade sends (key "" = no key line, version None = none)."""
    return (rawws.request_head(port, key=key, version=version, method=method, upgrade=upgrade,
                               http=http) + extra + "\r\n").encode()


# ------------------------------------------------------------------------------------------
# The server process

def _read_status(pid: int) -> dict[str, str]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for ln in f:
            k, _, v = ln.partition(":")
            out[k] = v.strip()
    return out


def rss_bytes(pid: int) -> int:
    try:
        return int(_read_status(pid)["VmRSS"].split()[0]) * 1024
    except (OSError, KeyError, ValueError, IndexError):
        return -1


def thread_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return -1


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def mb(n: int) -> str:
    return f"{n / MB:.1f} MB" if n >= 0 else "?"


class PeakSampler:
    """Samples a process's RSS every 20 ms in a thread; `.peak` is the highest seen."""

    def __init__(self, pid: int):
        self.pid = pid
        self.peak = rss_bytes(pid)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_bytes(self.pid))

    def stop(self) -> int:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss_bytes(self.pid))
        return self.peak


def raise_nofile(want: int, pid: int | None = None) -> tuple[int, int]:
    """Raises the soft RLIMIT_NOFILE of this process (or of `pid`) towards `want`, up to the
    hard limit. Returns the (soft, hard) limits in force afterwards."""
    if pid is None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < want:
            new = want if hard == resource.RLIM_INFINITY else min(want, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        return resource.getrlimit(resource.RLIMIT_NOFILE)
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    if soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (new, hard))
    return resource.prlimit(pid, resource.RLIMIT_NOFILE)


class Harness:
    """Talks to tests/godot/hostile.gd and records checks (`checks`) and table rows."""

    def __init__(self, ctx, cls: str, group: str):
        self.after_slack = AFTER_SLACK
        self.ctx = ctx
        self.cls = cls
        self.rust = cls == "rust"
        self.group = group
        self.checks = Checks()
        self.rows: list[dict] = []
        self.n = 0
        self.pid = 0
        self.baseline = 0

    def expect(self, ok: bool, name: str, detail: str, strict: bool = True) -> bool:
        """A check on the rust class; for the built-in (the comparison) a failure is only
        recorded (shown with -v, not in the PASS note: the case row says it) where the
        built-in is known to behave worse."""
        if ok or strict:
            return self.checks.check(ok, name, detail)
        self.checks.append((True, f"py.{name}.builtin_differs", detail))
        return False

    # -- talking to the server
    def cmd(self, op: str, **kw) -> dict:
        """Sends a command to hostile.gd and waits for its answer (`timeout` in kw is the
        server's own wait, in seconds; this side waits 15 s longer)."""
        timeout = float(kw.get("timeout", 5.0)) + 15.0
        if op == "fill":
            timeout += (kw.get("ms", 5000) + kw.get("retry_ms", 1000)) / 1000.0
        n = self.n
        self.n += 1
        path = os.path.join(self.ctx.dir, f"val_cmd_{n}")
        with open(path + ".tmp.py", "w") as f:
            json.dump({"op": op, **kw}, f)
        os.replace(path + ".tmp.py", path)
        resp = os.path.join(self.ctx.dir, f"val_resp_{n}")
        end = time.monotonic() + timeout
        while time.monotonic() < end and not self.ctx.stop.is_set():
            if os.path.exists(resp):
                with open(resp) as f:
                    return json.load(f)
            time.sleep(0.005)
        raise TimeoutError(f"the server did not answer command {op} within {timeout:.0f}s")

    def first_packets(self, pid: int, timeout: float) -> dict:
        """The server's report of what peer `pid` sent (hostile.gd `packets`), once at least
        one packet is there or after `timeout` seconds."""
        end = time.monotonic() + timeout
        pk: dict = {}
        while time.monotonic() < end:
            pk = self.cmd("packets", id=pid)
            if pk.get("count", 0) >= 1:
                break
            time.sleep(0.05)
        return pk

    def normal(self) -> dict:
        try:
            with open(os.path.join(self.ctx.dir, "val_normal")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {"rx": 0, "tx": 0, "bad": 0, "stall_ms": 0}

    def wait_normal_progress(self, beyond: int, timeout: float = 5.0) -> tuple[bool, int]:
        end = time.monotonic() + timeout
        rx = self.normal()["rx"]
        while time.monotonic() < end and rx < beyond:
            time.sleep(0.02)
            rx = self.normal()["rx"]
        return rx >= beyond, rx

    def start(self) -> bool:
        """Waits for the server (pid) and the normal client; takes the RSS baseline after one
        warm-up connection."""
        if not self.ctx.wait_flag("server_ready", 20):
            return self.checks.check(False, "server_ready", "the server never signalled server_ready")
        pid, why = self.ctx.godot_pid("server")
        if not self.checks.check(pid is not None, "server_pid", why):
            return False
        self.pid = pid
        ok, rx = self.wait_normal_progress(5, 15.0)
        if not self.checks.check(ok, "normal_client_running", f"echoes so far {rx}"):
            return False
        c = rawws.Client(self.ctx.port)
        c.handshake()
        c.close_cleanly()
        c.close()
        time.sleep(0.3)
        self.baseline = rss_bytes(self.pid)
        self.checks.info("baseline", f"{self.cls} server RSS baseline {mb(self.baseline)}, "
                  f"{thread_count(self.pid)} threads")
        return True

    def case(self, name: str, expected: str, fn, mark: bool = True) -> dict:
        """Runs one hostile case: fn() returns the observed outcome (a string) and makes its
        own checks. Around it: survival, the normal client's progress, RSS."""
        if mark:
            self.cmd("mark", name=name)
        rss0 = rss_bytes(self.pid)
        rx0 = self.normal()["rx"]
        sampler = PeakSampler(self.pid)
        t0 = time.monotonic()
        try:
            observed = fn()
        except Exception as e:  # noqa: BLE001 - a broken case fails, with the reason
            observed = f"hook error {type(e).__name__}: {e}"
            self.checks.check(False, f"{name}.ran", observed)
        took = time.monotonic() - t0
        peak = sampler.stop()
        rx1 = self.normal()["rx"]
        survived = not process_gone(self.pid)
        self.checks.check(survived, f"{name}.server_alive",
                   f"pid {self.pid} " + ("alive" if survived else "gone"))
        ok, rx2 = self.wait_normal_progress(rx1 + 3, 5.0)
        self.checks.check(ok, f"{name}.normal_client_after",
                   f"normal client echoes {rx1} -> {rx2} in the 5 s after the case")
        time.sleep(0.2)
        rss1 = rss_bytes(self.pid)
        slack = self.after_slack
        self.checks.check(rss1 - self.baseline <= slack, f"{name}.rss_after",
                   f"RSS after {mb(rss1)}, baseline {mb(self.baseline)} (slack {mb(slack)})")
        self.checks.check(peak - self.baseline <= PEAK_SLACK, f"{name}.rss_peak",
                   f"RSS peak {mb(peak)}, baseline {mb(self.baseline)} (slack {mb(PEAK_SLACK)})")
        nm = self.normal()
        row = {"class": self.cls, "group": self.group, "case": name, "expected": expected,
               "observed": observed, "seconds": round(took, 3),
               "normal_echoes_during": rx1 - rx0, "normal_bad": nm.get("bad", 0),
               "rss_before": rss0, "rss_peak": peak, "rss_after": rss1,
               "baseline": self.baseline}
        self.rows.append(row)
        self.checks.info(name, f"{observed} | normal client +{rx1 - rx0} echoes during {took:.2f}s | "
                  f"RSS {mb(rss0)} -> peak {mb(peak)} -> {mb(rss1)}")
        return row

    def finish(self) -> None:
        """Ends the scenario: the normal client stops and checks its echoes, the server ends."""
        try:
            final = rss_bytes(self.pid)
            if self.pid:
                self.checks.check(final - self.baseline <= self.after_slack, "rss_end",
                           f"RSS at the end {mb(final)}, baseline {mb(self.baseline)}")
                self.checks.info("rss_end", f"{self.cls} server RSS baseline {mb(self.baseline)} -> "
                          f"end {mb(final)}; normal client longest wait for an echo "
                          f"{self.normal().get('stall_ms')} ms")
                self.rows.append({"class": self.cls, "group": self.group, "case": "_end",
                                  "baseline": self.baseline, "rss_after": final,
                                  "normal": self.normal()})
            self.ctx.flag("end")
            if self.pid:
                self.cmd("end")
        except (TimeoutError, OSError) as e:
            self.checks.check(False, "end", str(e))
        finally:
            self.ctx.barrier("done")
            _write_report(self.rows)


def _write_report(rows: list[dict]) -> None:
    path = os.environ.get("RWSMP_HOSTILE_REPORT")
    if not path or not rows:
        return
    lock = _REPORT_LOCK
    with lock:
        try:
            with open(path) as f:
                old = json.load(f)
        except (OSError, ValueError):
            old = []
        with open(path + ".tmp", "w") as f:
            json.dump(old + rows, f, indent=1)
        os.replace(path + ".tmp", path)


_REPORT_LOCK = threading.Lock()
