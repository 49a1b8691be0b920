"""The benchmark's report: medians and ratios as a markdown table with the target verdicts,
and the plot (bench.svg, no plotting library). Used by run_bench.py, also to re-render a
results.json (--from-json)."""

from __future__ import annotations

import statistics

# The game workload's inputs (run_bench.py sends them; the table names them).
GAME_INPUT_HZ = 30
GAME_INPUT_SIZE = 32

def med(vals: list[float]) -> float | None:
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def pick(records: list[dict], **kw) -> list[dict]:
    return [r for r in records if all(r.get(k) == v for k, v in kw.items())]


def fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "—"
    if abs(v) >= 1000:
        s = f"{v:,.0f}"
    elif abs(v) >= 100:
        s = f"{v:.0f}"
    elif abs(v) >= 10:
        s = f"{v:.1f}"
    else:
        s = f"{v:.2f}"
    return s + unit


def sizes_of(records: list[dict], workload: str) -> list[int]:
    return sorted({r["size"] for r in records if r["workload"] == workload and "size" in r})


def sleep_label(sleep_usec: int) -> str:
    return "uncapped" if not sleep_usec else f"{sleep_usec} µs sleep/frame"


def size_label(size: int) -> str:
    return f"{size // 1024} KiB" if size >= 1024 else f"{size} B"


# What a frame's time was made of (bench.gd): the main thread's own CPU time (its thread CPU
# clock), time runnable but waiting for a CPU (schedstat), the rest (blocked); where the wall
# time went (poll(), draining inputs, put_packet); and for frames over 3x the median each part's
# share of their wall time.
FRAME_PARTS = (("oncpu_ms_p50", "main thread on CPU ms/frame p50"),
               ("oncpu_ms_p99", "main thread on CPU ms/frame p99"),
               ("runq_ms_p50", "waiting for a CPU ms/frame p50"),
               ("runq_ms_p99", "waiting for a CPU ms/frame p99"),
               ("blocked_ms_p99", "blocked (neither) ms/frame p99"),
               ("poll_ms_p50", "poll() ms p50"), ("poll_ms_p99", "poll() ms p99"),
               ("drain_ms_p99", "get_packet loop ms p99"),
               ("put_ms_p50", "put_packet ms p50"), ("put_ms_p99", "put_packet ms p99"),
               ("voluntary_p99", "voluntary context switches/frame p99"),
               ("involuntary_p99", "preemptions/frame p99"),
               ("slow_frames", "frames over 3× p50"),
               ("slow_oncpu_share", "their time on CPU"),
               ("slow_runq_share", "their time waiting for a CPU"),
               ("slow_blocked_share", "their time blocked"),
               ("slow_poll_share", "their time in poll()"),
               ("slow_put_share", "their time in put_packet"),
               ("runtime_ms_p99", "runtime threads' CPU ms in the frame p99"),
               ("slow_runtime_share", "runtime threads' CPU in them, share of their time"),
               ("slow_involuntary_share", "their preemptions/frame"))


