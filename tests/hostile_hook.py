#!/usr/bin/env python3
"""Hostile and broken clients, and connection lifecycle, against a Godot server.

Used by tests/run_tests.py (the `hostile_*` and `lifecycle` rows of tests/suite.py, whose hook
is `hook`), and runnable on its own for the long runs:

    python3 tests/hostile_hook.py lifecycle --cycles 10000          # the 10 000-cycle soak
    python3 tests/hostile_hook.py frames --peer builtin -v          # any group, either class

The Godot side is tests/godot/hostile.gd: a server of one class that obeys commands written by
this hook (files `val_cmd_<n>` / `val_resp_<n>` in the sync dir), and a normal Godot client of
the same class that sends a packet every 10 ms and checks the echoes (its counters in
`val_normal`). Each case checks that the server survives (its process is alive), that the
normal client keeps exchanging packets after it, what the hostile client observed (HTTP status,
close code, timings), and the server process's RSS (/proc/PID/status) before, at its peak
during, and after the case. The rows are printed as `_info` notes, and written as JSON to
$RWSMP_HOSTILE_REPORT (a file path) when that is set.

Only the Python standard library is used; Linux only (/proc).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import selectors
import socket
import struct
import sys
import tempfile
import threading
import time

import rawws
from harness import RUST, Checks, process_gone

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


# ------------------------------------------------------------------------------------------
# Cases: HTTP (before the upgrade)

def _http_case(h: Harness, payload: bytes, name: str, want_status: str | None,
               within: float) -> str:
    """Sends `payload`, reads the response head and times the server's TCP close."""
    c = rawws.Client(h.ctx.port)
    t0 = time.monotonic()
    err = c.send(payload)
    status = c.read_head(within + 1.0)
    eof = c.wait_eof(within + 1.0)
    took = time.monotonic() - t0
    c.close()
    closed = eof is not None
    got = status or "(no response)"
    if want_status is not None:
        h.expect(status.startswith(f"HTTP/1.1 {want_status}"), f"{name}.status",
                 f"response {got!r}, expected HTTP {want_status}", strict=h.rust)
    h.expect(not status.startswith("HTTP/1.1 101"), f"{name}.not_upgraded", got, strict=h.rust)
    h.expect(closed and took <= within, f"{name}.closed",
             f"closed after {took:.3f}s (limit {within}s)" if closed else "still open",
             strict=h.rust)
    return f"{got}; TCP closed after {took:.3f}s" + (f" (send: {err})" if err else "")


def case_garbage(h: Harness) -> str:
    out = []
    for label, payload in (("binary", b"\x00\xff\x13garbage\x01\x02" + os.urandom(200)),
                           ("tls_hello", bytes.fromhex("16030100a5010000a10303") + os.urandom(96)),
                           ("text_line", b"HELLO THERE\r\n\r\n")):
        out.append(label + ": " + _http_case(h, payload, f"garbage_{label}", "400", 0.5))
    return " / ".join(out)


