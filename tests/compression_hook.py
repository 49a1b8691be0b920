"""compression: permessage-deflate (RFC 7692) against third-party peers, beside
tests/godot/compression.gd.

1. A rust server with compression on, echoing (raw mode, compression_threshold 64):
   - Python's `websockets` as the client (it offers permessage-deflate by default): the answer
     names the extension and text and binary messages of every kind come back intact;
   - the raw client (tests/rawws.py): a message compressed here with zlib is read, a long echo
     comes back with RSV1 set and inflates to what was sent, a short one comes back plain;
   - a decompression bomb (16 MiB of zeros in about 16 KiB) is refused with close code 1009.
2. `websockets` as the server on port+1 (it accepts the offer): the rust client connects with
   compression on, the server sends the same messages and reads them back echoed; its request
   carried the offer, its answer the extension.
"""

from __future__ import annotations

import os
import threading
import time
import zlib

import pywebsockets
import rawws

TAIL = b"\x00\x00\xff\xff"


def deflate(data: bytes) -> bytes:
    """One message as permessage-deflate sends it: a sync flush, the tail removed."""
    co = zlib.compressobj(wbits=-15)
    out = co.compress(data) + co.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL)
    return out[:-4]


def inflate(data: bytes) -> bytes:
    return zlib.decompressobj(wbits=-15).decompress(data + TAIL)


def messages() -> list:
    """Text and binary, short (sent plain), compressible, incompressible, empty."""
    text = "".join(f'{{"id": {i}, "name": "player {i}", "pos": [{i}.5, {-i}.25]}},'
                   for i in range(200))
    return ["hi", text, bytes(range(256)) * 400, os.urandom(20000), b"", "é" * 3000]


def echo_mismatches(ws) -> list:
    """Sends each of messages() on `ws` and reads its echo; what did not come back intact."""
    bad = []
    for msg in messages():
        ws.send(msg)
        back = ws.recv(timeout=5)
        if back != msg:
            bad.append(f"{type(msg).__name__} of {len(msg)}: got {type(back).__name__} "
                       f"of {len(back)}")
    return bad


def compression_hook(ctx) -> list:
    checks: list = []
    try:
        failed = pywebsockets.provide(ctx)
        if failed:
            return failed
        from websockets.sync.client import connect
        from websockets.sync.server import serve
        server_side(ctx, connect, checks)
        ctx.barrier("py_server_side_done")
        client_side(ctx, serve, checks)
    finally:
        ctx.barrier("py_server_side_done")
        ctx.barrier("py_client_side_done")
    return checks


def server_side(ctx, connect, checks: list) -> None:
    url = f"ws://127.0.0.1:{ctx.port}/"
    with connect(url, max_size=None, open_timeout=5, close_timeout=3) as ws:
        answer = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        checks.append((answer.startswith("permessage-deflate"), "py.ws_client_negotiated",
                       f"answer {answer!r}"))
        bad = echo_mismatches(ws)
        checks.append((not bad, "py.ws_client_echo_intact", "; ".join(bad)))

    c = rawws.Client(ctx.port)
    status = c.upgrade("/", ["Sec-WebSocket-Extensions: permessage-deflate"])
    answer = c.headers.get("sec-websocket-extensions", "")
    checks.append((status.startswith("HTTP/1.1 101") and answer == "permessage-deflate",
                   "py.raw_negotiated", f"{status!r}, answer {answer!r}"))
    payload = b"compress me " * 1000
    c.send(rawws.encode_frame(2, deflate(payload), rsv=4))
    frame = c.recv_frame(5)
    rsv1 = c.last_rsv
    got = inflate(frame.payload) if rsv1 == 4 else frame.payload
    checks.append((rsv1 == 4 and got == payload, "py.raw_echo_compressed",
                   f"RSV bits {rsv1}, {len(frame.payload)} bytes on the wire, "
                   f"inflated intact: {got == payload}"))
    c.send_frame(2, b"tiny")
    frame = c.recv_frame(5)
    checks.append((c.last_rsv == 0 and frame.payload == b"tiny", "py.raw_short_plain",
                   f"RSV bits {c.last_rsv}, payload {frame.payload!r}"))
    c.close()

    bomb = deflate(bytes(16 << 20))
    c = rawws.Client(ctx.port)
    c.upgrade("/", ["Sec-WebSocket-Extensions: permessage-deflate"])
    c.send(rawws.encode_frame(2, bomb, rsv=4))
    code, reason, how = c.read_close(5)
    checks.append((code == 1009, "py.bomb_refused_1009",
                   f"{len(bomb)} bytes inflating to 16 MiB: close {code} {reason!r} ({how})"))
    c.close()


def client_side(ctx, serve, checks: list) -> None:
    seen: dict = {}
    done = threading.Event()

    def handler(ws):
        seen["offer"] = ws.request.headers.get("Sec-WebSocket-Extensions", "")
        seen["answer"] = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        try:
            seen["bad"] = echo_mismatches(ws)
        except Exception as e:  # the check reports it
            seen["bad"] = [f"{type(e).__name__}: {e}"]
        done.set()

    with serve(handler, "127.0.0.1", ctx.port + 1, max_size=None) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        ctx.flag("py_server_ready")
        done.wait(30)
        time.sleep(0.2)  # let the handler's close go out before the server stops
        server.shutdown()
    offer, answer = seen.get("offer", "?"), seen.get("answer", "?")
    checks.append((offer.startswith("permessage-deflate"), "py.ws_server_got_offer",
                   f"offer {offer!r}"))
    checks.append((answer.startswith("permessage-deflate"), "py.ws_server_accepted",
                   f"answer {answer!r}"))
    bad = seen.get("bad", ["the rust client never connected"])
    checks.append((not bad, "py.ws_server_echo_intact", "; ".join(bad)))