def summarize(records: list[dict], settings) -> tuple[list[list[str]], list[dict]]:
    """Rows of the markdown table, and the target verdicts."""
    rows: list[list[str]] = []
    verdicts: list[dict] = []

    def row(workload: str, metric: str, vals: dict, ratio: float | None, target: str = "",
            met: bool | None = None, n: int = 0) -> None:
        mark = "" if met is None else ("✅ met" if met else "❌ not met")
        rows.append([workload, metric, fmt(vals.get("rust")), fmt(vals.get("builtin")),
                     fmt(vals.get("enet")), "—" if ratio is None else f"{ratio:.3g}×",
                     f"{target} {mark}".strip(), str(n) if n else ""])
        if met is not None:
            verdicts.append({"what": f"{workload}: {metric}", "target": target, "met": met,
                             "ratio": ratio, "rust": vals.get("rust"), "builtin": vals.get("builtin")})

    def meds(key: str, **kw) -> tuple[dict, int]:
        out, n = {}, 0
        for cls in ("rust", "builtin", "enet"):
            rs = pick(records, cls=cls, **kw)
            if rs:
                out[cls] = med([r.get(key) for r in rs])
                n = max(n, len(rs))
        return out, n

    def ratio(vals: dict) -> float | None:
        a, b = vals.get("rust"), vals.get("builtin")
        return a / b if a is not None and b else None

    sleeps = sorted({r.get("sleep_usec", 0) for r in records if r["workload"] == "throughput"})
    for sl in sleeps:
        pace = "uncapped" if not sl else f"{sl} µs sleep/frame"
        for size in sizes_of(records, "throughput"):
            if not pick(records, workload="throughput", size=size, sleep_usec=sl):
                continue
            v, n = meds("pps", workload="throughput", size=size, sleep_usec=sl)
            r = ratio(v)
            tgt, met = ("≥ 3×", r is not None and r >= 3) if size in (64, 1024) else ("", None)
            row(f"one-way {size_label(size)}, {pace}", "packets/s", v, r, tgt,
                met if r is not None else None, n)
            v, n = meds("mbps", workload="throughput", size=size, sleep_usec=sl)
            r = ratio(v)
            tgt, met = ("≥ 5×", r is not None and r >= 5) if size == 16384 else ("", None)
            row(f"one-way {size_label(size)}, {pace}", "MB/s", v, r, tgt,
                met if r is not None else None, n)
            cpu = {}
            for cls in ("rust", "builtin", "enet"):
                vals = [(r.get("cpu_us_per_packet") or {}).get("total") for r in
                        pick(records, workload="throughput", size=size, sleep_usec=sl, cls=cls)]
                if any(x is not None for x in vals):
                    cpu[cls] = med(vals)
            if cpu:
                row(f"one-way {size_label(size)}, {pace}",
                    "CPU µs per packet (all threads, both processes)", cpu, ratio(cpu), n=n)
    for sl in sorted({r.get("sleep_usec", 0) for r in records
                      if r["workload"] == "throughput_tls"}):
        pace = "uncapped" if not sl else f"{sl} µs sleep/frame"
        for size in sizes_of(records, "throughput_tls"):
            if not pick(records, workload="throughput_tls", size=size, sleep_usec=sl):
                continue
            for key, unit in (("pps", "packets/s"), ("mbps", "MB/s")):
                v, n = meds(key, workload="throughput_tls", size=size, sleep_usec=sl)
                row(f"wss one-way {size_label(size)}, {pace}", unit, v, ratio(v), n=n)
    ceil = [r for r in records if r["workload"] == "ceiling"]
    variants = [("plain", 0, "tokio-tungstenite alone")] + [
        ("channel", sl, "tokio-tungstenite + the addon's queues, "
         + ("spinning main threads" if not sl else f"{sl} µs sleep when idle")) for sl in sleeps]
    for size in sizes_of(records, "ceiling"):
        for mode, sl, label in variants:
            rs = [r for r in pick(ceil, size=size, cls=f"tungstenite-{mode}")
                  if mode == "plain" or r.get("sleep_usec", 0) == sl]
            if not rs:
                continue
            mb = med([r["mbps"] for r in rs])
            pps = med([r["pps"] for r in rs])
            rust = med([r["mbps"] for r in pick(records, workload="throughput", size=size,
                                                 cls="rust", sleep_usec=sl)])
            pace = "uncapped" if not sl else f"{sl} µs sleep/frame"
            rows.append([f"ceiling {size_label(size)}", f"{label}: MB/s (packets/s)",
                         f"{fmt(mb)} ({fmt(pps)})", "", "", "—",
                         f"addon ({pace}) reaches {rust / mb:.0%} of it" if rust else "",
                         str(len(rs))])
    stages = sorted({r["stage"] for r in records if r["workload"] == "poll"})
    p10 = None
    for st in stages:
        v, n = meds("poll_us", workload="poll", stage=st)
        r = ratio(v)
        if st == 10:
            p10 = v.get("rust")
        if st == 1000 and v.get("rust") is not None:
            rust = v["rust"]
            ok = rust <= 10 and (p10 is None or rust <= 2 * max(p10, 0.0))
            row("poll(), idle peers", f"µs per poll, {st} peers", v, r,
                "≤ 10 µs and ≤ 2× the 10-peer cost", ok, n)
        else:
            row("poll(), idle peers", f"µs per poll, {st} peers", v, r, n=n)
    for st in stages:
        if st < 1000:
            continue
        v = {}
        for cls in ("rust", "builtin"):
            per = []
            for rnd in sorted({r["round"] for r in pick(records, workload="poll", cls=cls)}):
                base = pick(records, workload="poll", cls=cls, round=rnd, stage=0)
                at = pick(records, workload="poll", cls=cls, round=rnd, stage=st)
                if base and at and at[0]["peers"]:
                    per.append((at[0]["rss_kib"] - base[0]["rss_kib"]) / at[0]["peers"])
            if per:
                v[cls] = med(per)
        if v:
            r = ratio(v)
            if st == 1000:
                row("memory", f"server RSS KiB per idle connection ({st})", v, r, "≤ 16 KiB",
                    v.get("rust") is not None and v["rust"] <= 16, 0)
            else:
                row("memory", f"server RSS KiB per idle connection ({st})", v, r)
    for wl, scheme in (("rtt", ""), ("rtt_tls", "wss ")):
        for sl in sorted({r.get("sleep_usec", 0) for r in records if r["workload"] == wl}):
            pace = "uncapped" if not sl else f"{sl} µs sleep/frame"
            for key, label in (("p50_us", "p50 µs"), ("p99_us", "p99 µs"), ("max_us", "max µs")):
                v, n = meds(key, workload=wl, sleep_usec=sl)
                r = ratio(v)
                if key == "p99_us" and wl == "rtt":
                    row(f"round trip 32 B, {pace}", label, v, r, "rust ≤ built-in",
                        r is not None and r <= 1.0, n)
                else:
                    row(f"{scheme}round trip 32 B, {pace}", label, v, r, n=n)
    for mode, label in (("plain", "tokio-tungstenite alone"),
                        ("channel", "tokio-tungstenite + the addon's thread hand-offs")):
        rs = pick(records, workload="ceiling_rtt", cls=f"tungstenite-{mode}")
        if rs:
            rows.append(["ceiling round trip 32 B", f"{label}: p50 / p99 / max µs",
                         " / ".join(fmt(med([r[k] for r in rs])) for k in
                                    ("p50_us", "p99_us", "max_us")),
                         "", "", "—", "", str(len(rs))])
    if pick(records, workload="rpc"):
        v, n = meds("cps", workload="rpc")
        row("reliable @rpc", "calls/s", v, ratio(v), n=n)
    if pick(records, workload="fanout"):
        peers = pick(records, workload="fanout")[0]["peers"]
        for key, label in (("ms_p50", "server ms/frame p50"), ("ms_p99", "server ms/frame p99"),
                           *FRAME_PARTS, ("delivered_ratio", "delivered/expected")):
            v, n = meds(key, workload="fanout")
            if all(x is None for x in v.values()):
                continue  # a run before the field existed
            row(f"fan-out 1 KiB × {peers} @ 60 Hz", label, v, ratio(v), n=n)
    if pick(records, workload="game"):
        peers = pick(records, workload="game")[0]["peers"]
        for key, label in (("ms_p50", "server ms/frame p50"), ("ms_p99", "server ms/frame p99"),
                           *FRAME_PARTS, ("delivered_ratio", "snapshots delivered/expected"),
                           ("inputs_ratio", "inputs received/sent")):
            v, n = meds(key, workload="game")
            if all(x is None for x in v.values()):
                continue
            row(f"game tick: 1 KiB × {peers} out @ 60 Hz, {GAME_INPUT_SIZE} B × {peers} in "
                f"@ {GAME_INPUT_HZ} Hz", label, v, ratio(v), n=n)
    return rows, verdicts