def case_slowloris(h: Harness, n: int = 20) -> str:
    """n connections trickle a request that never ends, one byte per 100 ms each."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", h.ctx.port), timeout=5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nX-Slow: ")
        s.setblocking(False)
        socks.append(s)
    t0 = time.monotonic()
    closed: dict[int, float] = {}
    next_byte = t0
    while len(closed) < n and time.monotonic() - t0 < HANDSHAKE_TIMEOUT + 5:
        now = time.monotonic()
        for i, s in enumerate(socks):
            if i in closed:
                continue
            try:
                if s.recv(4096) == b"":
                    closed[i] = now - t0
                    continue
            except BlockingIOError:
                pass
            except OSError:
                closed[i] = now - t0
                continue
            if now >= next_byte:
                try:
                    s.send(b"a")
                except BlockingIOError:
                    pass
                except OSError:
                    closed[i] = now - t0
        if now >= next_byte:
            next_byte = now + 0.1
        time.sleep(0.01)
    for s in socks:
        s.close()
    times = sorted(closed.values())
    lo, hi = HANDSHAKE_TIMEOUT * 0.8, HANDSHAKE_TIMEOUT + 1.5
    h.checks.check(len(times) == n, "slowloris.all_closed", f"{len(times)} of {n} closed")
    if times:
        h.expect(lo <= times[0] and times[-1] <= hi, "slowloris.closed_at_handshake_timeout",
                 f"closed after {times[0]:.3f}-{times[-1]:.3f}s (expected {lo:.1f}-{hi:.1f}s)",
                 strict=h.rust)
    span = f"{times[0]:.2f}-{times[-1]:.2f}s" if times else "never"
    return f"{len(times)}/{n} trickling connections dropped after {span}"


def case_huge_header(h: Harness) -> str:
    big = upgrade_request(h.ctx.port, extra="X-Big: " + "a" * 20000 + "\r\n")
    many = upgrade_request(h.ctx.port, extra="".join(f"X-H{i}: v\r\n" for i in range(120)))
    return ("20 KiB header: " + _http_case(h, big, "huge_header", "431", 0.5)
            + " / 120 headers: " + _http_case(h, many, "many_headers", "431", 0.5))


def case_bad_upgrade(h: Harness) -> str:
    """Requests tungstenite refuses: wrong version, no key, not websocket, HTTP/1.0."""
    port = h.ctx.port
    out = []
    for label, payload in (("version_8", upgrade_request(port, version="8")),
                           ("no_version", upgrade_request(port, version=None)),
                           ("no_key", upgrade_request(port, key="")),
                           ("upgrade_h2c", upgrade_request(port, upgrade="h2c")),
                           ("post", upgrade_request(port, method="POST")),
                           ("http_1_0", upgrade_request(port, http="HTTP/1.0"))):
        out.append(label + ": " + _http_case(h, payload, f"bad_upgrade_{label}", None, 1.0))
    return " / ".join(out)


# ------------------------------------------------------------------------------------------
# Cases: frames (after a good handshake)

def _frame_case(h: Harness, name: str, payload: bytes, codes: tuple[int, ...],
                strict: bool | None = None, send_in_thread: bool = False) -> str:
    """Handshakes, sends `payload`, expects a close frame with one of `codes` and the TCP
    closed by the server, and the server's peer_disconnected for that client."""
    strict = h.rust if strict is None else strict
    c = rawws.Client(h.ctx.port)
    pid = c.handshake()
    t0 = time.monotonic()
    err = ""
    if send_in_thread:  # a long write the server may cut short
        errs: list[str] = []
        th = threading.Thread(target=lambda: errs.append(c.send(payload)), daemon=True)
        th.start()
    else:
        err = c.send(payload)
    wait = 5.0 if h.rust else 2.0  # the built-in often just stops answering
    code, reason, how = c.read_close(wait)
    eof = c.wait_eof(3.0 if h.rust else 1.0)
    took = time.monotonic() - t0
    if send_in_thread:
        th.join(wait)
        if th.is_alive():
            c.abort()  # the server stopped reading: a reset ends the blocked write
            th.join(5)
        err = errs[0] if errs else "still sending"
    c.close()
    gone = h.cmd("wait_gone", id=pid, timeout=wait)
    h.expect(code in codes, f"{name}.close_code",
             f"close {code} {reason!r} ({how}), expected {codes}", strict=strict)
    h.expect(eof is not None, f"{name}.tcp_closed",
             "TCP closed by the server" if eof is not None else
             "TCP still open after the close", strict=strict)
    h.expect(gone.get("gone", False), f"{name}.peer_disconnected",
             f"peer_disconnected({pid}) after {gone.get('ms')} ms" if gone.get("gone") else
             f"no peer_disconnected({pid}) within {wait:.0f} s", strict=strict)
    desc = f"close {code}" + (f" {reason!r}" if reason else "") if code is not None else how
    return (f"{desc}, TCP closed" + (f" {took:.2f}s after sending" if eof is not None else
                                     " NOT closed") + (f" (send: {err})" if err else ""))


