#!/usr/bin/env python3
"""Seed corpora for the fuzz targets in fuzz/ (scripts/fuzz.py writes them before a run):
the hostile tests' byte strings (tests/hostile_cases_wire.py, tests/hostile_cases_load.py,
imported, not copied), valid frames and handshakes made with tests/rawws.py, the test
certificates of tests/tls_certs.py as DER, and real Autobahn|Testsuite traffic (38 recorded
connections, fuzz/autobahn-capture.json.gz, scripts/capture_autobahn.py; names `ab_*`). The
seeds are made afresh, in each target's input format (see the target's header comment); of
them only the capture is committed.

    python3 scripts/fuzz_seeds.py [CORPUS_DIR]     # default fuzz/corpus
"""

from __future__ import annotations

import hashlib
import os
import struct
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import autobahn_seeds  # noqa: E402
import hostile_cases_load  # noqa: E402
import hostile_cases_wire  # noqa: E402
import rawws  # noqa: E402

ZERO = b"\0\0\0\0"
# The largest input scripts/fuzz.py gives these targets (its MAX_LEN): room for the capture.
ROOM = 16384
PORT = 9080
# Read-size bytes for fuzz/src/lib.rs `Splits`: none (reads as large as asked), one byte at a
# time, and a mix.
SPLITS = {"whole": b"", "bytewise": b"\x00" * 64, "mixed": bytes([0, 1, 2, 200, 5, 63, 250, 3])}


def prefixed(head: bytes) -> bytes:
    """`take_prefix`'s format: a little-endian u16 length, then the bytes."""
    return struct.pack("<H", len(head)) + head


def frames_client_sends() -> dict[str, bytes]:
    """Masked frame streams, as a client sends them."""
    f = rawws.encode_frame
    seeds: dict[str, bytes] = {}
    for label, data, _codes in hostile_cases_wire.bad_frames():
        seeds[f"hostile_{label}"] = data
    for label, data in hostile_cases_wire.good_frames():
        seeds[f"hostile_{label}"] = data
    seeds["hostile_continuation_flood"] = hostile_cases_wire.continuation_flood(50)
    seeds["hostile_fast_sender"] = b"".join(hostile_cases_load.sequenced_frame(i, 16)
                                            for i in range(20))
    seeds["hostile_fast_sender_large"] = hostile_cases_load.sequenced_frame(0, 1000)
    # Valid traffic of the shapes Autobahn's cases 1-7 send: every length encoding, text and
    # binary, fragments, control frames between them, close codes and reasons.
    seeds["lengths"] = b"".join(f(2, b"x" * n) for n in (0, 1, 125, 126, 127, 1000, 65535))
    seeds["length_65536"] = f(2, b"y" * 65536)
    seeds["text_utf8"] = f(1, "κόσμε — 🎮".encode()) + f(1, b"")
    seeds["fragmented_text"] = (f(1, "h\u00e9".encode()[:2], fin=False) + f(9, b"ping")
                                + f(0, "h\u00e9".encode()[2:] + b"llo", fin=False)
                                + f(10, b"") + f(0, b"!", fin=True))
    seeds["pings"] = b"".join(f(9, bytes([i]) * i) for i in range(0, 126, 25))
    # More pings in one read than the protocol queues pongs for (MAX_PENDING_PONGS, 64): the
    # rest are answered with one pong for the latest (source coverage: never reached before).
    seeds["ping_flood"] = b"".join(f(9, struct.pack(">H", i)) for i in range(70))
    seeds["close_1000"] = f(2, b"bye") + f(8, struct.pack(">H", 1000) + b"done")
    seeds["close_empty"] = f(8, b"")
    seeds["close_4999"] = f(8, struct.pack(">H", 4999) + "ü".encode() * 61)
    seeds["close_bad_code"] = f(8, struct.pack(">H", 1005))
    seeds["close_then_data"] = f(8, struct.pack(">H", 1001)) + f(2, b"late")
    seeds["zero_key"] = f(2, b"plain", key=ZERO) + f(1, b"text", key=ZERO)
    return seeds


