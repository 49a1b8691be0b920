#!/usr/bin/env python3
"""TLS connection storm: N wss clients connect at once to a headless Godot server whose
main-thread frame time and poll() time are measured, RustWebSocketMultiplayerPeer against the
built-in WebSocketMultiplayerPeer (which does the TLS handshakes on the main thread).

    python3 tests/bench/tls_storm.py             # 3 rounds, 200 clients, 2 frame settings (~4 min)
    python3 tests/bench/tls_storm.py --quick     # 1 round, 50 clients, 15 s bound (~30 s)
    python3 tests/bench/tls_storm.py --rounds 5 --clients 300 --sleep-usec 0 --no-build

One trial (fresh processes every time):
  server   tests/bench/godot/tls_storm.gd: RSA 2048 self-signed certificate made by Godot's
           Crypto (CN=localhost, written as PEM files), create_server(port, "127.0.0.1",
           TLSOptions.server(key, cert)), the peer polled once per frame by the script (no
           SceneMultiplayer). Every frame's time (between consecutive process_frame signals)
           and its poll() time are recorded in three phases: an idle baseline (--idle s, nobody
           connecting), the storm, and --after s after it with the admitted peers idle.
  clients  this file in client mode (asyncio + ssl, standard library), a second process: N
           connections released at the same instant, each TCP connect -> TLS handshake
           (trusting the server's cert.pem, host name localhost) -> WebSocket upgrade -> the
           4-byte peer id the server sends first. One attempt each, all within --bound seconds
           (default 30). Connections stay open until the trial ends.
  storm    from the release until every client has its id or gave up (or the bound).
Each --sleep-usec setting (OS.low_processor_usage_mode_sleep_usec of the server, the same for
both classes; default 0 = uncapped frames, and 1000 = a 1 ms frame budget) gets its own table.
Classes alternate A B A B ... (one trial per class, setting and round); the tables give medians
over the rounds and the ratio rust / built-in, plus every trial. They are printed and appended,
with the machine (cores, CPU model, load average) and the command, to tests/bench/TLS-STORM.md
(--md). Every process is bounded in time and killed if it overstays (or on Ctrl-C). Setup:
run_tests.py's build_extension (skip with --no-build) and Godot from tests/godot_bin.py; the
measured library is a snapshot in a private copy of godot-project (target/tls-storm/project).
Over 500 lines because the file is both the runner and, started again in client mode, the
clients' process: the two halves share the trial's parameters and line protocol.
The process, port and setup helpers are shared with run_bench.py in benchlib.py.

Over 500 lines: the Python clients (a mode of this same script, run as subprocesses) and
the trial runner that starts them are one program.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import hashlib
import json
import os
import platform
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

import benchlib
from benchlib import HERE, REPO, Proc, free_port, library_names, loadavg, log, raise_nofile

STORM_GD = os.path.join(HERE, "godot", "tls_storm.gd")
MD_DEFAULT = os.path.join(HERE, "TLS-STORM.md")
WORK_DEFAULT = os.path.join(REPO, "target", "tls-storm")
CLASS_NAMES = {"rust": "RustWebSocketMultiplayerPeer", "builtin": "WebSocketMultiplayerPeer"}
LABELS = {"rust": "rust", "builtin": "built-in"}

# ==========================================================================================
# Client mode: `tls_storm.py --client-mode PORT N CERT BOUND [--no-verify]`
#
# Prints `ready` once the TLS context is loaded, waits for `go` on stdin, releases N
# connections at once and prints `@@CLIENTS {json}` when every one has its id or gave up (or
# the bound passed). Then holds the connections until `quit` (or EOF, or BOUND + 60 s).

async def _one_client(port: int, ctx: ssl.SSLContext, t0: float, rec: dict,
                      keep: list) -> None:
    loop = asyncio.get_running_loop()
    stage = "tcp"
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        keep.append(writer)
        rec["tcp_ms"] = (loop.time() - t0) * 1000
        stage = "tls"
        if hasattr(writer, "start_tls"):  # Python 3.11+: TCP and TLS timed apart
            await writer.start_tls(ctx, server_hostname="localhost")
        else:
            writer.close()
            keep.remove(writer)
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                           server_hostname="localhost")
            keep.append(writer)
        rec["tls_ms"] = (loop.time() - t0) * 1000
        sslobj = writer.get_extra_info("ssl_object")
        rec["tls"] = f"{sslobj.version()} {sslobj.cipher()[0]}" if sslobj else "?"
        stage = "upgrade"
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET / HTTP/1.1\r\nHost: localhost:{port}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            raise ConnectionError(f"upgrade answered {status[:60].decode(errors='replace')}")
        accept = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        if accept not in head:
            raise ConnectionError("wrong Sec-WebSocket-Accept")
        rec["ws_ms"] = (loop.time() - t0) * 1000
        stage = "id"
        hdr = await reader.readexactly(2)
        if hdr[0] & 0x0F != 2 or hdr[1] != 4:
            raise ConnectionError(f"first frame is not a 4-byte binary message: {hdr.hex()}")
        rec["id"] = int.from_bytes(await reader.readexactly(4), "little")
        rec["id_ms"] = (loop.time() - t0) * 1000
        rec["ok"] = True
    except asyncio.CancelledError:
        rec["error"] = f"{stage}: still waiting at the bound"
        rec["error_kind"] = f"{stage}: still waiting at the bound"
        raise
    except (OSError, EOFError, ConnectionError, ssl.SSLError, asyncio.IncompleteReadError,
            asyncio.LimitOverrunError) as e:
        rec["error"] = f"{stage}: {type(e).__name__} {str(e)[:80]}"
        rec["error_kind"] = f"{stage}: {type(e).__name__}"
        rec["fail_ms"] = (loop.time() - t0) * 1000


async def client_main(port: int, n: int, cert: str, bound: float, verify: bool) -> None:
    loop = asyncio.get_running_loop()
    if verify:
        ctx = ssl.create_default_context(cafile=cert)   # trusts exactly the server's cert
        ctx.check_hostname = True
    else:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    say("ready")
    line = await asyncio.wait_for(stdin.readline(), 120)
    if line.strip() != b"go":
        say("@@CLIENTS " + json.dumps({"error": f"expected go, got {line!r}"}))
        return
    keep: list = []
    recs = [{"ok": False} for _ in range(n)]
    t0 = loop.time()
    tasks = [loop.create_task(_one_client(port, ctx, t0, recs[i], keep)) for i in range(n)]
    done, pending = await asyncio.wait(tasks, timeout=bound)
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    elapsed = loop.time() - t0
    say("@@CLIENTS " + json.dumps({"n": n, "bound": bound, "elapsed_s": elapsed,
                                   "timed_out": len(pending), "clients": recs}))
    try:
        await asyncio.wait_for(stdin.readline(), bound + 60)
    except asyncio.TimeoutError:
        pass
    for w in keep:
        w.transport.abort()
    await asyncio.sleep(0)
    say("bye")


# ==========================================================================================
# Runner

def cpu_seconds(pid: int) -> tuple[float, float, float]:
    """(main thread, all other threads) CPU seconds of a process, from /proc/PID/task/*/stat,
    and the seconds its main thread spent runnable but waiting for a CPU (schedstat)."""
    threads = benchlib.thread_times(pid)
    if threads is None:
        return (float("nan"), float("nan"), float("nan"))
    main = sum(secs for tid, _, secs in threads if tid == pid)
    other = sum(secs for tid, _, secs in threads if tid != pid)
    try:
        with open(f"/proc/{pid}/task/{pid}/schedstat", encoding="ascii") as f:
            wait = int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        wait = float("nan")
    return (main, other, wait)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q))]


def trial(godot: str, project: str, cls: str, rnd: int, sleep_usec: int,
          a: argparse.Namespace) -> dict | None:
    """One server process + one client process. Returns the trial's record, or None."""
    sync = tempfile.mkdtemp(prefix="rwsmp-tls-storm-")
    port = free_port()
    server_timeout = 45 + a.idle + a.bound + a.after
    cmd = [godot, "--headless", "--path", project, "-s", STORM_GD, "--", f"cls={cls}",
           f"port={port}", f"dir={sync}", f"clients={a.clients}", f"idle={a.idle}",
           f"bound={a.bound}", f"after={a.after}", f"sleep_usec={sleep_usec}",
           f"timeout={server_timeout}"]
    srv = Proc(cmd, f"server[{cls}]", new_session=True)
    cli = None
    procs = [srv]
    rec = None
    why = ""
    try:
        ready = srv.wait_line("@@READY", 60)
        if ready is None:
            why = "server not ready"
            return None
        cli_cmd = [sys.executable, os.path.abspath(__file__), "--client-mode", str(port),
                   str(a.clients), os.path.join(sync, "cert.pem"), str(a.bound)]
        if a.no_verify:
            cli_cmd.append("--no-verify")
        cli = Proc(cli_cmd, f"clients[{cls}]", stdin=subprocess.PIPE, new_session=True)
        procs.append(cli)
        if cli.wait_line("ready", 30) is None:
            why = "client process not ready"
            return None
        open(os.path.join(sync, "idle"), "w").close()
        idle_line = srv.wait_line("@@IDLE ", a.idle + 15)
        storm_line = srv.wait_line("@@STORM", 10) if idle_line else None
        if storm_line is None:
            why = "no idle phase"
            return None
        spid = int(ready.split("pid=", 1)[1].split()[0])
        cpu0 = (cpu_seconds(spid), cpu_seconds(cli.pid))
        cli.send("go")
        cl_line = cli.wait_line("@@CLIENTS ", a.bound + 15)
        cpu1 = (cpu_seconds(spid), cpu_seconds(cli.pid))
        open(os.path.join(sync, "stop"), "w").close()
        res_line = srv.wait_line("@@RESULT ", 15)
        if cl_line is None or res_line is None:
            why = "no result"
            return None
        after_line = srv.wait_line("@@AFTER ", a.after + 15) if a.after > 0 else None
        if a.after > 0 and after_line is None:
            why = "no after-storm phase"
            return None
        idle = json.loads(idle_line[len("@@IDLE "):])
        after = json.loads(after_line[len("@@AFTER "):]) if after_line else None
        storm = json.loads(res_line[len("@@RESULT "):])
        clients = json.loads(cl_line[len("@@CLIENTS "):])
        if "error" in clients:
            why = clients["error"]
            return None
        rec = make_record(cls, rnd, ready, idle, storm, after, clients, a.clients)
        rec["sleep_usec"] = sleep_usec
        rec["cpu_server_main_s"] = cpu1[0][0] - cpu0[0][0]
        rec["cpu_server_other_s"] = cpu1[0][1] - cpu0[0][1]
        rec["cpu_clients_s"] = (cpu1[1][0] + cpu1[1][1]) - (cpu0[1][0] + cpu0[1][1])
        rec["main_wait_ms"] = (cpu1[0][2] - cpu0[0][2]) * 1000
        rec["cpu_window_s"] = clients["elapsed_s"]
        return rec
    finally:
        if rec is None and why == "":   # interrupted (e.g. Ctrl-C): kill them now
            for p in procs:
                p.kill()
        if cli is not None:
            cli.send("quit")
        srv.finish(15)
        if cli is not None:
            cli.finish(15)
        if rec is None:
            log(f"  ! {cls} round {rnd}: {why}: " + "; ".join(
                f"{p.label}: {', '.join(p.errors()) or 'no result'}" for p in procs))
            if a.verbose:
                for p in procs:
                    log(f"  --- {p.label}\n{p.tail()}")
        elif srv.errors():
            log(f"  ! server[{cls}]: {', '.join(srv.errors())}")
        shutil.rmtree(sync, ignore_errors=True)


def make_record(cls: str, rnd: int, ready: str, idle: dict, storm: dict, after: dict | None,
                clients: dict, n: int) -> dict:
    recs = clients["clients"]
    ok = [c for c in recs if c.get("ok")]
    errors: dict[str, int] = {}
    for c in recs:
        if not c.get("ok"):
            e = c.get("error_kind", c.get("error", "?"))
            errors[e] = errors.get(e, 0) + 1
    last_id = max((c["id_ms"] for c in ok), default=float("nan"))
    ids = [c["id_ms"] for c in ok]
    tls_versions = sorted({c["tls"] for c in recs if c.get("tls")})
    server_last = max(storm.get("connect_ms") or [float("nan")])
    return {
        "cls": cls, "round": rnd, "clients": n,
        "ok": len(ok), "failed": n - len(ok), "errors": errors,
        "last_id_s": last_id / 1000,
        "rate": len(ok) / (last_id / 1000) if ok else 0.0,
        "id_p50_ms": pct(ids, 0.5), "id_max_ms": last_id,
        "tcp_max_ms": max((c["tcp_ms"] for c in recs if "tcp_ms" in c), default=float("nan")),
        "tcp_over_900ms": sum(1 for c in recs if c.get("tcp_ms", 0) > 900),
        "tls_p50_ms": pct([c["tls_ms"] - c["tcp_ms"] for c in ok], 0.5),
        "tls": ", ".join(tls_versions),
        "server_connected": storm["connected"],
        "server_last_connect_s": server_last / 1000,
        "storm_s": storm["seconds"], "storm_ended_by": storm["ended_by"],
        "storm_stall_pct": 100 * storm["frames"].get("stall_sum_us", 0) / 1e6
        / max(storm["seconds"], 1e-9),
        "storm": storm["frames"], "storm_poll": storm["poll"], "storm_fps": storm["fps"],
        "idle": idle["frames"], "idle_poll": idle["poll"], "idle_fps": idle["fps"],
        "after": after["frames"] if after else None, "after_poll": after["poll"] if after else None,
        "after_connected": after["connected"] if after else None,
        "spikes": storm.get("spikes", [])[:50], "keygen_ms": storm.get("keygen_ms"),
        # every connection's times, for --json: server peer_connected (ms since the storm
        # began) and each client's TCP / TLS / 101 / id times (ms since the release)
        "server_connect_ms": storm.get("connect_ms", []),
        "client_ms": [[round(c.get(k, -1), 2) for k in ("tcp_ms", "tls_ms", "ws_ms", "id_ms")]
                      for c in recs],
        "ready": ready,
    }


def print_trial(r: dict) -> None:
    s, sp, i = r["storm"], r["storm_poll"], r["idle"]
    err = ("  errors " + ", ".join(f"{k} ×{v}" for k, v in r["errors"].items())) if r["errors"] else ""
    aft = ""
    if r["after"]:
        aft = (f"; after: frame p50 {r['after']['p50']} / p99 {r['after']['p99']} µs, poll p50 "
               f"{r['after_poll']['p50']} µs")
    log(f"  {LABELS[r['cls']]:<8} sleep {r['sleep_usec']:>4} round {r['round']}: {r['ok']}/{r['clients']} in "
        f"{r['last_id_s']:.2f}s = {r['rate']:.1f}/s; storm {r['storm_s']:.2f}s frame "
        f"p50 {s['p50']} / p99 {s['p99']} / max {s['max']} µs, poll p99 {sp['p99']} / max "
        f"{sp['max']} µs; idle frame p50 {i['p50']} / p99 {i['p99']} / max {i['max']} µs"
        f"; CPU server main {r['cpu_server_main_s']:.2f} / other {r['cpu_server_other_s']:.2f} s, "
        f"clients {r['cpu_clients_s']:.2f} s, main thread waited {r['main_wait_ms']:.0f} ms for a CPU"
        f"{aft}{err}")


# ------------------------------------------------------------------------------------------
# Summary

ROWS = [
    # (label, key function, unit format, better)
    ("handshakes/s (made it ÷ time of the last id)", lambda r: r["rate"], "{:.1f}", "high"),
    ("clients with their id within the bound", lambda r: r["ok"], "{:.0f}", "high"),
    ("time until the last client got its id (s)", lambda r: r["last_id_s"], "{:.2f}", "low"),
    ("client connect time p50 (ms)", lambda r: r["id_p50_ms"], "{:.0f}", "low"),
    ("TCP connect max (ms)", lambda r: r["tcp_max_ms"], "{:.0f}", "low"),
    ("clients whose TCP connect took > 0.9 s (SYN retried)", lambda r: r["tcp_over_900ms"], "{:.0f}", "low"),
    ("storm: server frame p50 (µs)", lambda r: r["storm"]["p50"], "{:.0f}", "low"),
    ("storm: server frame p99 (µs)", lambda r: r["storm"]["p99"], "{:.0f}", "low"),
    ("storm: server frame max (µs)", lambda r: r["storm"]["max"], "{:.0f}", "low"),
    ("storm: frames > 16.7 ms", lambda r: r["storm"]["over_16ms"], "{:.0f}", "low"),
    ("storm: poll() p50 (µs)", lambda r: r["storm_poll"]["p50"], "{:.0f}", "low"),
    ("storm: poll() p99 (µs)", lambda r: r["storm_poll"]["p99"], "{:.0f}", "low"),
    ("storm: poll() max (µs)", lambda r: r["storm_poll"]["max"], "{:.0f}", "low"),
    ("storm: frames/s", lambda r: r["storm_fps"], "{:,.0f}", "high"),
    ("storm: server CPU s, main thread / other threads", None, None, None),
    ("storm: server main thread runnable but waiting for a CPU (ms, schedstat)",
     lambda r: r.get("main_wait_ms", float("nan")), "{:.0f}", "low"),
    ("storm: client process CPU s (of the storm's wall s)", None, None, None),
    ("idle: server frame p50 (µs)", lambda r: r["idle"]["p50"], "{:.0f}", "low"),
    ("idle: server frame p99 (µs)", lambda r: r["idle"]["p99"], "{:.0f}", "low"),
    ("idle: server frame max (µs)", lambda r: r["idle"]["max"], "{:.0f}", "low"),
    ("idle: poll() p99 (µs)", lambda r: r["idle_poll"]["p99"], "{:.0f}", "low"),
    ("idle: poll() max (µs)", lambda r: r["idle_poll"]["max"], "{:.0f}", "low"),
    ("after, admitted peers idle: server frame p50 (µs)", lambda r: _a(r, "after", "p50"), "{:.0f}", "low"),
    ("after: server frame p99 (µs)", lambda r: _a(r, "after", "p99"), "{:.0f}", "low"),
    ("after: poll() p50 (µs)", lambda r: _a(r, "after_poll", "p50"), "{:.0f}", "low"),
    ("after: poll() p99 (µs)", lambda r: _a(r, "after_poll", "p99"), "{:.0f}", "low"),
]


def _a(r: dict, key: str, stat: str) -> float:
    return r[key][stat] if r.get(key) else float("nan")


def median(vals: list[float]) -> float:
    vals = [v for v in vals if v == v]
    return statistics.median(vals) if vals else float("nan")


def fmt(f: str, v: float) -> str:
    return "–" if v != v else f.format(v)


def markdown(records: list[dict], classes: list[str], a: argparse.Namespace, info: dict,
             loads: dict, cmdline: str, minutes: float) -> str:
    out = []
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out.append(f"## TLS storm, {when}{' (--quick)' if a.quick else ''}")
    out.append("")
    out.append(f"- command: `{cmdline}`")
    out.append(f"- machine: {info['cores']} cores, {info['cpu_model']}, Linux {info['kernel']}; "
               f"load average {' '.join(f'{x:.2f}' for x in loads['before'])} before, "
               f"{' '.join(f'{x:.2f}' for x in loads['after'])} after ({minutes:.1f} min)")
    out.append(f"- {info['godot']}; commit {info['commit']}"
               f"{' + uncommitted changes' if info['dirty'] else ''}; library sha256 {info['lib_sha']}")
    tls = {c: sorted({r["tls"] for r in records if r["cls"] == c and r["tls"]}) for c in classes}
    out.append(f"- {a.clients} wss clients (Python asyncio + ssl, "
               f"{'trusting the server certificate, host name localhost' if not a.no_verify else 'verification off'})"
               f" released at once per trial, one attempt each, bound {a.bound:g} s. Server: RSA "
               f"2048 self-signed certificate made by Godot's Crypto, bound to 127.0.0.1, peer "
               f"polled once per frame by the script (no SceneMultiplayer), default "
               f"handshake_timeout (3 s) for both. Phases: idle baseline {a.idle:g} s, the storm "
               f"(until every client has its id or gave up), {a.after:g} s after it with the "
               f"admitted peers idle. The built-in takes one connection per poll() from a "
               f"listen backlog of 8 (Godot's MAX_PENDING_CONNECTIONS), so a burst overflows "
               f"the backlog and the kernel's retransmissions (SYN after 1 s, 3 s, …) set the "
               f"pace of the rest; its handshake_timeout runs from the accept. Negotiated: "
               + "; ".join(f"{LABELS[c]} {', '.join(tls[c]) or '?'}" for c in classes))
    out.append(f"- frame = time between consecutive frames of the server's main loop; frame budget "
               f"= the sleep_usec setting (Godot sleeps what is left of it after each frame; 0 = "
               f"uncapped). Medians over the rounds, classes alternating "
               f"{' '.join(LABELS[c] for c in classes)} … in fresh processes; ratio = rust ÷ built-in")
    pair = set(classes) == {"rust", "builtin"}
    for sleep in a.sleeps:
        recs = [r for r in records if r["sleep_usec"] == sleep]
        if not recs:
            continue
        by = {c: [r for r in recs if r["cls"] == c] for c in classes}
        out.append("")
        out.append(f"### {'uncapped frames (sleep_usec 0)' if sleep == 0 else f'frame budget {sleep} µs (sleep_usec {sleep})'}"
                   f", {', '.join(f'{len(by[c])} {LABELS[c]}' for c in classes)} trial(s)")
        out.append("")
        out.append("| metric | " + " | ".join(LABELS[c] for c in classes) + (" | ratio" if pair else "") + " |")
        out.append("|---|" + "---:|" * (len(classes) + (1 if pair else 0)))
        for label, key, f, _better in ROWS:
            if key is None:   # pairs of numbers, no ratio
                if "server CPU" in label:
                    cells = [f"{median([r['cpu_server_main_s'] for r in by[c]]):.2f} / "
                             f"{median([r['cpu_server_other_s'] for r in by[c]]):.2f}" for c in classes]
                else:
                    cells = [f"{median([r['cpu_clients_s'] for r in by[c]]):.2f} "
                             f"({median([r['cpu_window_s'] for r in by[c]]):.2f})" for c in classes]
                out.append(f"| {label} | " + " | ".join(cells) + (" | |" if pair else " |"))
                continue
            meds = {c: median([key(r) for r in by[c]]) for c in classes}
            if all(m != m for m in meds.values()):
                continue
            row = f"| {label} | " + " | ".join(fmt(f, meds[c]) for c in classes)
            if pair:
                r, b = meds["rust"], meds["builtin"]
                if r == r and b == b and b != 0:
                    ratio = r / b
                    row += f" | {ratio:.3g}" if ratio < 1000 else f" | {ratio:,.0f}"
                else:
                    row += " | –"
            out.append(row + " |")
    out.append("")
    out.append("Per trial, in run order: clients with their id / clients; seconds to the last id; "
               "storm seconds (ended by); storm frame p50 / p99 / max µs; storm poll() p99 / max µs; "
               "idle frame p50 / p99 / max µs; CPU seconds during the storm (server main thread / "
               "other server threads / client process); ms the server main thread waited for a "
               "CPU during the storm; failed clients by stage and error.")
    out.append("")
    out.append("| trial | id | last id s | storm s | frame p50/p99/max | poll p99/max | idle frame p50/p99/max | CPU s | main wait ms | failures |")
    out.append("|---|---:|---:|---|---|---|---|---|---:|---|")
    for r in records:
        s_, sp, i = r["storm"], r["storm_poll"], r["idle"]
        errs = ", ".join(f"{k} ×{v}" for k, v in r["errors"].items()) or "–"
        out.append(f"| {LABELS[r['cls']]} sleep {r['sleep_usec']} #{r['round']} | {r['ok']}/{r['clients']} | "
                   f"{r['last_id_s']:.2f} | {r['storm_s']:.2f} ({r['storm_ended_by']}) | "
                   f"{s_['p50']} / {s_['p99']} / {s_['max']} | {sp['p99']} / {sp['max']} | "
                   f"{i['p50']} / {i['p99']} / {i['max']} | {r['cpu_server_main_s']:.2f} / "
                   f"{r['cpu_server_other_s']:.2f} / {r['cpu_clients_s']:.2f} | "
                   f"{r.get('main_wait_ms', float('nan')):.0f} | {errs} |")
    out.append("")
    return "\n".join(out)


# ------------------------------------------------------------------------------------------
# Setup

def machine_info(godot: str, lib_sha: str) -> dict:
    info = benchlib.machine_info(godot)
    info["cpu_model"] = info["cpu_model"] or platform.processor() or "?"
    info["lib_sha"] = lib_sha
    return info


def make_project(godot: str, work: str) -> tuple[str, str] | None:
    """A private copy of godot-project with a snapshot of the installed library, so builds by
    other runs in this work tree cannot swap it mid-measurement. Returns (dir, sha256 prefix)."""
    _, installed = library_names()
    addon_src = os.path.join(REPO, "addons", "rust_websocket")
    lib = os.path.join(addon_src, "bin", installed)
    if not os.path.exists(lib):
        log(f"# no library at {os.path.relpath(lib, REPO)}: run without --no-build")
        return None
    return benchlib.make_project(godot, work, lib, addon_src)


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--quick", action="store_true",
                    help="1 round per class, 50 clients, 1 s idle baseline, 15 s bound")
    ap.add_argument("--rounds", type=int, help="trials per class (default 3; --quick 1)")
    ap.add_argument("--clients", type=int, help="clients per storm (default 200; --quick 50)")
    ap.add_argument("--bound", type=float, help="seconds the clients get (default 30; --quick 15)")
    ap.add_argument("--idle", type=float, help="idle baseline seconds (default 2; --quick 1)")
    ap.add_argument("--sleep-usec", default="0,1000",
                    help="the server's OS.low_processor_usage_mode_sleep_usec settings, comma-"
                         "separated, each measured (default 0,1000: uncapped frames, and a 1 ms "
                         "frame budget)")
    ap.add_argument("--after", type=float,
                    help="seconds measured after the storm with the peers idle (default 2; "
                         "--quick 1; 0: none)")
    ap.add_argument("--classes", default="rust,builtin",
                    help="classes in alternation order (default rust,builtin)")
    ap.add_argument("--no-verify", action="store_true",
                    help="clients skip certificate verification (default: trust cert.pem)")
    ap.add_argument("--no-build", action="store_true",
                    help="use the library already in addons/rust_websocket/bin")
    ap.add_argument("--md", default=MD_DEFAULT,
                    help="markdown file the table is appended to (default tests/bench/TLS-STORM.md; "
                         "'-' for none)")
    ap.add_argument("--json", help="also write every trial's record to this JSON file")
    ap.add_argument("-v", "--verbose", action="store_true", help="show failing processes' output")
    a = ap.parse_args(argv)
    a.rounds = a.rounds or (1 if a.quick else 3)
    a.clients = a.clients or (50 if a.quick else 200)
    a.bound = a.bound or (15.0 if a.quick else 30.0)
    a.idle = a.idle if a.idle is not None else (1.0 if a.quick else 2.0)
    a.after = a.after if a.after is not None else (1.0 if a.quick else 2.0)
    a.sleeps = [int(x) for x in a.sleep_usec.split(",") if x.strip()]
    return a


def main(argv: list[str]) -> int:
    if argv[:1] == ["--client-mode"]:
        port, n, cert, bound = int(argv[1]), int(argv[2]), argv[3], float(argv[4])
        raise_nofile(n + 256)
        asyncio.run(client_main(port, n, cert, bound, "--no-verify" not in argv))
        return 0
    a = parse_args(argv)
    classes = [c.strip() for c in a.classes.split(",") if c.strip()]
    for c in classes:
        if c not in CLASS_NAMES:
            raise SystemExit(f"--classes: unknown class {c!r} ({', '.join(CLASS_NAMES)})")
    import godot_bin  # found through benchlib, which puts tests/ on sys.path
    raise_nofile(a.clients + 256)
    start = time.monotonic()
    if not a.no_build and not benchlib.build_addon():
        return 1
    godot = godot_bin.godot_path()
    os.makedirs(WORK_DEFAULT, exist_ok=True)
    made = make_project(godot, WORK_DEFAULT)
    if made is None:
        return 1
    project, lib_sha = made
    info = machine_info(godot, lib_sha)
    loads = {"before": loadavg()}
    log(f"# {info['cores']} cores, {info['cpu_model']}; {info['godot']}; library {lib_sha}; "
        f"load {loads['before']}")
    log(f"# {a.clients} clients, bound {a.bound:g}s, idle {a.idle:g}s, after {a.after:g}s, "
        f"sleep_usec {a.sleeps}, {a.rounds} round(s) of {' '.join(classes)}")
    records: list[dict] = []
    failures = 0
    for rnd in range(1, a.rounds + 1):
        for sleep in a.sleeps:
            for cls in classes:
                r = trial(godot, project, cls, rnd, sleep, a)
                if r is None:
                    failures += 1
                    continue
                records.append(r)
                print_trial(r)
    loads["after"] = loadavg()
    minutes = (time.monotonic() - start) / 60
    cmdline = "python3 tests/bench/tls_storm.py" + ("" if not argv else " " + " ".join(argv))
    if not records:
        log("# no trial succeeded")
        return 1
    md = markdown(records, classes, a, info, loads, cmdline, minutes)
    log("")
    log(md)
    if a.md != "-":
        new = not os.path.exists(a.md)
        with open(a.md, "a", encoding="utf-8") as f:
            if new:
                f.write("# TLS connection storm\n\nAppended by `python3 tests/bench/tls_storm.py` "
                        "(see its docstring); newest last.\n\n")
            f.write(md + "\n")
        log(f"# appended to {os.path.relpath(a.md, REPO)}")
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump({"machine": info, "load": loads, "command": cmdline,
                       "records": records}, f, indent=1)
    if failures:
        log(f"# {failures} trial(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        log("# interrupted")
        sys.exit(130)