def case_unmasked(h: Harness) -> str:
    return _frame_case(h, "unmasked", frame(2, b"hello", mask=False), (1002,))


def case_reserved(h: Harness) -> str:
    out = []
    for label, data in (("opcode_3", frame(3, b"x")), ("opcode_0xB", frame(0xB, b"x")),
                        ("rsv1", frame(2, b"x", rsv=4)), ("rsv3_ping", frame(9, b"", rsv=1))):
        out.append(label + ": " + _frame_case(h, f"reserved_{label}", data, (1002,)))
    return " / ".join(out)


def case_fragmented_control(h: Harness) -> str:
    out = []
    for label, data in (("ping_fin0", frame(9, b"p", fin=False)),
                        ("ping_126_bytes", frame(9, b"p" * 126)),
                        ("stray_continuation", frame(0, b"x"))):
        out.append(label + ": " + _frame_case(h, f"control_{label}", data, (1002,)))
    return " / ".join(out)


def case_invalid_utf8(h: Harness) -> str:
    out = []
    for label, data in (("single", frame(1, b"ok \xff\xfe")),
                        ("fragmented", frame(1, b"ok", fin=False) + frame(0, b"\xc3\x28"))):
        out.append(label + ": " + _frame_case(h, f"utf8_{label}", data, (1007,)))
    # A valid character split across fragments is one good text message.
    c = rawws.Client(h.ctx.port)
    pid = c.handshake()
    c.send(frame(1, b"h\xc3", fin=False) + frame(0, b"\xa9llo", fin=True))
    pk = h.first_packets(pid, 5)
    first = bytes.fromhex(pk["first"][0]) if pk.get("first") else None
    h.checks.check(first == "héllo".encode(), "utf8_split_valid.delivered",
            f"got {first!r}, expected {'héllo'.encode()!r}")
    if h.rust and pk.get("text"):
        h.checks.check(pk["text"][0] is True, "utf8_split_valid.was_string_packet", str(pk["text"]))
    code, _ = c.close_cleanly()
    c.close()
    out.append(f"split valid: delivered {first!r}")
    return " / ".join(out)


def case_huge_length(h: Harness) -> str:
    out = []
    for label, n in (("2^63", 1 << 63), ("2^64-1", (1 << 64) - 1), ("2^63-1", (1 << 63) - 1)):
        data = frame(2, b"", length=n, key=b"\0\0\0\0") + b"x" * 64
        out.append(label + ": " + _frame_case(h, f"length_{label}", data, (1009, 1002)))
    return " / ".join(out)


def case_ping_between_fragments(h: Harness) -> str:
    """RFC 6455 5.4: control frames may come between fragments; the pong answers the ping and
    the message is the fragments alone (the built-in glues the ping payload in)."""
    c = rawws.Client(h.ctx.port)
    pid = c.handshake()
    c.send(frame(2, b"ab", fin=False) + frame(9, b"PP") + frame(0, b"cd", fin=True))
    pong = None
    try:
        while True:
            op, data, _, _ = c.recv_frame(5)
            if op == 10:
                pong = data
                break
    except (Closed, OSError) as e:
        pong = f"none ({e})"
    pk = h.first_packets(pid, 5)
    got = [bytes.fromhex(x) for x in pk.get("first", [])]
    h.checks.check(pong == b"PP", "ping_between_fragments.pong", f"pong {pong!r}")
    h.expect(got == [b"abcd"], "ping_between_fragments.message",
             f"server got {got!r}, expected [b'abcd']", strict=h.rust)
    c.close_cleanly()
    c.close()
    return f"pong {pong!r}, message {got!r}"


def case_continuation_flood(h: Harness, frames_n: int = 100000) -> str:
    """1-byte continuation frames without end: the message passes inbound_buffer_size."""
    one = frame(0, b"z", fin=False, key=b"\0\0\0\0")
    data = frame(2, b"a", fin=False, key=b"\0\0\0\0") + one * frames_n
    return (f"{frames_n} x 1-byte continuations ({len(data) // 1024} KiB): "
            + _frame_case(h, "continuation_flood", data, (1009,), send_in_thread=True))