def unmask(stream: bytes) -> bytes:
    """The same frames as a server sends them (unmasked)."""
    out = b""
    while stream:
        got = rawws.parse_frame(stream)
        if got is None:
            return out + stream  # a deliberately cut or huge frame: keep its bytes raw
        fr, n = got
        b0 = stream[0]
        out += rawws.encode_frame(b0 & 0x0F, fr.payload, fin=bool(b0 & 0x80), rsv=(b0 >> 4) & 7,
                                  mask=False)
        stream = stream[n:]
    return out


def frame_decoder_seeds() -> dict[str, bytes]:
    seeds = {}
    for label, stream in frames_client_sends().items():
        for split, sizes in SPLITS.items():
            server = 7 << 1  # server role, 1 MiB limit
            small = 2 << 1  # server role, 4-byte limit
            seeds[f"srv_{label}_{split}"] = bytes([server]) + prefixed(sizes) + stream
            seeds[f"srv_small_{label}_{split}"] = bytes([small]) + prefixed(sizes) + stream
            seeds[f"cli_{label}_{split}"] = bytes([server | 1]) + prefixed(sizes) + unmask(stream)
    # Recorded Autobahn traffic without compression, both ways, 1 MiB and 125-byte limits.
    for c in autobahn_seeds.load():
        if c.deflate is None:
            for split in ("whole", "mixed"):
                sizes = prefixed(SPLITS[split])
                for s0, frames in ((7 << 1, c.client_frames), (7 << 1 | 1, c.server_frames),
                                   (3 << 1, c.client_frames)):
                    seeds[f"ab_{c.case}_{split}_{s0}"] = (bytes([s0]) + sizes
                                                          + frames[:ROOM - 1 - len(sizes)])
    return seeds


# fuzz_targets/protocol.rs operations: (kind, argument) pairs.
READ, PAUSE, RESUME, SEND, TRANSMIT, WRITTEN, ADVANCE, ASK_CLOSE, CLOSE, EOF = range(10)
OP_PATTERNS = {
    "none": [],
    "bytewise": [(READ, 0)] * 40,
    "chatty": [(SEND, 1), (TRANSMIT, 0), (READ, 5), (SEND, 0x84), (WRITTEN, 0), (READ, 250),
               (TRANSMIT, 0), (WRITTEN, 0), (ADVANCE, 6), (READ, 10)],
    "paused": [(READ, 3), (PAUSE, 1), (READ, 0), (ADVANCE, 4), (RESUME, 0), (READ, 255)],
    "game_closes": [(READ, 20), (SEND, 2), (CLOSE, 0x10), (TRANSMIT, 0), (READ, 7),
                    (WRITTEN, 0), (ADVANCE, 7), (READ, 255), (EOF, 0)],
    "heartbeat": [(ADVANCE, 4), (TRANSMIT, 0), (WRITTEN, 0), (READ, 30), (ADVANCE, 4),
                  (ADVANCE, 6)],
}


def protocol_seeds() -> dict[str, bytes]:
    seeds = {}
    streams = frames_client_sends()
    for label in ("hostile_utf8_split_valid", "hostile_ping_between_fragments",
                  "hostile_unmasked", "hostile_utf8_fragmented", "hostile_length_2^63",
                  "hostile_continuation_flood", "hostile_fast_sender", "fragmented_text",
                  "pings", "ping_flood", "close_1000", "close_empty", "close_then_data", "lengths"):
        stream = streams[label]
        for name, ops in OP_PATTERNS.items():
            op_bytes = b"".join(bytes(op) for op in ops)
            server = 3 << 1  # server, 65535-byte limit, no heartbeat
            beat = server | (1 << 3)  # heartbeat every 100 ms
            seeds[f"srv_{label}_{name}"] = bytes([server]) + prefixed(op_bytes) + stream
            seeds[f"cli_{label}_{name}"] = bytes([server | 1]) + prefixed(op_bytes) + unmask(stream)
            if name == "heartbeat":
                seeds[f"srv_beat_{label}"] = bytes([beat]) + prefixed(op_bytes) + stream
    for c in autobahn_seeds.load():
        if c.deflate is None:
            for name in ("none", "chatty"):
                ops = prefixed(b"".join(bytes(op) for op in OP_PATTERNS[name]))
                for s0, frames in ((3 << 1, c.client_frames), (3 << 1 | 1, c.server_frames)):
                    seeds[f"ab_{c.case}_{name}_{s0}"] = (bytes([s0]) + ops
                                                         + frames[:ROOM - 1 - len(ops)])
    return seeds


