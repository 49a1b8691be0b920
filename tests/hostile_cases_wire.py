"""Hostile cases before and right after the upgrade (tests/hostile_hook.py's `http` and `frames`
groups): garbage, slowloris, huge headers, bad upgrade requests; unmasked, reserved, fragmented
control, invalid UTF-8, huge length, pings between fragments, continuation floods. Each takes a
hostile_harness.Harness, makes its checks and returns what it observed.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import rawws
from hostile_harness import HANDSHAKE_TIMEOUT, Closed, Harness, frame, upgrade_request

# ------------------------------------------------------------------------------------------
# What the cases send, by label (scripts/fuzz_seeds.py seeds the fuzz targets with them too)

def garbage_payloads() -> tuple[tuple[str, bytes], ...]:
    """Bytes that are not an HTTP request."""
    return (("binary", b"\x00\xff\x13garbage\x01\x02" + os.urandom(200)),
            ("tls_hello", bytes.fromhex("16030100a5010000a10303") + os.urandom(96)),
            ("text_line", b"HELLO THERE\r\n\r\n"))


def huge_header_requests(port: int) -> tuple[tuple[str, bytes], ...]:
    """Requests over the head limits: a 20 KiB header, 120 headers."""
    return (("huge_header", upgrade_request(port, extra="X-Big: " + "a" * 20000 + "\r\n")),
            ("many_headers",
             upgrade_request(port, extra="".join(f"X-H{i}: v\r\n" for i in range(120)))))


def bad_upgrade_requests(port: int) -> tuple[tuple[str, bytes], ...]:
    """Requests tungstenite refuses: wrong version, no key, not websocket, HTTP/1.0."""
    return (("version_8", upgrade_request(port, version="8")),
            ("no_version", upgrade_request(port, version=None)),
            ("no_key", upgrade_request(port, key="")),
            ("upgrade_h2c", upgrade_request(port, upgrade="h2c")),
            ("post", upgrade_request(port, method="POST")),
            ("http_1_0", upgrade_request(port, http="HTTP/1.0")))


def bad_frames() -> tuple[tuple[str, bytes, tuple[int, ...]], ...]:
    """Frames a server must refuse after a good handshake, with the close codes allowed."""
    zero = b"\0\0\0\0"
    return (("unmasked", frame(2, b"hello", mask=False), (1002,)),
            ("reserved_opcode_3", frame(3, b"x"), (1002,)),
            ("reserved_opcode_0xB", frame(0xB, b"x"), (1002,)),
            ("reserved_rsv1", frame(2, b"x", rsv=4), (1002,)),
            ("reserved_rsv3_ping", frame(9, b"", rsv=1), (1002,)),
            ("control_ping_fin0", frame(9, b"p", fin=False), (1002,)),
            ("control_ping_126_bytes", frame(9, b"p" * 126), (1002,)),
            ("control_stray_continuation", frame(0, b"x"), (1002,)),
            ("utf8_single", frame(1, b"ok \xff\xfe"), (1007,)),
            ("utf8_fragmented", frame(1, b"ok", fin=False) + frame(0, b"\xc3\x28"), (1007,)),
            *((f"length_{label}", frame(2, b"", length=n, key=zero) + b"x" * 64, (1009, 1002))
              for label, n in (("2^63", 1 << 63), ("2^64-1", (1 << 64) - 1),
                               ("2^63-1", (1 << 63) - 1))))


def good_frames() -> tuple[tuple[str, bytes], ...]:
    """Frame sequences a server must accept: a character split across fragments, a ping
    between fragments, a flood of empty continuations ended by FIN."""
    zero = b"\0\0\0\0"
    return (("utf8_split_valid", frame(1, b"h\xc3", fin=False) + frame(0, b"\xa9llo", fin=True)),
            ("ping_between_fragments",
             frame(2, b"ab", fin=False) + frame(9, b"PP") + frame(0, b"cd", fin=True)),
            ("empty_continuations", frame(2, b"", fin=False, key=zero)
             + frame(0, b"", fin=False, key=zero) * 100 + frame(0, b"", fin=True, key=zero)))


def continuation_flood(frames_n: int) -> bytes:
    """1-byte continuation frames without end."""
    one = frame(0, b"z", fin=False, key=b"\0\0\0\0")
    return frame(2, b"a", fin=False, key=b"\0\0\0\0") + one * frames_n


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
    for label, payload in garbage_payloads():
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
    (_, big), (_, many) = huge_header_requests(h.ctx.port)
    return ("20 KiB header: " + _http_case(h, big, "huge_header", "431", 0.5)
            + " / 120 headers: " + _http_case(h, many, "many_headers", "431", 0.5))


def case_bad_upgrade(h: Harness) -> str:
    """Requests tungstenite refuses: wrong version, no key, not websocket, HTTP/1.0."""
    out = []
    for label, payload in bad_upgrade_requests(h.ctx.port):
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


def _bad_frame_cases(h: Harness, prefix: str) -> str:
    """The bad_frames() whose label starts with `prefix`, each on its own connection."""
    out = []
    for label, data, codes in bad_frames():
        if label.startswith(prefix):
            out.append(label.removeprefix(prefix) + ": " + _frame_case(h, label, data, codes))
    return " / ".join(out)


def case_unmasked(h: Harness) -> str:
    (_, data, codes), = (f for f in bad_frames() if f[0] == "unmasked")
    return _frame_case(h, "unmasked", data, codes)


def case_reserved(h: Harness) -> str:
    return _bad_frame_cases(h, "reserved_")


def case_fragmented_control(h: Harness) -> str:
    return _bad_frame_cases(h, "control_")


def case_invalid_utf8(h: Harness) -> str:
    out = [_bad_frame_cases(h, "utf8_")]
    # A valid character split across fragments is one good text message.
    c = rawws.Client(h.ctx.port)
    pid = c.handshake()
    c.send(dict(good_frames())["utf8_split_valid"])
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
    return _bad_frame_cases(h, "length_")


def case_ping_between_fragments(h: Harness) -> str:
    """RFC 6455 5.4: control frames may come between fragments; the pong answers the ping and
    the message is the fragments alone (the built-in glues the ping payload in)."""
    c = rawws.Client(h.ctx.port)
    pid = c.handshake()
    c.send(dict(good_frames())["ping_between_fragments"])
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
    data = continuation_flood(frames_n)
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