def case_empty_continuation_flood(h: Harness, seconds: float = 2.0) -> str:
    """0-byte continuation frames for `seconds`: the message never grows, so no size limit
    applies; the server must stay responsive and its memory flat. Then FIN ends the message
    (one empty packet) and the client closes."""
    c = rawws.Client(h.ctx.port)
    pid = c.handshake()
    one = frame(0, b"", fin=False, key=b"\0\0\0\0")
    chunk = one * 10000
    c.send(frame(2, b"", fin=False, key=b"\0\0\0\0"))
    t0 = time.monotonic()
    sent = 0
    err = ""
    while time.monotonic() - t0 < seconds:
        err = c.send(chunk)
        if err:
            break
        sent += 10000
    rate = sent / max(1e-6, time.monotonic() - t0)
    if err:
        code, reason, how = c.read_close(3)
        c.close()
        h.cmd("wait_gone", id=pid, timeout=5)
        return (f"{sent} empty continuations, then the server closed it (close {code} {reason!r}"
                f", {how}; send: {err})")
    c.send(frame(0, b"", fin=True, key=b"\0\0\0\0"))
    pk = h.first_packets(pid, (10 if h.rust else 2))
    h.expect(pk.get("first") == [""], "empty_continuation_flood.message",
             f"server got {pk.get('first')!r}, expected one empty packet",
             strict=h.rust)
    code, eof = c.close_cleanly()
    c.close()
    return (f"{sent} empty continuations in {seconds:.0f}s ({rate / 1000:.0f} k/s), connection "
            f"kept; then FIN: packets {pk.get('first')!r}; close reply {code}")


# ------------------------------------------------------------------------------------------
# Cases: flow control

def case_never_reads(h: Harness) -> str:
    """The server sends to a client that never reads: put_packet must start failing with
    ERR_OUT_OF_MEMORY (6) with the server's memory bounded; once the client reads, every
    packet accepted arrives, in order."""
    c = rawws.Client(h.ctx.port, rcvbuf=4096)
    pid = c.handshake()
    size = 1000
    r = h.cmd("fill", id=pid, size=size, max=50000, ms=8000, retry_ms=1000)
    accepted = r["sent"] + r["retry_ok"]
    h.expect(r["err"] == 6, "never_reads.put_packet_error",
             f"put_packet returned {r['err']} after {r['sent']} packets ({r['ms']} ms)",
             strict=h.rust)
    h.checks.check(r["live"], "never_reads.still_connected",
            "connected" if r["live"] else "the server dropped the slow client")
    if h.rust:
        h.checks.check(r["retry_fail"] >= 1, "never_reads.retries_refused",
                f"{r['retry_ok']} of {r['retry_ok'] + r['retry_fail']} retries accepted")
    # Now read everything: exactly the accepted packets, in order.
    got = 0
    bad = 0
    first_bad = ""
    t0 = time.monotonic()
    try:
        while got < accepted and time.monotonic() - t0 < 15:
            op, data, _, _ = c.recv_frame(5 if h.rust else 1)
            if op != 2:
                continue
            seq = int.from_bytes(data[:4], "little")
            if seq != got or len(data) != size:
                bad += 1
                first_bad = first_bad or f"#{got}: seq {seq}, {len(data)} bytes"
            got += 1
    except (Closed, OSError) as e:
        first_bad = first_bad or f"stopped after {got}: {e}"
    h.expect(got == accepted and bad == 0, "never_reads.no_loss",
             f"received {got} of {accepted} accepted packets, {bad} out of order {first_bad}",
             strict=h.rust)
    # Nothing more than what was accepted (a short read window).
    extra = 0
    try:
        while True:
            op, _, _, _ = c.recv_frame(0.3)
            extra += op == 2
    except (Closed, OSError):
        pass
    h.checks.check(extra == 0, "never_reads.nothing_extra", f"{extra} packets beyond those accepted")
    code, _ = c.close_cleanly()
    c.close()
    return (f"put_packet OK x{r['sent']} ({r['sent'] * size // 1024} KiB) until it stayed "
            f"refused ({r['ms']} ms; first refusal after {r['first_refusal']}, "
            f"{r['refusals']} refusals while the socket drained), error {r['err']}; retries: {r['retry_ok']} OK, {r['retry_fail']} refused; "
            f"buffered amount {r['buffered']}; client then read {got}/{accepted}, "
            f"{bad} out of order")