# fuzz_targets/deflate.rs: indexes into its REPEAT, and the program's chunks.
R1, R2, R16, R300, R5000, R70000 = 0, 8, 12, 13, 14, 15


def deflated(plain_unit: bytes, repeat: int = 0, text: bool = False, level: int = 6,
             final: bool = False, keep_tail: bool = False, parts: int = 1, ping: bool = False,
             bits: int = 15) -> bytes:
    """A message the target compresses (as a peer would): `plain_unit` repeated
    REPEAT[repeat] times, `parts` frames, a ping between the first two, a window of `bits`."""
    params = level | (0x10 if final else 0) | (0x20 if keep_tail else 0)
    opts = (parts - 1) | (0x04 if ping else 0)
    return (bytes([0x80 if text else 0, params, opts, bits - 9])
            + struct.pack("<H", len(plain_unit)) + bytes([repeat]) + plain_unit)


def plain_message(unit: bytes, repeat: int = 0, text: bool = False, parts: int = 1) -> bytes:
    return (bytes([3 | (0x80 if text else 0), parts - 1]) + struct.pack("<H", len(unit))
            + bytes([repeat]) + unit)


def raw(data: bytes) -> bytes:
    return bytes([4, len(data)]) + data


def deflate_seeds() -> dict[str, bytes]:
    """Compressed traffic of the shapes browsers and Autobahn's cases 12 and 13 send: text
    and binary messages of 16 B to 128 KiB, sync flush without the tail, with and without
    context takeover, windows 9 to 15; the RFC 7692 examples as raw frames; messages over the
    limit, a decompression bomb, corrupt ones."""
    text16 = b"Hello, world! 12"
    game = bytes(range(256)) * 4
    autobahn = b"".join(deflated(text16, r, text=True) for r in (R1, R2, R16, R300)) + b"".join(
        deflated(game, r) for r in (R1, R16))
    # RFC 7692 7.2.3.1-3: "Hello" compressed, referring back, and in a stored block, as a
    # server sends them (unmasked).
    rfc = (raw(b"\xc1\x07\xf2\x48\xcd\xc9\xc9\x07\x00")
           + raw(b"\xc1\x05\xf2\x00\x11\x00\x00")
           + raw(b"\xc1\x0b\x00\x05\x00\xfa\xff\x48\x65\x6c\x6c\x6f\x00"))
    programs = {
        "autobahn_12": autobahn,
        "big": deflated(text16, R300, text=True) + deflated(text16, R5000),
        "bomb": deflated(b"\0" * 1024, R70000),
        "fragmented": deflated(game, R16, parts=3, ping=True) + deflated(text16, R1, text=True,
                                                                         parts=2),
        "final_block": deflated(text16, text=True, final=True) + deflated(text16, text=True),
        "tail_kept": deflated(game, keep_tail=True) + deflated(game),
        "small_window": deflated(game, R16, bits=9) + deflated(game, bits=9),
        "stored": deflated(game, R16, level=0) + deflated(b"", level=0),
        "empty": deflated(b"") + deflated(b"", text=True) + deflated(b""),
        "mixed": (plain_message(b"plain", text=True) + deflated(text16, text=True)
                  + bytes([5, 4]) + b"ping" + deflated(text16, text=True)),
        "bad_utf8": deflated(b"\xc3\x28 not text", text=True),
        "corrupt": bytes([6, 6, 0, 6, 3, 0x55]) + struct.pack("<H", 16) + b"\0" + text16,
        "rsv_continuation": bytes([7, 0]) + struct.pack("<H", 16) + b"\0" + text16,
        "close": deflated(text16, text=True) + bytes([0x78]) + bytes([3, 0, 0, 0, 0]),
    }
    seeds = {}
    for label, program in programs.items():
        for name in ("none", "bytewise", "chatty", "paused"):
            ops = b"".join(bytes(op) for op in OP_PATTERNS[name])
            for server in (0, 1):
                # Limits 65535 B (index 6) and 1 MiB (7 with bit 0x20, else 8 KiB), context
                # takeover both ways, windows of 15 bits; our messages compressed from 64 B at
                # level 6.
                for limit, s1, s0_extra in ((6, 0x3F | 0x80, 0), (7, 0x3F | 0x80, 0xE0),
                                            (3, 0x09 | 0x80, 0x80)):
                    s0 = server | limit << 1 | s0_extra
                    seeds[f"{label}_{name}_{server}_{limit}_{s0_extra}"] = (
                        bytes([s0, s1, 6]) + prefixed(ops) + program)
    # The RFC examples are a server's frames: the client's role.
    for name in ("none", "bytewise"):
        ops = b"".join(bytes(op) for op in OP_PATTERNS[name])
        seeds[f"rfc_7692_{name}"] = bytes([1 | 6 << 1, 0x3F, 6]) + prefixed(ops) + rfc
    # Recorded Autobahn traffic (cases 12 and 13) as raw chunks, with the parameters the
    # two sides agreed, in both roles: wstest's masked frames to a server, the addon's
    # echoes (compressed at level 6) to a client. 1 MiB limit.
    for c in autobahn_seeds.load():
        a = c.deflate
        if a is None:
            continue
        s1 = (a["server_max_window_bits"] - 8) | (a["client_max_window_bits"] - 8) << 3
        for name in ("none", "chatty"):
            ops = prefixed(b"".join(bytes(op) for op in OP_PATTERNS[name]))
            for server, frames in ((0, c.client_frames), (1, c.server_frames)):
                s0 = (server | 7 << 1 | 0x20 | (0x40 if a["server_no_context_takeover"] else 0)
                      | (0x80 if a["client_no_context_takeover"] else 0))
                chunks = autobahn_seeds.raw_chunks(frames, ROOM - 3 - len(ops))
                seeds[f"ab_{c.case}_{name}_{server}"] = bytes([s0, s1, 6]) + ops + chunks
    return seeds


