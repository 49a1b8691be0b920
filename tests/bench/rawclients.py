#!/usr/bin/env python3
"""Many raw WebSocket clients in one asyncio process, driven over stdin/stdout.

A raw client is a valid peer for a Godot WebSocket multiplayer server: it does the HTTP upgrade,
reads the 4-byte peer id the server sends first, and then reads (counting the binary messages
it gets) and, when told, sends a message at a fixed rate. Used by run_bench.py for the
idle-connection, fan-out and game-tick workloads, so the
clients cost the machine far less than Godot clients would and are the same for every server
class.

    python3 tests/bench/rawclients.py PORT [--concurrency 8] [--deflate] [--inflate-every K]

--deflate: every client offers permessage-deflate (`permessage-deflate; client_max_window_bits`,
as browsers do) and counts the compressed messages (RSV1); it never compresses what it sends.
With --inflate-every K, one client in K also inflates every message it gets (zlib, context
takeover unless the server declined it) and counts the decompressed bytes and any failure, so
the payload is checked without every client paying for zlib.

Commands, one per line on stdin; each is answered by one line on stdout:
    grow N     open connections until N are ready (got their id) -> `ok N SECONDS` or `err ...`
    reset      zero the message counters                           -> `ok`
    count      -> `count MESSAGES BYTES READY CLOSED COMPRESSED NEGOTIATED INFLATED
                  INFLATED_BYTES INFLATE_ERRORS` (BYTES: payload as on the wire; COMPRESSED:
                  messages with RSV1; NEGOTIATED: upgrades answered with permessage-deflate;
                  INFLATED*: the checking clients' messages and their decompressed bytes)
    send HZ SIZE  every client starts sending a SIZE-byte binary message HZ times a second
               (masked, as a client must; clients start at spread-out times)  -> `ok`
    stop       stops the senders                                   -> `ok SENT`
    quit       close everything and exit                           -> `ok`
Standard library only.
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
import time
import zlib


class Stats:
    def __init__(self) -> None:
        self.ready = 0
        self.closed = 0
        self.sent = 0
        self.opened = 0
        self.negotiated = 0
        self.reset_received()

    def reset_received(self) -> None:
        """Zeroes the counts of what was received (the `reset` command); the connection
        counts stay."""
        self.messages = 0
        self.bytes = 0
        self.compressed = 0
        self.inflated = 0
        self.inflated_bytes = 0
        self.inflate_errors = 0


class RawClient:
    """One connection. Server frames are unmasked; we never send anything after the upgrade."""

    def __init__(self, stats: Stats, deflate: bool = False, inflate: bool = False) -> None:
        self.stats = stats
        self.deflate = deflate
        self.inflate = inflate
        self.takeover = True  # the server keeps its compression context between messages
        self.inflater = None
        self.got_id: asyncio.Future = asyncio.get_running_loop().create_future()
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task | None = None

    async def open(self, port: int, timeout: float) -> None:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), timeout)
        self.writer = writer
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      "Sec-WebSocket-Version: 13\r\n"
                      + ("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
                         if self.deflate else "") + "\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"upgrade refused: {head[:80]!r}")
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "sec-websocket-extensions" and \
                    "permessage-deflate" in value:
                self.stats.negotiated += 1
                self.takeover = "server_no_context_takeover" not in value
        self.task = asyncio.get_running_loop().create_task(self._read(reader))
        await asyncio.wait_for(asyncio.shield(self.got_id), timeout)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        buf = bytearray()
        first = True
        st = self.stats
        try:
            while True:
                chunk = await reader.read(262144)
                if not chunk:
                    break
                buf += chunk
                pos = 0
                n = len(buf)
                while n - pos >= 2:
                    b1 = buf[pos + 1] & 0x7F
                    hdr = 2
                    if b1 == 126:
                        if n - pos < 4:
                            break
                        b1 = int.from_bytes(buf[pos + 2:pos + 4], "big")
                        hdr = 4
                    elif b1 == 127:
                        if n - pos < 10:
                            break
                        b1 = int.from_bytes(buf[pos + 2:pos + 10], "big")
                        hdr = 10
                    if n - pos < hdr + b1:
                        break
                    opcode = buf[pos] & 0x0F
                    if first:
                        first = False
                        if not self.got_id.done():
                            self.got_id.set_result(bytes(buf[pos + hdr:pos + hdr + b1]))
                    elif opcode in (1, 2):
                        st.messages += 1
                        st.bytes += b1
                        rsv1 = buf[pos] & 0x40
                        if rsv1:
                            st.compressed += 1
                        if self.inflate:
                            self._inflate(bytes(buf[pos + hdr:pos + hdr + b1]), rsv1)
                    elif opcode == 8:
                        raise EOFError
                    pos += hdr + b1
                if pos:
                    del buf[:pos]
        except (EOFError, ConnectionError, OSError):
            pass
        finally:
            st.closed += 1
            if not self.got_id.done():
                self.got_id.set_exception(ConnectionError("closed before the id"))

    def _inflate(self, payload: bytes, compressed: bool) -> None:
        """Decompresses one unfragmented message (RFC 7692: append 00 00 ff ff) and counts it."""
        st = self.stats
        if not compressed:
            st.inflated += 1
            st.inflated_bytes += len(payload)
            return
        if self.inflater is None or not self.takeover:
            self.inflater = zlib.decompressobj(-15)
        try:
            out = self.inflater.decompress(payload + b"\x00\x00\xff\xff")
            st.inflated += 1
            st.inflated_bytes += len(out)
        except zlib.error:
            st.inflate_errors += 1
            self.inflater = None

    async def send_loop(self, hz: float, size: int) -> None:
        """One masked binary frame of `size` bytes every 1/hz s, from a random phase."""
        key = os.urandom(4)
        payload = bytes(i & 0xFF for i in range(size))
        masked = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
        head = bytes([0x82, 0x80 | size]) if size < 126 else \
            bytes([0x82, 0x80 | 126]) + size.to_bytes(2, "big")
        frame = head + key + masked
        loop = asyncio.get_running_loop()
        period = 1.0 / hz
        due = loop.time() + period * (int.from_bytes(os.urandom(2), "big") / 65536)
        try:
            while True:
                await asyncio.sleep(max(0.0, due - loop.time()))
                self.writer.write(frame)
                self.stats.sent += 1
                due += period
        except (OSError, ConnectionError):
            pass

    def close(self) -> None:
        if self.task:
            self.task.cancel()
        if self.writer:
            self.writer.transport.abort()


async def grow(port: int, clients: list, stats: Stats, target: int, concurrency: int,
               deflate: bool = False, inflate_every: int = 0) -> str:
    start = time.monotonic()
    sem = asyncio.Semaphore(concurrency)
    failures = 0

    async def one() -> None:
        nonlocal failures
        async with sem:
            for _attempt in range(5):
                k = stats.opened  # every attempt numbered once (concurrent ones too)
                stats.opened += 1
                c = RawClient(stats, deflate, deflate and inflate_every > 0 and k % inflate_every == 0)
                try:
                    await c.open(port, 15.0)
                    clients.append(c)
                    stats.ready += 1
                    return
                except (OSError, asyncio.TimeoutError, ConnectionError, asyncio.IncompleteReadError):
                    c.close()
                    failures += 1
                    await asyncio.sleep(0.05)

    need = target - len(clients)
    if need > 0:
        await asyncio.gather(*(one() for _ in range(need)))
    secs = time.monotonic() - start
    if len(clients) < target:
        return f"err only {len(clients)} of {target} connected ({failures} failures)"
    return f"ok {len(clients)} {secs:.2f}"


async def main() -> None:
    port = int(sys.argv[1])
    concurrency = 8
    if "--concurrency" in sys.argv:
        concurrency = int(sys.argv[sys.argv.index("--concurrency") + 1])
    deflate = "--deflate" in sys.argv
    inflate_every = 0
    if "--inflate-every" in sys.argv:
        inflate_every = int(sys.argv[sys.argv.index("--inflate-every") + 1])
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    stats = Stats()
    clients: list[RawClient] = []
    senders: list[asyncio.Task] = []

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    while True:
        line = (await reader.readline()).decode().strip()
        if not line:
            break
        cmd, *rest = line.split()
        if cmd == "grow":
            say(await grow(port, clients, stats, int(rest[0]), concurrency, deflate,
                           inflate_every))
        elif cmd == "reset":
            stats.reset_received()
            say("ok")
        elif cmd == "count":
            say(f"count {stats.messages} {stats.bytes} {stats.ready} {stats.closed} "
                f"{stats.compressed} {stats.negotiated} {stats.inflated} {stats.inflated_bytes} "
                f"{stats.inflate_errors}")
        elif cmd == "send":
            hz, size = float(rest[0]), int(rest[1])
            stats.sent = 0
            senders = [loop.create_task(c.send_loop(hz, size)) for c in clients]
            say("ok")
        elif cmd == "stop":
            for t in senders:
                t.cancel()
            await asyncio.gather(*senders, return_exceptions=True)
            senders = []
            say(f"ok {stats.sent}")
        elif cmd == "quit":
            break
        else:
            say(f"err unknown command {cmd}")
    for c in clients:
        c.close()
    await asyncio.sleep(0)
    say("ok")


if __name__ == "__main__":
    asyncio.run(main())