def case_fast_sender(h: Harness, n: int = 50000, size: int = 16, big_n: int = 200,
                     big: int = 60000) -> str:
    """A client sending as fast as it can while the game reads: every packet arrives, in
    order (small ones, then near-limit ones)."""
    out = []
    for label, count, sz in (("small", n, size), ("large", big_n, big)):
        c = rawws.Client(h.ctx.port, timeout=30)
        pid = c.handshake()
        h.cmd("order_begin", id=pid)
        key = b"\0\0\0\0"
        pad = b"\x5a" * (sz - 4)
        t0 = time.monotonic()
        batch = []
        for i in range(count):
            batch.append(frame(2, i.to_bytes(4, "little") + pad, key=key))
            if len(batch) >= 2000 or sum(map(len, batch)) > 1_000_000 or i == count - 1:
                err = c.send(b"".join(batch))
                batch = []
                if err:
                    break
        sent_s = time.monotonic() - t0
        r = h.cmd("order_report", id=pid, expect=count, timeout=20)
        took = time.monotonic() - t0
        h.checks.check(r["count"] == count and r["bad"] == 0, f"fast_sender_{label}.no_loss_in_order",
                f"received {r['count']} of {count}, {r['bad']} out of order {r['first_bad']}")
        c.close_cleanly()
        c.close()
        out.append(f"{label}: {count} x {sz} B sent in {sent_s:.2f}s, all {r['count']} read in "
                   f"order after {took:.2f}s ({count / took / 1000:.1f} k packets/s, "
                   f"{count * sz / took / MB:.1f} MB/s)")
    return " / ".join(out)


# ------------------------------------------------------------------------------------------
# Cases: many connections

