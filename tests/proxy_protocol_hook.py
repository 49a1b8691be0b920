"""Python side of tests/godot/proxy_protocol.gd: raw clients on 127.0.0.1 that start their
connection with a PROXY protocol header (HAProxy's spec, v1 text or v2 binary, written here by
hand) before the WebSocket upgrade, against the three rust servers of the scenario (port+0
trusted, port+1 untrusted, port+2 proxy_protocol off).

Accepted cases: the server's report packet (see the .gd) must name the client the header
names, in get_peer_address/port, get_connected_host/port and the handshake handler alike.
Refused cases: no 101, the connection closed (within 0.5 s, or at handshake_timeout 1.0 s for
a header that stops halfway), while one client on each of the first two servers, connected
before, still gets its packets echoed after.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import time

import rawws
from harness import Checks, Ctx

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(src: str, sport: int, dst: str = "127.0.0.1", dport: int = 9080) -> bytes:
    family = "TCP6" if ":" in src else "TCP4"
    if family == "TCP6" and ":" not in dst:
        dst = "::1"
    return f"PROXY {family} {src} {dst} {sport} {dport}\r\n".encode()


def v2(src: str | None, sport: int = 0, command: int = 1, tlvs: bytes = b"",
       version: int = 2) -> bytes:
    """A v2 header; `src` None = family UNSPEC (no addresses)."""
    if src is None:
        fam, body = 0x00, b""
    else:
        ip = ipaddress.ip_address(src)
        dst = ipaddress.ip_address("127.0.0.1" if ip.version == 4 else "::1")
        fam = 0x11 if ip.version == 4 else 0x21
        body = ip.packed + dst.packed + struct.pack(">HH", sport, 9080)
    body += tlvs
    return V2_SIGNATURE + bytes([version << 4 | command, fam]) + struct.pack(">H", len(body)) + body


# An AWS NLB-style TLV (PP2_TYPE_AWS, VPC endpoint id) and PP2_TYPE_NOOP padding: skipped.
TLVS = b"\xea\x00\x17\x01vpce-08d2bf15fac5001c9" + b"\x04\x00\x03\x00\x00\x00"


class Proxied(rawws.Client):
    """A client whose connection starts with `header` (sent in two parts when `split`)."""

    def __init__(self, port: int, header: bytes, split: int = 0):
        super().__init__(port)
        self.local_port = self.sock.getsockname()[1]
        if split:
            self.sock.sendall(header[:split])
            time.sleep(0.05)
            header = header[split:]
        self.sock.sendall(header)


def _accepted(checks: Checks, ctx: Ctx, name: str, port: int, header: bytes, want: str | None,
              split: int = 0) -> Proxied | None:
    """Connects with `header` and path /<name>, expects the upgrade, the id and the report
    naming `want` ("address:port"; None = this socket, 127.0.0.1 and its own port)."""
    try:
        c = Proxied(port, header, split)
        status = c.upgrade(f"/{name}")
        if not checks.check(status.startswith("HTTP/1.1 101"), f"{name}.upgraded",
                            f"status {status!r}"):
            c.close()
            return None
        op, data, _, _ = c.recv_frame(5.0)
        checks.check(op == 2 and len(data) == 4, f"{name}.id_greeting", f"{op} {data!r}")
        op, data, _, _ = c.recv_frame(5.0)
    except (EOFError, OSError) as e:
        checks.check(False, f"{name}.report", f"no report: {e}")
        return None
    want = want or f"127.0.0.1:{c.local_port}"
    parts = data.decode("utf-8", "replace").split("|")
    checks.check(len(parts) == 4 and parts[0].endswith(f"/{name}")
                 and parts[1:] == [want, want, want], f"{name}.addresses",
                 f"server reported {parts} (url, get_peer_address:port, "
                 f"get_connected_host:port, handshake handler), expected {want}")
    return c


def _refused(checks: Checks, name: str, port: int, header: bytes, request: bool = True,
             shut: bool = False, within: tuple[float, float] = (0.0, 0.5)) -> None:
    """Connects with `header` (then the upgrade request, or half-closes when `shut`): no 101,
    and the server closes the connection within `within` seconds."""
    try:
        c = Proxied(port, header)
    except OSError as e:
        checks.check(False, f"{name}.connect", str(e))
        return
    try:
        t0 = time.monotonic()
        if shut:
            c.sock.shutdown(socket.SHUT_WR)
        elif request:
            c.send(rawws.upgrade_request(port, f"/{name}"))
        took = c.wait_eof(3.0)
        took = None if took is None else time.monotonic() - t0
        checks.check(b"HTTP/1.1 101" not in c.buf, f"{name}.no_upgrade", repr(c.buf[:80]))
        lo, hi = within
        checks.check(took is not None and lo <= took <= hi, f"{name}.closed",
                     "still open after 3 s" if took is None
                     else f"closed after {took:.3f}s (expected {lo}-{hi}s)")
    finally:
        c.close()


def _echo(checks: Checks, name: str, c: rawws.Client | None) -> None:
    if c is None:
        checks.check(False, f"{name}.echo", "not connected")
        return
    payload = f"still here: {name}".encode()
    try:
        c.send_frame(2, payload)
        op, data, _, _ = c.recv_frame(5.0)
        checks.check(op == 2 and data == payload, f"{name}.echo", f"{op} {data!r}")
    except (EOFError, OSError) as e:
        checks.check(False, f"{name}.echo", f"connection lost: {e}")


def proxy_protocol_hook(ctx: Ctx) -> list:
    checks = Checks()
    keep: list = []
    try:
        if not ctx.wait_flag("server_ready", 15):
            return checks + [(False, "py.server_ready", "the server never got ready")]
        trusted, untrusted, off = ctx.port, ctx.port + 1, ctx.port + 2
        # Clients that must not notice the refusals below.
        keep_trusted = _accepted(checks, ctx, "keep", trusted, v2("198.51.100.1", 1111),
                                 "198.51.100.1:1111")
        keep_plain = rawws.Client(untrusted)
        keep.extend([keep_trusted, keep_plain])
        checks.check(keep_plain.handshake() >= 2, "keep_plain.id")
        # Without a header (and untrusted anyway), the TCP peer is the client.
        _, report, _, _ = keep_plain.recv_frame(5.0)
        want = f"127.0.0.1:{keep_plain.sock.getsockname()[1]}"
        checks.check(report.decode().split("|")[1:3] == [want, want], "keep_plain.addresses",
                     f"server reported {report!r}, expected {want}")

        accepted = [
            ("v1_tcp4", v1("203.0.113.7", 51234), "203.0.113.7:51234", 0),
            ("v1_tcp6", v1("2001:db8::7", 4711), "2001:db8:0:0:0:0:0:7:4711", 0),
            ("v1_unknown", b"PROXY UNKNOWN\r\n", None, 0),
            ("v1_split", v1("203.0.113.8", 2000), "203.0.113.8:2000", 9),
            ("v2_inet", v2("198.51.100.9", 1000), "198.51.100.9:1000", 0),
            ("v2_inet6", v2("2001:db8::9", 65535), "2001:db8:0:0:0:0:0:9:65535", 0),
            ("v2_tlvs", v2("198.51.100.10", 1001, tlvs=TLVS), "198.51.100.10:1001", 0),
            ("v2_split", v2("198.51.100.11", 1002), "198.51.100.11:1002", 13),
            # LOCAL: the balancer's own connection (a health check); the TCP peer stands.
            ("v2_local", v2(None, command=0), None, 0),
            ("v2_unspec", v2(None), None, 0),
        ]
        for name, header, want, split in accepted:
            c = _accepted(checks, ctx, name, trusted, header, want, split)
            if c is not None:
                c.close()

        _refused(checks, "no_header", trusted, b"")
        _refused(checks, "v1_malformed", trusted, b"PROXY TCP4 999.0.0.1 127.0.0.1 1 2\r\n")
        _refused(checks, "v1_too_long", trusted, b"PROXY UNKNOWN " + b"x" * 120 + b"\r\n")
        _refused(checks, "v2_bad_version", trusted, v2("198.51.100.9", 1000, version=1))
        _refused(checks, "v1_truncated_eof", trusted, b"PROXY TCP4 203.0.11", shut=True)
        _refused(checks, "v2_truncated_timeout", trusted, v2("198.51.100.9", 1000)[:20],
                 request=False, within=(0.8, 2.0))
        _refused(checks, "untrusted_v1", untrusted, v1("203.0.113.7", 51234))
        _refused(checks, "untrusted_v2", untrusted, v2("203.0.113.7", 51234))
        _refused(checks, "off_v1", off, v1("203.0.113.7", 51234))
        # A TCP probe (connect, close) is not an error; nothing to see from here.
        socket.create_connection(("127.0.0.1", trusted), timeout=2).close()

        _echo(checks, "keep_trusted", keep_trusted)
        _echo(checks, "keep_plain", keep_plain)
    except (EOFError, OSError) as e:
        checks.check(False, "hook", f"{type(e).__name__}: {e}")
    finally:
        ctx.flag("py_done")
        ctx.barrier("done")
        for c in keep:
            if c is not None:
                c.close()
    return checks