def extension_seeds() -> dict[str, bytes]:
    """Offers as browsers and Autobahn's case 13 make them, answers as servers give them."""
    values = [
        "permessage-deflate; client_max_window_bits",  # Chromium, Firefox, Safari
        "permessage-deflate",
        "permessage-deflate; client_no_context_takeover; client_max_window_bits",
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; server_max_window_bits=9; client_max_window_bits=9",
        "permessage-deflate; client_max_window_bits=15; server_max_window_bits=\"10\"",
        "permessage-deflate; server_max_window_bits=16, permessage-deflate",
        "x-webkit-deflate-frame, permessage-deflate; client_max_window_bits\nfoo; bar=1",
        "permessage-deflate; server_no_context_takeover; client_max_window_bits=10",
        "permessage-deflate; client_max_window_bits=8; server_max_window_bits=8",
        "PerMessage-Deflate; Server_No_Context_Takeover",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate;;",
        "permessage-deflate, permessage-deflate",
        "",
    ]
    # wstest's offers and the addon's answers to them, recorded (cases 12 and 13).
    captured = autobahn_seeds.load()
    values += sorted({v for c in captured for v in (c.offer, c.answer) if v})
    return {f"ext_{i}_{s}": bytes([s]) + v.encode()
            for i, v in enumerate(values) for s in (0x06, 0x86, 0xC0)}