def case_burst(h: Harness, n: int = 2000) -> str:
    """n connections opened at once (a third bare TCP, a third sending a request, a third
    completing the handshake), then all dropped at once (half of the open WebSockets with a
    TCP reset). The server must keep serving and end with no extra peers."""
    lim = raise_nofile(n + 500)
    srv_lim = raise_nofile(n + 500, h.pid)
    wanted = n
    n = min(n, lim[0] - 200, srv_lim[0] - 200)  # a low hard limit: fewer sockets, said so
    if n < wanted:
        h.checks.info("burst_reduced", f"RLIMIT_NOFILE hard limits allow {n} sockets, not {wanted}")
    st0 = h.cmd("stats")
    fds0 = fd_count(h.pid)
    sel = selectors.DefaultSelector()
    socks: list[socket.socket] = []
    state: dict[int, dict] = {}
    t0 = time.monotonic()
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", h.ctx.port))
        socks.append(s)
        state[s.fileno()] = {"kind": i % 3, "buf": b"", "phase": "connect"}
        sel.register(s, selectors.EVENT_WRITE, s)
    opened = 0
    upgraded = 0
    refused = 0
    pending = n
    deadline = t0 + 10
    while pending and time.monotonic() < deadline:
        for key, ev in sel.select(timeout=0.2):
            s = key.data
            st = state[s.fileno()]
            if st["phase"] == "connect":
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                    refused += 1
                    st["phase"] = "done"
                    sel.unregister(s)
                    pending -= 1
                    continue
                opened += 1
                if st["kind"] == 0:
                    st["phase"] = "done"
                    sel.unregister(s)
                    pending -= 1
                    continue
                try:
                    s.send(upgrade_request(h.ctx.port))
                except OSError:
                    refused += 1
                    st["phase"] = "done"
                    sel.unregister(s)
                    pending -= 1
                    continue
                if st["kind"] == 1:
                    st["phase"] = "done"
                    sel.unregister(s)
                    pending -= 1
                    continue
                st["phase"] = "read"
                sel.modify(s, selectors.EVENT_READ, s)
            elif st["phase"] == "read":
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                st["buf"] += data
                head_end = st["buf"].find(b"\r\n\r\n")
                if not data or (head_end >= 0 and len(st["buf"]) >= head_end + 4 + 6):
                    if st["buf"].startswith(b"HTTP/1.1 101") and head_end >= 0:
                        upgraded += 1
                    else:
                        refused += 1
                    st["phase"] = "done"
                    sel.unregister(s)
                    pending -= 1
    open_s = time.monotonic() - t0
    fds_peak = fd_count(h.pid)
    st1 = h.cmd("stats")
    # Drop them all at once: resets for every other socket.
    for i, s in enumerate(socks):
        if i % 2:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        s.close()
    sel.close()
    settle = h.cmd("wait_live", count=1, timeout=10)
    st2 = h.cmd("stats")
    h.checks.check(settle["ok"], "burst.peers_back_to_one",
            f"{settle['live']} peers still connected 10 s after the drop")
    h.checks.check(st2["connected"] - st0["connected"] == st2["disconnected"] - st0["disconnected"],
            "burst.every_peer_disconnected",
            f"+{st2['connected'] - st0['connected']} peer_connected, "
            f"+{st2['disconnected'] - st0['disconnected']} peer_disconnected")
    h.checks.check(upgraded >= 1, "burst.some_upgraded", f"{upgraded} upgraded")
    # A new client is served at once.
    t1 = time.monotonic()
    try:
        c = rawws.Client(h.ctx.port)
        c.handshake(timeout=3)
        code, _ = c.close_cleanly()
        c.close()
        fresh = f"a new client connected in {time.monotonic() - t1:.3f}s"
        h.checks.check(time.monotonic() - t1 < 3, "burst.new_client_served", fresh)
    except (Closed, OSError) as e:
        fresh = f"a new client failed: {e}"
        h.checks.check(False, "burst.new_client_served", fresh)
    time.sleep(0.5)
    fds1 = fd_count(h.pid)
    h.checks.check(fds1 <= fds0 + 5, "burst.fds_released", f"server fds {fds0} -> {fds_peak} -> {fds1}")
    return (f"{n} sockets (nofile {lim[0]}, server {srv_lim[0]}): {opened} TCP-connected, "
            f"{upgraded} upgraded, {refused} closed/refused before the upgrade, in {open_s:.2f}s; "
            f"+{st1['connected'] - st0['connected']} peer_connected before the drop; all dropped "
            f"-> back to {settle['live']} peer(s) in {settle['ms']} ms; server fds {fds0} -> "
            f"{fds_peak} -> {fds1}; {fresh}")