def markdown(rows: list[list[str]], info: dict, cmdline: str, loads: dict, minutes: float) -> str:
    head = ["workload", "metric", "rust", "built-in", "ENet", "rust / built-in", "target",
            "rounds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if not rows:  # e.g. --only compression, whose table follows
        lines = []
    meta = (f"Machine: {info['cores']} cores, {info['cpu_model']}, {info['mem_gib']} GiB, "
            f"Linux {info['kernel']}; {info['godot']}; {info['rustc']}; library: "
            f"{info.get('measured', 'work tree')} (HEAD {info['commit']}"
            f"{', dirty tree' if info['dirty'] else ''}). Load average before "
            f"{loads['before']}, after {loads['after']}. Run took {minutes:.1f} min: `{cmdline}`.")
    return "\n".join(lines + ["", meta, ""]).lstrip("\n")


# ------------------------------------------------------------------------------------------
# Plot (SVG written by hand, no dependency)

COLORS = {"rust": "#d9480f", "builtin": "#1c7ed6", "enet": "#2b8a3e",
          "tungstenite-plain": "#868e96", "tungstenite-channel": "#495057"}
LABELS = {"rust": "RustWebSocketMultiplayerPeer", "builtin": "WebSocketMultiplayerPeer",
          "enet": "ENetMultiplayerPeer", "tungstenite-plain": "tokio-tungstenite alone",
          "tungstenite-channel": "tokio-tungstenite + the addon's queues (same pacing)"}


def _log_ticks(lo: float, hi: float) -> list[float]:
    import math
    out = []
    e = math.floor(math.log10(lo))
    while 10 ** e <= hi * 1.0001:
        for m in (1, 2, 5):
            v = m * 10 ** e
            if lo * 0.9999 <= v <= hi * 1.0001:
                out.append(v)
        e += 1
    return out


def _panel(x0: float, y0: float, w: float, h: float, title: str, xlabel: str, ylabel: str,
           series: dict, xticks: list[tuple[float, str]], points: dict | None = None) -> list[str]:
    import math
    allx = [x for s in series.values() for x, _ in s] + [x for x, _ in xticks]
    ally = [y for s in series.values() for _, y in s if y and y > 0]
    if points:
        ally += [y for s in points.values() for _, y in s if y and y > 0]
    if not ally:
        return []
    xlo, xhi = min(allx), max(allx)
    ylo, yhi = min(ally), max(ally)
    ylo = 10 ** math.floor(math.log10(ylo))
    yhi = 10 ** math.ceil(math.log10(yhi))
    lx = lambda x: x0 + (math.log10(x) - math.log10(xlo)) / max(1e-9, math.log10(xhi) - math.log10(xlo)) * w  # noqa: E731
    ly = lambda y: y0 + h - (math.log10(y) - math.log10(ylo)) / max(1e-9, math.log10(yhi) - math.log10(ylo)) * h  # noqa: E731
    out = [f'<text x="{x0 + w / 2}" y="{y0 - 12}" text-anchor="middle" font-size="14" '
           f'font-weight="bold">{title}</text>',
           f'<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="#adb5bd"/>']
    for yv in _log_ticks(ylo, yhi):
        yy = ly(yv)
        out.append(f'<line x1="{x0}" y1="{yy:.1f}" x2="{x0 + w}" y2="{yy:.1f}" stroke="#e9ecef"/>')
        lab = f"{yv:g}" if yv < 1e4 else (f"{yv / 1e3:g}k" if yv < 1e6 else f"{yv / 1e6:g}M")
        out.append(f'<text x="{x0 - 6}" y="{yy + 4:.1f}" text-anchor="end" font-size="11">{lab}</text>')
    for xv, lab in xticks:
        xx = lx(xv)
        out.append(f'<line x1="{xx:.1f}" y1="{y0}" x2="{xx:.1f}" y2="{y0 + h}" stroke="#e9ecef"/>')
        out.append(f'<text x="{xx:.1f}" y="{y0 + h + 16}" text-anchor="middle" font-size="11">{lab}</text>')
    out.append(f'<text x="{x0 + w / 2}" y="{y0 + h + 34}" text-anchor="middle" font-size="12">{xlabel}</text>')
    out.append(f'<text x="{x0 - 48}" y="{y0 + h / 2}" text-anchor="middle" font-size="12" '
               f'transform="rotate(-90 {x0 - 48} {y0 + h / 2})">{ylabel}</text>')
    for key, pts in (points or {}).items():
        for x, y in pts:
            if y and y > 0:
                out.append(f'<circle cx="{lx(x):.1f}" cy="{ly(y):.1f}" r="2" fill="{COLORS.get(key, "#000")}" '
                           f'fill-opacity="0.35"/>')
    for key, pts in series.items():
        pts = [(x, y) for x, y in sorted(pts) if y and y > 0]
        if not pts:
            continue
        dash = ' stroke-dasharray="5,4"' if key.startswith("tungstenite") else ""
        path = " ".join(f"{'M' if i == 0 else 'L'}{lx(x):.1f},{ly(y):.1f}" for i, (x, y) in enumerate(pts))
        out.append(f'<path d="{path}" fill="none" stroke="{COLORS.get(key, "#000")}" stroke-width="2"{dash}/>')
        for x, y in pts:
            out.append(f'<circle cx="{lx(x):.1f}" cy="{ly(y):.1f}" r="3.5" fill="{COLORS.get(key, "#000")}"/>')
    return out


def plot_svg(records: list[dict], path: str, subtitle: str) -> None:
    W, H = 1180, 490
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
             f'viewBox="0 0 {W} {H}" font-family="sans-serif">',
             f'<rect width="{W}" height="{H}" fill="white"/>']
    tp = [r for r in records if r["workload"] in ("throughput", "ceiling")]
    classes = [c for c in ("rust", "builtin", "enet", "tungstenite-plain", "tungstenite-channel")
               if any(r["cls"] == c for r in tp + records)]
    size_ticks = [(s, size_label(s)) for s in sorted({r["size"] for r in tp})]

    def series(recs: list[dict], xkey: str, ykey: str) -> tuple[dict, dict]:
        s, p = {}, {}
        for c in classes:
            rs = [r for r in recs if r["cls"] == c]
            xs = sorted({r[xkey] for r in rs})
            s[c] = [(x, med([r[ykey] for r in rs if r[xkey] == x])) for x in xs]
            p[c] = [(r[xkey], r[ykey]) for r in rs]
        return s, p
    for i, sl in enumerate((0, 100)):
        recs = [r for r in tp if r.get("sleep_usec", 0) == sl or r["cls"] == "tungstenite-plain"]
        s, p = series(recs, "size", "mbps")
        parts += _panel(80 + 390 * i, 50, 300, 320,
                        "One-way throughput, " + ("frames uncapped" if not sl else
                                                  f"{sl} µs sleep per frame"),
                        "packet size", "MB/s (log)", s, size_ticks, p)
    pl = [r for r in records if r["workload"] == "poll" and r["peers"] > 0]
    if pl:
        peers = sorted({r["peers"] for r in pl})
        s, p = series(pl, "peers", "poll_us")
        parts += _panel(860, 50, 300, 320, "Server poll() cost, idle peers", "connected peers",
                        "µs per poll (log)", s, [(x, f"{x:g}") for x in peers], p)
    lx, ly = 80, H - 62
    for c in classes:
        width = 34 + 7 * len(LABELS[c])
        if lx + width > W - 10:
            lx, ly = 80, ly + 20
        parts.append(f'<rect x="{lx}" y="{ly - 6}" width="14" height="4" fill="{COLORS[c]}"/>')
        parts.append(f'<text x="{lx + 20}" y="{ly}" font-size="12">{LABELS[c]}</text>')
        lx += width
    parts.append(f'<text x="80" y="{H - 14}" font-size="11" fill="#495057">{subtitle}</text>')
    parts.append("</svg>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts) + "\n")




# ------------------------------------------------------------------------------------------
# The compression workload (issue 14): its own table, three classes side by side

COMPRESSION_COLS = (("rust-z", "rust, compression on"), ("rust-z1", "rust, on, level 1"),
                    ("rust-znc", "rust, on, no context takeover"),
                    ("rust", "rust, compression off"), ("builtin", "built-in"))


def compression_markdown(records: list[dict]) -> str:
    """The compression workload's table (empty string if it did not run): medians over the
    rounds, the ratio of compression on to off and the issue's targets."""
    snap = pick(records, workload="compression")
    tp = pick(records, workload="compression_tp")
    if not snap and not tp:
        return ""
    head = ["workload", "metric"] + [label for _, label in COMPRESSION_COLS] + \
        ["on / off", "target", "rounds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]

    def meds(recs: list[dict], key) -> tuple[dict, int]:
        out, n = {}, 0
        for cls, _ in COMPRESSION_COLS:
            rs = pick(recs, cls=cls)
            vals = [key(r) if callable(key) else r.get(key) for r in rs]
            if any(v is not None for v in vals):
                out[cls] = med(vals)
                n = max(n, len(rs))
        return out, n

    def row(what: str, metric: str, v: dict, n: int, target: str = "", met=None,
            digits: int = 3) -> None:
        on, off = v.get("rust-z"), v.get("rust")
        r = f"{on / off:.{digits}g}×" if on is not None and off else "—"
        mark = "" if met is None else (" ✅ met" if met else " ❌ not met")
        show = (lambda x: "—" if x is None else f"{x:.4f}") if digits == 4 else fmt
        lines.append("| " + " | ".join([what, metric] + [show(v.get(c)) for c, _ in COMPRESSION_COLS]
                                        + [r, (target + mark).strip(), str(n)]) + " |")

    if snap:
        peers = snap[0]["peers"]
        size = med([r["snapshot_bytes"] for r in snap])
        what = f"snapshot {size:,.0f} B × {peers} clients @ {snap[0]['hz']} Hz"
        if snap[0].get("outbuf"):
            what += f", outbound_buffer_size {snap[0]['outbuf']:,}"
        v, n = meds(snap, "snapshot_bytes")
        row(what, "payload bytes per message (var_to_bytes)", v, n)
        v, n = meds(snap, "client_wire_bytes_per_msg")
        on, off = v.get("rust-z"), v.get("rust")
        row(what, "wire bytes per message (read by the clients)", v, n, "≥ 3× fewer",
            (off / on >= 3) if on and off else None)
        v, n = meds(snap, "server_wire_bytes_per_msg")
        row(what, "wire bytes per message (server get_stats)", v, n)
        v, n = meds(snap, "cpu_us_per_msg")
        row(what, "server CPU µs per message (all threads, making the snapshot excluded)", v, n)
        v, n = meds(snap, "cpu_us_per_msg_main")
        row(what, "of which the main thread", v, n)
        v, n = meds(snap, "ms_p50")
        on, off = v.get("rust-z"), v.get("rust")
        row(what, "server main-thread ms/frame p50", v, n, "unchanged (≤ 1.2× off)",
            (on <= 1.2 * off) if on is not None and off else None)
        v, n = meds(snap, "ms_p99")
        row(what, "server main-thread ms/frame p99", v, n)
        v, n = meds(snap, "oncpu_ms_p50")
        row(what, "main thread on CPU ms/frame p50", v, n)
        v, n = meds(snap, "rss_idle_kib_per_conn")
        row(what, "server RSS KiB per connection, idle", v, n)
        v, n = meds(snap, "rss_busy_kib_per_conn")
        row(what, "server RSS KiB per connection, busy (highest)", v, n)
        v, n = meds(snap, "peers_at_end")
        row(what, "clients still connected at the end", v, n)
        v, n = meds(snap, "achieved_hz")
        row(what, "broadcasts per second achieved", v, n)
        v, n = meds(snap, "delivered_ratio")
        row(what, "delivered/expected", v, n, digits=4)
        v, n = meds(snap, "compressed_share")
        row(what, "messages compressed (RSV1)", v, n)
        v, n = meds(snap, lambda r: r["inflate_errors"])
        row(what, "inflate errors at the checking clients", v, n)
    for payload, label in (("json", "16 KiB JSON leaderboard"), ("random", "16 KiB random bytes")):
        rs = pick(tp, payload=payload)
        if not rs:
            continue
        what = f"one-way {label}, 100 µs sleep/frame"
        v, n = meds(rs, "mbps")
        on, off = v.get("rust-z"), v.get("rust")
        if payload == "random":
            row(what, "MB/s (payload)", v, n, "on ≥ 70% of off",
                (on >= 0.7 * off) if on is not None and off else None)
        else:
            row(what, "MB/s (payload)", v, n)
        v, n = meds(rs, lambda r: r.get("wire_ratio", 1.0) * r["size"])
        row(what, "wire bytes per message", v, n)
        v, n = meds(rs, lambda r: (r.get("cpu_us_per_packet") or {}).get("total"))
        row(what, "CPU µs per message (all threads, both processes)", v, n)
        v, n = meds(rs, lambda r: (r.get("cpu_us_per_packet") or {}).get("client_io"))
        row(what, "of which the sender's runtime threads (compressing)", v, n)
        v, n = meds(rs, lambda r: (r.get("cpu_us_per_packet") or {}).get("server_io"))
        row(what, "of which the receiver's runtime threads (inflating)", v, n)
    return "\n".join(lines) + "\n"