def http_request_seeds() -> dict[str, bytes]:
    good = rawws.upgrade_request(PORT)
    requests = {
        "good": good,
        "good_with_frames": good + rawws.encode_frame(2, b"early") + rawws.encode_frame(8, b""),
        "good_lf_only": good.replace(b"\r\n", b"\n") + rawws.encode_frame(2, b"early"),
        "forwarded": rawws.upgrade_request(PORT, headers=[
            "X-Forwarded-For: 1.2.3.4, 203.0.113.7", "X-Forwarded-For: 10.0.0.5, [2001:db8::1]"]),
        "protocols": rawws.upgrade_request(PORT, headers=["Sec-WebSocket-Protocol: x, godot"]),
        "query": rawws.upgrade_request(PORT, path="/game?token=abc&x=%20"),
        "forwarded_port": rawws.upgrade_request(PORT, headers=[
            "X-Forwarded-For: 203.0.113.7", "X-Forwarded-Port: 51234"]),
        "forwarded_bad_port": rawws.upgrade_request(PORT, headers=[
            "X-Forwarded-For: 203.0.113.7", "X-Forwarded-Port: 99999"]),
        # More headers than the parser's 96 slots: refused as too large (431).
        "many_headers": rawws.upgrade_request(PORT, headers=[f"X-{i}: {i}" for i in range(97)]),
    }
    for label, payload in hostile_cases_wire.garbage_payloads():
        requests[f"hostile_garbage_{label}"] = payload
    for label, payload in hostile_cases_wire.bad_upgrade_requests(PORT):
        requests[f"hostile_{label}"] = payload
    for label, payload in hostile_cases_wire.huge_header_requests(PORT):
        requests[f"hostile_{label}"] = payload
    seeds = {}
    # wstest's requests, with the first frames after them; whole and in mixed reads, no proxy
    # trusted and the peer trusted (the heads differ little: not every setting).
    for c in autobahn_seeds.load():
        for split in ("whole", "mixed"):
            for settings in (0, 0b0011):
                seeds[f"ab_{c.case}_{split}_{settings}"] = (
                    bytes([settings]) + prefixed(SPLITS[split]) + c.request
                    + c.client_frames[:1024])
    for label, req in requests.items():
        for split, sizes in SPLITS.items():
            # Settings: no proxy trusted; the peer not trusted; every address trusted; the
            # peer trusted alone, and in a range (the last two: a client written in the
            # headers is chosen, so X-Forwarded-Port is read; none reached it before).
            for settings in (0, 0b0011, 0b1110, 0b0010, 0b0101):
                seeds[f"{label}_{split}_{settings}"] = bytes([settings]) + prefixed(sizes) + req
    return seeds


def http_response_seeds() -> dict[str, bytes]:
    head = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Accept: @ACCEPT@\r\n")
    ident = rawws.encode_frame(2, struct.pack("<i", 12345), mask=False)
    responses = {
        "ok": (head + "\r\n").encode() + ident,
        "ok_protocol": (head + "Sec-WebSocket-Protocol: godot\r\n\r\n").encode() + ident,
        "ok_ping_first": (head + "\r\n").encode() + rawws.encode_frame(9, b"p", mask=False) + ident,
        "ok_then_frames": (head + "\r\n").encode() + ident + rawws.encode_frame(2, b"x", mask=False),
        "ok_bare_lf": (head + "\r\n").replace("\r\n", "\n").encode() + ident,
        "close_first": (head + "\r\n").encode() + rawws.encode_frame(8, b"\x03\xe8", mask=False),
        "bad_id": (head + "\r\n").encode() + rawws.encode_frame(2, b"\x01\0\0\0", mask=False),
        "refused": b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
        "wrong_accept": (head.replace("@ACCEPT@", "AAAA") + "\r\n").encode() + ident,
        "deflate": (head + "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n").encode()
        + ident,
        "deflate_not_ascii": head.encode()
        + b"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=\xe9\r\n\r\n"
        + ident,
    }
    seeds = {}
    # The addon's answers to wstest (raw mode, no id message), with and without compression
    # asked for.
    for c in autobahn_seeds.load():
        for split in ("whole", "mixed"):
            sizes = prefixed(SPLITS[split])
            answer = (c.response + c.server_frames)[:8192 - 1 - len(sizes)]
            for settings in (0b0001, 0b1001):
                seeds[f"ab_{c.case}_{split}_{settings}"] = bytes([settings]) + sizes + answer
    for label, resp in responses.items():
        for split, sizes in SPLITS.items():
            # Settings bits: Godot's protocol off, sub-protocols asked, wss, compression.
            for settings in (0, 0b010, 0b101, 0b1000):
                seeds[f"{label}_{split}_{settings}"] = bytes([settings]) + prefixed(sizes) + resp
    return seeds