def lifecycle(h: Harness, cycles: int) -> str:
    """`cycles` clients one after another, each a full handshake, the id greeting and a close
    handshake, as fast as possible. RSS and thread count at start, middle and end."""
    st0 = h.cmd("stats")
    samples = [("start", rss_bytes(h.pid), thread_count(h.pid), fd_count(h.pid))]
    t0 = time.monotonic()
    failures = 0
    first_failure = ""
    codes: dict = {}
    for i in range(cycles):
        try:
            c = rawws.Client(h.ctx.port)
            c.handshake()
            code, eof = c.close_cleanly()
            codes[code] = codes.get(code, 0) + 1
            c.close()
        except (Closed, OSError) as e:
            failures += 1
            first_failure = first_failure or f"cycle {i}: {type(e).__name__}: {e}"
        if i + 1 == cycles // 2:
            samples.append(("middle", rss_bytes(h.pid), thread_count(h.pid), fd_count(h.pid)))
    took = time.monotonic() - t0
    settle = h.cmd("wait_live", count=1, timeout=10)
    time.sleep(0.5)
    samples.append(("end", rss_bytes(h.pid), thread_count(h.pid), fd_count(h.pid)))
    st1 = h.cmd("stats")
    h.checks.check(failures == 0, "lifecycle.every_cycle_completed",
            f"{failures} of {cycles} failed; first: {first_failure}")
    h.checks.check(codes.get(1000, 0) == cycles, "lifecycle.close_answered_1000", str(codes))
    h.checks.check(settle["ok"] and st1["connected"] - st0["connected"] == cycles
            and st1["disconnected"] - st0["disconnected"] == cycles,
            "lifecycle.signals_balanced",
            f"+{st1['connected'] - st0['connected']} peer_connected, "
            f"+{st1['disconnected'] - st0['disconnected']} peer_disconnected, "
            f"{settle['live']} live")
    (_, r0, t0_, f0), (_, r1, t1_, f1) = samples[0], samples[-1]
    rss_mid, thr_mid = samples[1][1], samples[1][2]
    h.checks.check(r1 - r0 <= LIFECYCLE_SLACK and rss_mid - r0 <= LIFECYCLE_SLACK, "lifecycle.rss_flat",
            f"RSS {mb(r0)} / {mb(rss_mid)} / {mb(r1)} (slack {mb(LIFECYCLE_SLACK)})")
    h.checks.check(t1_ <= t0_ + 2 and thr_mid <= t0_ + 2, "lifecycle.threads_flat",
            f"threads {t0_} / {thr_mid} / {t1_}")
    h.checks.check(f1 <= f0 + 5, "lifecycle.fds_flat", f"fds {f0} / {samples[1][3]} / {f1}")
    h.rows.append({"class": h.cls, "group": h.group, "case": "_lifecycle", "cycles": cycles,
                   "seconds": round(took, 2), "samples": samples, "failures": failures})
    return (f"{cycles} cycles in {took:.1f}s ({cycles / took:.0f}/s), {failures} failed; "
            "RSS / threads / fds at " + ", ".join(
                f"{name} {mb(r)} / {t} / {f}" for name, r, t, f in samples))


# ------------------------------------------------------------------------------------------
# Groups and registration

# Per group: case name -> regex the rust server's stderr must match after `@@MARK name`
# (tests/suite.py puts them into the hostile rows).
RUST_LOG = {
    "frames": {
        "unmasked": r"protocol error",
        "reserved": r"protocol error",
        "fragmented_control": r"protocol error",
        "invalid_utf8": r"(?i)invalid UTF-8",
        "huge_length": r"exceeds inbound_buffer_size",
        "continuation_flood": r"exceeds inbound_buffer_size",
    },
    "flow": {"never_reads": r"outbound queue to peer \d+ is full"},
}
# The Godot side's arguments (tests/godot/hostile.gd): its watchdog and handshake_timeout.
GODOT_ARGS = {"timeout": 27, "handshake_timeout": HANDSHAKE_TIMEOUT}


def hook(ctx) -> list:
    """The test hook: the group and cycles come from the test's arguments (ctx.args), the
    class from the server process."""
    cls = "rust" if ctx.classes.get("server") == RUST else "builtin"
    kw = {"cycles": int(ctx.args["cycles"])} if "cycles" in ctx.args else {}
    return hostile_hook(ctx, cls, ctx.args["group"], **kw)


