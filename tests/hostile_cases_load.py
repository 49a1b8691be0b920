"""Hostile cases of load (tests/hostile_hook.py's `flow`, `conns` and `lifecycle` groups): a
client that never reads, a client that sends as fast as it can, 2000 sockets at once, and
thousands of connect/disconnect cycles. Each takes a hostile_harness.Harness, makes its checks
and returns what it observed.
"""

from __future__ import annotations

import selectors
import socket
import struct
import time

import rawws
from hostile_harness import (LIFECYCLE_SLACK, MB, Closed, Harness, fd_count, frame, mb,
                             raise_nofile, rss_bytes, thread_count, upgrade_request)

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


def sequenced_frame(i: int, size: int) -> bytes:
    """Packet `i` of case_fast_sender: its number (4 bytes, little-endian), padded to `size`,
    in one binary frame (masked with a zero key; scripts/fuzz_seeds.py seeds with it too)."""
    return frame(2, i.to_bytes(4, "little") + b"\x5a" * (size - 4), key=b"\0\0\0\0")


def case_fast_sender(h: Harness, n: int = 50000, size: int = 16, big_n: int = 200,
                     big: int = 60000) -> str:
    """A client sending as fast as it can while the game reads: every packet arrives, in
    order (small ones, then near-limit ones)."""
    out = []
    for label, count, sz in (("small", n, size), ("large", big_n, big)):
        c = rawws.Client(h.ctx.port, timeout=30)
        pid = c.handshake()
        h.cmd("order_begin", id=pid)
        t0 = time.monotonic()
        batch = []
        for i in range(count):
            batch.append(sequenced_frame(i, sz))
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