def close_payload_seeds() -> dict[str, bytes]:
    return {
        "empty": b"",
        "one_byte": b"\x03",
        "normal": struct.pack(">H", 1000) + b"bye",
        "app": struct.pack(">H", 4001) + "é".encode() * 70,
        "reserved": struct.pack(">H", 1005),
        "bad_utf8": struct.pack(">H", 1000) + b"\xc3\x28",
        "long": struct.pack(">H", 3000) + b"r" * 200,
    }


def url_seeds() -> dict[str, bytes]:
    urls = ["ws://127.0.0.1:9080", "wss://example.com/game?room=3", "127.0.0.1:9080",
            "localhost", "ws://[::1]:9080/x", "WS://h?q=1", "ws://h:1/p#frag", "ws://u@h",
            "ws://[::1", "ws://h:99999", "wss://[fe80::1%25eth0]:443/", "ws://a:b:80/"]
    return {f"url_{i}": u.encode() for i, u in enumerate(urls)}


def proxy_seeds() -> dict[str, bytes]:
    return {
        "chain": b"127.0.0.1\n127.0.0.1\n10.0.0.0/8\n\n1.2.3.4, 203.0.113.7, 10.0.0.5",
        "v6": b"::ffff:10.1.1.1\nfd00::/8\n10.0.0.0/8\n\n[2001:db8::1], fd12::1\n6.6.6.6",
        "all": b"8.8.8.8\n0.0.0.0/0\n::/0\n\ngarbage, 1.1.1.1",
        "host_bits": b"10.9.9.9\n10.9.9.9/0\n192.168.1.77/24\n\n1.2.3.4",
        # X-Forwarded-Port (`port ` lines): paired from the right with the address chosen; a
        # value that is not a port (source coverage: no seed had one, none was reached).
        "ports": b"127.0.0.1\n127.0.0.1\n10.0.0.0/8\n\n1.2.3.4, 10.0.0.5\nport 51234, 443",
        "bad_port": b"10.0.0.5\n10.0.0.0/8\n\n203.0.113.7\nport 0x50",
        "port_zero": b"10.0.0.5\n10.0.0.0/8\n\n203.0.113.7\nport 443\nport 0",
    }