def hostile_hook(ctx, cls: str, group: str, cycles: int = LIFECYCLE_CYCLES_SUITE) -> list:
    """The hook of one group ("http", "frames", "flow", "conns", "lifecycle") for class
    "rust" or "builtin"."""
    if platform.system() != "Linux":
        return [(True, "py.hostile_skip_info", "SKIPPED: needs Linux (/proc)")]
    h = Harness(ctx, cls, group)
    try:
        if not h.start():
            return h.checks
        if group == "http":
            h.case("garbage", "HTTP 400 and closed at once (rust)", lambda: case_garbage(h))
            h.case("slowloris", f"dropped at handshake_timeout ({HANDSHAKE_TIMEOUT}s)",
                   lambda: case_slowloris(h))
            h.case("huge_header", "HTTP 431 and closed (rust)", lambda: case_huge_header(h))
            h.case("bad_upgrade", "no upgrade, closed within 1 s",
                   lambda: case_bad_upgrade(h))
        elif group == "frames":
            h.case("unmasked", "close 1002", lambda: case_unmasked(h))
            h.case("reserved", "close 1002", lambda: case_reserved(h))
            h.case("fragmented_control", "close 1002", lambda: case_fragmented_control(h))
            h.case("invalid_utf8", "close 1007", lambda: case_invalid_utf8(h))
            h.case("huge_length", "close 1009 or 1002", lambda: case_huge_length(h))
            h.case("ping_between_fragments", "pong, message = fragments only",
                   lambda: case_ping_between_fragments(h))
            h.case("continuation_flood", "close 1009 at inbound_buffer_size, memory bounded",
                   lambda: case_continuation_flood(h))
            h.case("empty_continuation_flood", "memory bounded, server responsive",
                   lambda: case_empty_continuation_flood(h, 2.0 if h.rust else 1.0))
        elif group == "flow":
            h.case("never_reads", "put_packet -> 6 (ERR_OUT_OF_MEMORY), memory bounded, no loss",
                   lambda: case_never_reads(h))
            h.case("fast_sender", "no loss, order kept", lambda: case_fast_sender(h))
        elif group == "conns":
            h.after_slack = BURST_AFTER_SLACK
            first = h.case("burst_2000", "server keeps serving, peers and fds back to normal",
                           lambda: case_burst(h))
            # Again: memory kept after the first burst must be reused, not grow per burst.
            again = h.case("burst_2000_again", "the same, and no further RSS growth",
                           lambda: case_burst(h))
            h.checks.check(again["rss_after"] - first["rss_after"] <= 8 * MB, "burst.no_growth",
                    f"RSS after the first burst {mb(first['rss_after'])}, after the second "
                    f"{mb(again['rss_after'])}")
        elif group == "lifecycle":
            h.case(f"lifecycle_{cycles}", "RSS, threads, fds flat",
                   lambda: lifecycle(h, cycles))
        else:
            h.checks.check(False, "group", f"unknown group {group}")
    except Exception as e:  # noqa: BLE001
        h.checks.check(False, "hook", f"{type(e).__name__}: {e}")
    finally:
        h.finish()
    return h.checks


# ------------------------------------------------------------------------------------------
# Standalone: one group, long runs

def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description="Run one hostile-client group or the lifecycle "
                                 "soak against a headless Godot server (see module doc).")
    ap.add_argument("group", choices=GROUPS)
    ap.add_argument("--peer", choices=("rust", "builtin"), default="rust")
    ap.add_argument("--cycles", type=int, default=10000, help="lifecycle cycles (default 10000)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    import godot_bin  # noqa: E402
    import harness  # noqa: E402
    import steps  # noqa: E402

    godot = godot_bin.godot_path()
    for w in steps.prepare_project(godot):
        print(f"# warning: {w}")
    limit = 60.0 + (args.cycles / 50.0 if args.group == "lifecycle" else 60.0)
    cls = harness.CLASSES[args.peer]
    extra = {**GODOT_ARGS, "timeout": limit}
    kw = {"cycles": args.cycles} if args.group == "lifecycle" else {}
    name = (f"lifecycle_{args.cycles}[{args.peer}]" if args.group == "lifecycle"
            else f"hostile_{args.group}[{args.peer}]")
    test = harness.Test(name, [harness.Proc("server", "hostile.gd", cls, dict(extra)),
                               harness.Proc("client", "hostile.gd", cls, dict(extra))],
                        hook=lambda ctx: hostile_hook(ctx, args.peer, args.group, **kw),
                        hook_party=True, process_timeout=limit + 30)
    work = tempfile.mkdtemp(prefix="rwsmp-hostile-")
    port = random.randrange(10000, 31000)
    r = harness.run_godot_test(test, godot, port, work, args.verbose)
    harness.print_result(r)
    print(f"{int(r.ok)} passed, {int(not r.ok)} failed")
    return 0 if r.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
