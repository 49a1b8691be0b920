"""The recorded Autobahn|Testsuite connections (fuzz/autobahn-capture.json.gz, made by
scripts/capture_autobahn.py) cut into what the fuzz seeds are made of: each side's HTTP head
and the frames after it, and the permessage-deflate parameters the two sides agreed.
scripts/fuzz_seeds.py puts them in each target's input format.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAPTURE = os.path.join(ROOT, "fuzz", "autobahn-capture.json.gz")


@dataclass
class Connection:
    case: str
    request: bytes  # the client's upgrade request, up to its empty line
    client_frames: bytes  # masked, as the client sent them (cut at the capture's limit)
    response: bytes  # the server's 101 with `@ACCEPT@` for its Sec-WebSocket-Accept value
    server_frames: bytes
    # The agreed permessage-deflate parameters (RFC 7692 section 7.1), None without it.
    deflate: dict[str, int | bool] | None

    @property
    def offer(self) -> str | None:
        return header(self.request, "sec-websocket-extensions")

    @property
    def answer(self) -> str | None:
        return header(self.response, "sec-websocket-extensions")


def header(head: bytes, name: str) -> str | None:
    m = re.search(rb"^" + name.encode() + rb":[ \t]*([^\r\n]*)", head, re.I | re.M)
    return m.group(1).decode("latin-1") if m else None


def split_head(data: bytes) -> tuple[bytes, bytes]:
    at = data.find(b"\r\n\r\n")
    return (data, b"") if at < 0 else (data[:at + 4], data[at + 4:])


def agreed(answer: str | None) -> dict[str, int | bool] | None:
    """The parameters of a `permessage-deflate` answer; window bits 15 when not named."""
    if not answer or not answer.lower().startswith("permessage-deflate"):
        return None
    params = {"server_no_context_takeover": False, "client_no_context_takeover": False,
              "server_max_window_bits": 15, "client_max_window_bits": 15}
    for p in answer.split(";")[1:]:
        name, _, value = p.strip().partition("=")
        name = name.lower()
        if name.endswith("_max_window_bits"):
            params[name] = int(value.strip('"')) if value else 15
        elif name in params:
            params[name] = True
    return params


def load() -> list[Connection]:
    """The recorded connections, or none when the capture is missing."""
    if not os.path.exists(CAPTURE):
        return []
    with gzip.open(CAPTURE, "rt") as f:
        capture = json.load(f)
    out = []
    for c in capture["connections"]:
        request, client_frames = split_head(base64.b64decode(c["client"]))
        response, server_frames = split_head(base64.b64decode(c["server"]))
        response = re.sub(rb"(?im)^(sec-websocket-accept:[ \t]*)\S+", rb"\1@ACCEPT@", response)
        out.append(Connection(c["case"], request, client_frames, response, server_frames,
                              agreed(header(response, "sec-websocket-extensions"))))
    return out


def raw_chunks(stream: bytes, room: int) -> bytes:
    """`stream` as fuzz_targets/deflate.rs raw chunks (tag 4, a length byte, the bytes), in
    at most `room` bytes."""
    out = bytearray()
    while stream and len(out) + 3 <= room:
        n = min(255, len(stream), room - len(out) - 2)
        out += bytes([4, n]) + stream[:n]
        stream = stream[n:]
    return bytes(out)