def proxy_protocol_seeds() -> dict[str, bytes]:
    """PROXY headers as HAProxy, nginx and AWS NLB send them, each followed by a request."""
    import struct
    get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    v4 = bytes([10, 0, 0, 1, 10, 0, 0, 2]) + struct.pack(">HH", 51234, 9080)
    v6 = bytes(15) + b"\x01" + bytes(15) + b"\x02" + struct.pack(">HH", 51234, 9080)
    tlv = b"\x04" + struct.pack(">H", 3) + b"abc"
    return {
        "v1_tcp4": b"PROXY TCP4 192.0.2.1 192.0.2.2 51234 9080\r\n" + get,
        "v1_tcp6": b"PROXY TCP6 2001:db8::1 2001:db8::2 51234 9080\r\n" + get,
        "v1_unknown": b"PROXY UNKNOWN\r\n" + get,
        "v2_tcp4": sig + b"\x21\x11" + struct.pack(">H", len(v4)) + v4 + get,
        "v2_tcp6_tlv": sig + b"\x21\x21" + struct.pack(">H", len(v6 + tlv)) + v6 + tlv + get,
        "v2_local": sig + b"\x20\x00" + struct.pack(">H", 0) + get,
        # Each of the parser's other answers once, for the mutator to start from: v1 with
        # an IPv4-mapped source, a UDP and a UNIX v2 header, a mapped v6 address, the longest
        # v2 body, and every refusal (too long, malformed in each way it names, incomplete).
        "v1_mapped": b"PROXY TCP6 ::ffff:10.0.0.1 ::1 0 65535\r\n",
        "v2_udp4": sig + b"\x21\x12" + struct.pack(">H", len(v4)) + v4,
        "v2_unix": sig + b"\x21\x31" + struct.pack(">H", 216) + b"/s".ljust(216, b"\0"),
        "v2_mapped": sig + b"\x21\x21" + struct.pack(">H", 36) + bytes(10) + b"\xff\xff"
                     + bytes([10, 0, 0, 1]) + bytes(16) + struct.pack(">HH", 1, 2),
        "v2_longest": sig + b"\x21\x11" + struct.pack(">H", 2048) + v4.ljust(2048, b"\x04"),
        "v2_too_long": sig + b"\x21\x11" + struct.pack(">H", 2049) + v4,
        "v2_short_body": sig + b"\x21\x21" + struct.pack(">H", 12) + v4,
        "v2_version_1": sig + b"\x11\x11" + struct.pack(">H", 12) + v4,
        "v2_command_2": sig + b"\x22\x11" + struct.pack(">H", 12) + v4,
        "v2_family_4": sig + b"\x21\x41" + struct.pack(">H", 12) + v4,
        "v2_truncated": sig + b"\x21\x11" + struct.pack(">H", 12) + v4[:5],
        "v1_too_long": b"PROXY UNKNOWN " + b"x" * 100 + b"\r\n",
        "v1_bare_lf": b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
        "v1_not_ascii": b"PROXY TCP4 1.2.3.\xff 5.6.7.8 1 2\r\n",
        "v1_four_fields": b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
        "v1_udp": b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "v1_wrong_family": b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
        "v1_port_zero_led": b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
        "v1_port_over": b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",
        "v1_truncated": b"PROXY TCP4 1.2.3.4 5.6",
        "not_a_header": get,
    }


def x509_seeds() -> dict[str, bytes]:
    """Every certificate tests/tls_certs.py makes, as DER (needs `openssl`)."""
    import base64
    import tls_certs
    seeds = {}
    with tempfile.TemporaryDirectory() as d:
        try:
            tls_certs.make_pki(d)
        except (OSError, RuntimeError) as e:
            print(f"x509 seeds: no certificates ({e})", file=sys.stderr)
            return seeds
        for name in sorted(os.listdir(d)):
            if not name.endswith(".pem"):
                continue
            text = open(os.path.join(d, name)).read()
            for i, block in enumerate(text.split("-----BEGIN CERTIFICATE-----")[1:]):
                b64 = block.split("-----END CERTIFICATE-----")[0]
                seeds[f"{name[:-4]}_{i}"] = base64.b64decode("".join(b64.split()))
    return seeds


SEEDS = {
    "frame_decoder": frame_decoder_seeds,
    "protocol": protocol_seeds,
    "http_request": http_request_seeds,
    "http_response": http_response_seeds,
    "close_payload": close_payload_seeds,
    "url": url_seeds,
    "proxy_headers": proxy_seeds,
    "proxy_protocol": proxy_protocol_seeds,
    "deflate": deflate_seeds,
    "extension": extension_seeds,
    "x509": x509_seeds,
}


def write_seeds(corpus: str, targets: list[str] | None = None) -> dict[str, int]:
    """Writes each target's seeds into corpus/<target>/ (named by content hash, as libFuzzer
    names its own). Returns the number of seeds per target."""
    counts = {}
    for target, make in SEEDS.items():
        if targets and target not in targets:
            continue
        d = os.path.join(corpus, target)
        os.makedirs(d, exist_ok=True)
        seeds = make()
        for data in seeds.values():
            with open(os.path.join(d, "seed-" + hashlib.sha1(data).hexdigest()), "wb") as f:
                f.write(data)
        counts[target] = len(seeds)
    return counts


def main() -> int:
    corpus = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "fuzz", "corpus")
    for target, n in write_seeds(corpus).items():
        print(f"{target}: {n} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
