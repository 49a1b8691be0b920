"""The benchmark's workloads: each measurement as headless Godot processes (tests/bench/godot/
bench.gd), raw Python clients (rawclients.py) or the tokio-tungstenite ceiling binary, with
its records. Used by run_bench.py, which chooses what runs, alternates the classes and
reports. Over 500 lines because each workload is one method here, sharing the process,
CPU-time and RSS helpers and the record format."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from benchlib import HERE, REPO, Proc, free_port, log, thread_times
from report import GAME_INPUT_SIZE, sleep_label

BENCH_GD = os.path.join(HERE, "godot", "bench.gd")
RAWCLIENTS = os.path.join(HERE, "rawclients.py")
CEILING_DIR = os.path.join(HERE, "ceiling")
CEILING_TARGET = os.path.join(REPO, "target", "bench-ceiling")
CEILING_BIN = os.path.join(CEILING_TARGET, "release", "rwsmp-bench-ceiling")
# Same (raised) buffers for both WebSocket classes in the streaming workloads: 8 MiB in and out,
# 131072 queued packets. The sender's window (2 MiB / 16384 packets) stays far below them.
BIG_BUFFERS = ["inbuf=8388608", "outbuf=8388608", "maxq=131072"]
# The compression workload's rust classes with compression on: level 6 (the default), level 1,
# and level 6 without context takeover.
DEFLATE_ARGS = {"rust-z": ["deflate=1"], "rust-z1": ["deflate=1", "deflate_level=1"],
                "rust-znc": ["deflate=1", "deflate_nct=1"]}


# What bench.gd's fan-out server says its frames were made of (p50 / p99 of each part, and for
# the frames over 3x the median each part's share of their wall time): the main thread's own
# CPU time, waiting for a CPU, blocked; poll(), draining the inputs, put_packet; the runtime
# threads' CPU time in the frame; context switches
# (all, voluntary = blocked, involuntary = preempted).
FRAME_PARTS = ("oncpu", "runq", "blocked", "poll", "drain", "put", "runtime")
FRAME_COUNTS = ("switches", "voluntary", "involuntary")
FRAME_RESULT_KEYS = ("cpu_clock", "slow_frames",
                     *(f"{k}_{q}" for k in FRAME_COUNTS for q in ("p50", "p99")),
                     *(f"slow_{k}_share" for k in FRAME_COUNTS),
                     *(f"{k}_ms_{q}" for k in FRAME_PARTS for q in ("p50", "p99")),
                     *(f"slow_{k}_share" for k in FRAME_PARTS))


class Bench:
    def __init__(self, godot: str, project: str, settings, verbose: bool):
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

    def server_then_client(self, short: str, what: str, **common) -> list[Proc] | None:
        """A bench.gd server and, once it listens, its client: [server, client]; None (a
        failure of `what`, recorded) if the server does not start."""
        cls = common["cls"]
        srv = self.godot_proc(f"{short}-server[{cls}]", role="server", **common)
        if srv.wait_line("@@READY", 20) is None:
            srv.finish(5)
            self.fail(what, [srv])
            return None
        return [srv, self.godot_proc(f"{short}-client[{cls}]", role="client", **common)]

    def nice_clients(self, cmd: list[str]) -> list[str]:
        """`cmd` under `nice -n clients_nice` when set: load generators that take a CPU only
        when the server's threads do not want it, as if they ran on other machines."""
        return ["nice", "-n", str(self.s.clients_nice), *cmd] if self.s.clients_nice else cmd

    def nice_runtime(self, pid: int) -> None:
        """An experiment (`runtime_nice`): the server's runtime threads (rust-websocket*) made
        that much nicer than its main thread, so a thread that put_packet wakes does not
        preempt the main thread for the 2 cores."""
        if not self.s.runtime_nice:
            return
        base = os.getpriority(os.PRIO_PROCESS, pid)
        for tid, comm, _ in thread_times(pid) or []:
            if comm.startswith("rust-websocket"):
                os.setpriority(os.PRIO_PROCESS, tid, min(19, base + self.s.runtime_nice))

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
                   tls: bool = False, payload: str = "") -> None:
        """One-way client -> server. `payload` (the compression workload): json|random
        messages instead of the fixed pattern, and `cls` may be `rust-z`, the rust class with
        compression_enabled on both ends."""
        port = free_port()
        timeout = self.s.tp_warmup + self.s.tp_duration + 25
        extra = list(BIG_BUFFERS)
        label = cls
        if payload:
            extra.append(f"payload={payload}")
            if cls.startswith("rust-z"):
                extra += DEFLATE_ARGS[cls]
                cls = "rust"
        tls_dir = None
        if tls:
            tls_dir = tempfile.mkdtemp(prefix="rwsmp-bench-tls-")
            extra.append(f"tls_dir={tls_dir}")
        common = dict(workload="throughput", cls=cls, port=port, size=size,
                      warmup=self.s.tp_warmup, duration=self.s.tp_duration, timeout=timeout,
                      sleep_usec=sleep_usec, extra=extra)
        try:
            self._throughput(label, size, rnd, sleep_usec, tls, common, timeout, payload)
        finally:
            if tls_dir:
                shutil.rmtree(tls_dir, ignore_errors=True)

    def _throughput(self, cls: str, size: int, rnd: int, sleep_usec: int, tls: bool,
                    common: dict, timeout: float, payload: str = "") -> None:
        workload = "throughput_tls" if tls else "throughput"
        if payload:
            workload = "compression_tp"
        what = f"{workload} {cls} {size}"
        procs = self.server_then_client("tp", what, **common)
        if procs is None:
            return
        srv, cli = procs
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
        if payload:
            rec["payload"] = payload
            # bytes as they crossed the wire per payload byte (the receiver's get_stats; only
            # the rust class has it, and without compression it is 1)
            if r.get("payload_bytes_in"):
                rec["wire_ratio"] = r["wire_bytes_in"] / r["payload_bytes_in"]
        self.record(rec)
        flag = "" if r["complete"] and rec["put_errors"] == 0 else \
            f"  INCOMPLETE ({r['received_total']}/{r['sent_total']}, put errors {rec['put_errors']})"
        if srv.rc or cli.rc:
            flag += f"  (exit codes: server {srv.rc}, client {cli.rc})"
        if payload:
            flag += f"  wire/payload {rec.get('wire_ratio', 1.0):.3f}"
        log(f"  {'wss' if tls else payload or 'throughput'} {size:>6} B {sleep_label(sleep_usec):<9} {cls:<8} {r['pps']:>12,.0f} packets/s {r['mbps']:>9.1f} MB/s{flag}")

    # --------------------------------------------------------------------------------------
    # 3. rtt

    def rtt(self, cls: str, rnd: int, sleep_usec: int = 0, tls: bool = False) -> None:
        tls_dir = tempfile.mkdtemp(prefix="rwsmp-bench-tls-") if tls else None
        try:
            self._rtt(cls, rnd, sleep_usec, tls_dir)
        finally:
            if tls_dir:
                shutil.rmtree(tls_dir, ignore_errors=True)

    def _rtt(self, cls: str, rnd: int, sleep_usec: int, tls_dir: str | None) -> None:
        port = free_port()
        timeout = 60 if not self.s.quick else 20
        common = dict(workload="rtt", cls=cls, port=port, timeout=timeout,
                      warm=self.s.rtt_warm, count=self.s.rtt_count, sleep_usec=sleep_usec,
                      extra=[f"tls_dir={tls_dir}"] if tls_dir else [])
        procs = self.server_then_client("rtt", f"rtt {cls}", **common)
        if procs is None:
            return
        srv, cli = procs
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
        rec = {"workload": "rtt_tls" if tls_dir else "rtt", "cls": cls, "round": rnd, "n": n,
               "sleep_usec": sleep_usec,
               "p50_us": samples[n // 2], "p99_us": samples[min(n - 1, (n * 99) // 100)],
               "max_us": samples[-1], "mean_us": sum(samples) / n,
               "cpu_s": {"server": srv.cpu_seconds(), "client": cli.cpu_seconds()}}
        self.record(rec)
        log(f"  {'wss rtt' if tls_dir else 'rtt'} {sleep_label(sleep_usec):<17} {cls:<8} p50 {rec['p50_us']:>6} µs  p99 {rec['p99_us']:>6} µs  "
            f"max {rec['max_us']:>7} µs  ({n} round trips)")

    # --------------------------------------------------------------------------------------
    # 4. rpc

    def rpc(self, cls: str, rnd: int) -> None:
        port = free_port()
        timeout = self.s.rpc_warmup + self.s.rpc_duration + 25
        common = dict(workload="rpc", cls=cls, port=port, warmup=self.s.rpc_warmup,
                      duration=self.s.rpc_duration, timeout=timeout, extra=BIG_BUFFERS)
        procs = self.server_then_client("rpc", f"rpc {cls}", **common)
        if procs is None:
            return
        srv, cli = procs
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
            raw.send("quit")
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
        raw = Proc(self.nice_clients([sys.executable, RAWCLIENTS, str(port), "--concurrency",
                                      "8"]), f"rawclients[{cls}]", stdin=subprocess.PIPE)
        try:
            raw.popen.stdin.write(f"grow {n}\n")
            raw.popen.stdin.flush()
            ans = raw.wait_line("", 120)
            if not ans or not ans.startswith("ok"):
                log(f"  ! rawclients: {ans}")
            elif srv.wait_line("@@STAGE", 60) is not None:
                self.nice_runtime(srv.popen.pid)
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
                    for key in FRAME_RESULT_KEYS:
                        if key in r:
                            rec[key] = r[key]
                    rec["clients_nice"] = self.s.clients_nice
                    rec["runtime_nice"] = self.s.runtime_nice
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
            raw.send("quit")
            srv.finish(30)
            raw.finish(30)
        if not any(r["workload"] == workload and r["cls"] == cls and r["round"] == rnd
                   for r in self.records):
            self.fail(f"{workload} {cls}", [srv, raw])

    # --------------------------------------------------------------------------------------
    # 8. compression: a game snapshot broadcast, with and without permessage-deflate

    def compression(self, cls: str, rnd: int) -> None:
        """The fan-out loop with `payload=game` (var_to_bytes of 100 moving entities, remade
        each tick) to raw clients that offer permessage-deflate. `cls`: rust-z (the rust class
        with compression_enabled), rust, builtin. Besides the frame times: the server's CPU
        time (every thread, /proc) over the broadcast per message sent, its VmRSS with no
        client, with every client connected and idle, and the highest during the broadcast,
        and the payload bytes the clients read per message (the wire's, without frame
        headers)."""
        port = free_port()
        n = self.s.compression_clients
        hz = self.s.compression_hz
        secs = self.s.compression_seconds
        args = dict(workload="fanout", role="server", cls="builtin" if cls == "builtin" else "rust",
                    port=port, clients=n, duration=secs, hz=hz, payload="game",
                    timeout=secs + 120, stage_timeout=90, extra=[])
        args["extra"] += DEFLATE_ARGS.get(cls, [])
        if self.s.compression_outbuf:
            args["extra"].append(f"outbuf={self.s.compression_outbuf}")
        srv = self.godot_proc(f"compression-server[{cls}]", **args)
        if srv.wait_line("@@READY", 20) is None:
            srv.finish(5)
            return self.fail(f"compression {cls}", [srv])
        time.sleep(0.5)
        rss_base = read_rss_kib(srv.pid)
        raw = Proc([sys.executable, RAWCLIENTS, str(port), "--concurrency", "8", "--deflate",
                    "--inflate-every", str(self.s.compression_inflate_every)],
                   f"rawclients[{cls}]", stdin=subprocess.PIPE)
        try:
            raw.send(f"grow {n}")
            ans = raw.wait_line("", 120)
            if not ans or not ans.startswith("ok"):
                log(f"  ! rawclients: {ans}")
            elif (stage := srv.wait_line("@@STAGE", 60)) is not None:
                connected = json.loads(stage[len("@@STAGE "):])["peers"]
                time.sleep(0.3)
                rss_idle = read_rss_kib(srv.pid)
                raw.send("reset")
                raw.wait_line("ok", 10)
                cpu0 = cpu1 = None
                rss_busy = 0
                if srv.wait_line("@@WINDOW start", 30) is not None:
                    cpu0 = thread_cpu(srv.pid)
                    while srv.wait_line("@@WINDOW end", 0.5) is None:
                        if srv.popen.poll() is not None:
                            break
                        rss_busy = max(rss_busy, read_rss_kib(srv.pid))
                res = srv.wait_line("@@RESULT", 60)
                if cpu0 is not None and res:
                    # after the linger: what was queued at the last tick is compressed and sent
                    cpu1 = thread_cpu(srv.pid)
                raw.send("count")
                cnt = raw.wait_line("count", 10)
                if res and cnt and cpu1 is not None:
                    r = json.loads(res[len("@@RESULT "):])
                    c = [int(x) for x in cnt.split()[1:]]
                    got, wire_payload, compressed, negotiated = c[0], c[1], c[4], c[5]
                    inflated, inflated_bytes, inflate_errors = c[6], c[7], c[8]
                    # every client connected at the start should get every tick's snapshot
                    expected = r["ticks"] * connected
                    t = r.get("traffic") or {}
                    # messages the server sent (the rust class counts them; the built-in
                    # closed no peer in these runs, so ticks × peers)
                    sent = t.get("packets_out") or r["ticks"] * r["peers"]
                    cpu = {k: cpu1[k] - cpu0[k] for k in cpu1}
                    # the game's own work, making the snapshots (the same for every class)
                    cpu["main"] = max(0.0, cpu["main"] - r.get("build_us", 0) / 1e6)
                    peers = connected or 1
                    rec = {"workload": "compression", "cls": cls, "round": rnd,
                           "peers": connected, "peers_at_end": r["peers"], "sent": sent,
                           "hz": hz, "ticks": r["ticks"], "outbuf": self.s.compression_outbuf,
                           "achieved_hz": r["ticks"] / r["wall_s"] if r.get("wall_s") else None,
                           "ms_p50": r["ms_p50"],
                           "ms_p99": r["ms_p99"], "ms_mean": r["ms_mean"],
                           "oncpu_ms_p50": r.get("oncpu_ms_p50"),
                           "oncpu_ms_p99": r.get("oncpu_ms_p99"),
                           "delivered": got, "expected": expected,
                           "delivered_ratio": got / expected if expected else float("nan"),
                           "put_errors": r["put_errors"],
                           "server_warnings": [ln for ln in srv.stderr
                                               if "ERROR" in ln or "WARNING" in ln][:5],
                           "snapshot_bytes": r["snapshot_bytes_mean"],
                           "client_wire_bytes_per_msg": wire_payload / got if got else None,
                           "compressed_share": compressed / got if got else None,
                           "negotiated": negotiated, "inflated": inflated,
                           "inflated_bytes_per_msg": inflated_bytes / inflated if inflated else None,
                           "inflate_errors": inflate_errors,
                           "build_s": r.get("build_us", 0) / 1e6,
                           "cpu_s": cpu, "cpu_us_per_msg": sum(cpu.values()) / sent * 1e6 if sent else None,
                           "cpu_us_per_msg_main": cpu["main"] / sent * 1e6 if sent else None,
                           "rss_base_kib": rss_base, "rss_idle_kib": rss_idle,
                           "rss_busy_kib": rss_busy,
                           "rss_idle_kib_per_conn": (rss_idle - rss_base) / peers,
                           "rss_busy_kib_per_conn": (rss_busy - rss_base) / peers}
                    if t.get("payload_bytes_out"):
                        rec["server_payload_bytes_per_msg"] = t["payload_bytes_out"] / sent
                        rec["server_wire_bytes_per_msg"] = t["wire_bytes_out"] / sent
                    self.record(rec)
                    log(f"  compression {cls:<8} {connected} clients ({r['peers']} at the end): {r['ms_p50']:.3f} ms/frame "
                        f"p50, {r['ms_p99']:.3f} p99 ({rec['achieved_hz'] or 0:.1f} Hz); {rec['snapshot_bytes']:.0f} B snapshot -> "
                        f"{rec['client_wire_bytes_per_msg'] or 0:.0f} B on the wire "
                        f"(server stats {rec.get('server_wire_bytes_per_msg', float('nan')):.0f}); "
                        f"CPU {rec['cpu_us_per_msg'] or 0:.2f} µs/msg; RSS/conn idle "
                        f"{rec['rss_idle_kib_per_conn']:.1f} KiB busy {rec['rss_busy_kib_per_conn']:.1f} KiB; "
                        f"delivered {got}/{expected} ({rec['delivered_ratio']:.4f}); negotiated "
                        f"{negotiated}, inflated {inflated} ({inflate_errors} errors); "
                        f"put errors {r['put_errors']}")
        finally:
            raw.send("quit")
            srv.finish(30)
            raw.finish(30)
        if not any(r["workload"] == "compression" and r["cls"] == cls and r["round"] == rnd
                   for r in self.records):
            self.fail(f"compression {cls}", [srv, raw])

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
