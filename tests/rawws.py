"""The WebSocket protocol (RFC 6455) for the Python test hooks: the one raw client and server
end they all use, standard library only.

    c = Client(port)                    # a TCP connection to 127.0.0.1:port
    status = c.upgrade("/path", ["X-Token: abc"])   # the request, then the response head
    c.headers["sec-websocket-accept"] == c.expected_accept
    peer_id = c.handshake()             # or: upgrade, check the 101, read the 4-byte id
    c.send_frame(2, b"data")            # masked, as a client sends
    op, data, masked, fin = c.recv_frame(5.0)
    code, reason, how = c.read_close()  # frames until the other side's close frame
    c.wait_eof(1.0)                     # seconds until the TCP connection closes, or None

    srv = ServerConn(accept(listen(port), 5.0))  # the server end of a connection
    srv.read_request(); srv.accept(777777)            # 101, then Godot's 4-byte id greeting

Pieces: `upgrade_request` / `request_head` (the request, with extra header lines),
`Conn.read_head` (a response head: status line and headers), `encode_frame` (one frame, any
opcode, flags, length field and mask), `parse_frame` (the first complete frame in a buffer).
What the hostile tests send on purpose (bad frames, bad requests, trickled bytes) is built at
their call sites, with these functions' options or by hand. Users: tests/wire_hooks.py,
tests/hostile_hook.py, tests/handshake_handler_hook.py, tests/process_hooks.py, tests/cdp.py.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import time
from typing import NamedTuple

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Closed(EOFError):
    """The peer closed the connection (EOF) or reset it."""


class Frame(NamedTuple):
    opcode: int
    payload: bytes   # unmasked
    masked: bool
    fin: bool


def new_key() -> str:
    """A fresh Sec-WebSocket-Key."""
    return base64.b64encode(os.urandom(16)).decode()


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept a server answers `key` with."""
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def request_head(port: int, path: str = "/", key: str | None = None,
                 headers: list[str] | tuple = (), host: str = "127.0.0.1",
                 version: str | None = "13", method: str = "GET", upgrade: str = "websocket",
                 http: str = "HTTP/1.1") -> str:
    """An upgrade request's request line and header lines, each ending with CRLF, without the
    blank line that ends the head. `headers` are extra lines ("Name: value"). key None = a
    fresh one, "" = no Sec-WebSocket-Key line; version None = no Sec-WebSocket-Version line."""
    key = new_key() if key is None else key
    lines = [f"{method} {path} {http}", f"Host: {host}:{port}", f"Upgrade: {upgrade}",
             "Connection: Upgrade"]
    if key:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    return "".join(ln + "\r\n" for ln in [*lines, *headers])


def upgrade_request(port: int, path: str = "/", key: str | None = None,
                    headers: list[str] | tuple = (), host: str = "127.0.0.1") -> bytes:
    """The whole upgrade request (see request_head)."""
    return (request_head(port, path, key, headers, host) + "\r\n").encode()


def xor_mask(data: bytes, key: bytes) -> bytes:
    """`data` XORed with the repeated 4-byte `key` (masking and unmasking are the same)."""
    if not data or key == b"\0\0\0\0":
        return data
    n = len(data)
    # The repeated key as one big integer: fast enough for any size here.
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def encode_frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0,
                 mask: bool = True, length: int | None = None,
                 key: bytes | None = None) -> bytes:
    """One frame: masked with `key` (random if None) unless mask=False (as a server sends).
    `length` overrides the length field (the payload is still appended as given)."""
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0x0F)
    n = len(payload) if length is None else length
    mbit = 0x80 if mask else 0
    if n < 126:
        head = bytes([b0, mbit | n])
    elif n < 65536:
        head = bytes([b0, mbit | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([b0, mbit | 127]) + n.to_bytes(8, "big")
    if not mask:
        return head + payload
    key = os.urandom(4) if key is None else key
    return head + key + xor_mask(payload, key)


def parse_frame(buf: bytes) -> tuple[Frame, int] | None:
    """The first frame in `buf` and the number of bytes it takes, or None if `buf` does not
    hold a whole frame yet."""
    if len(buf) < 2:
        return None
    b0, b1 = buf[0], buf[1]
    n, pos = b1 & 0x7F, 2
    if n >= 126:
        size = 2 if n == 126 else 8
        if len(buf) < pos + size:
            return None
        n, pos = int.from_bytes(buf[pos:pos + size], "big"), pos + size
    masked = bool(b1 & 0x80)
    key = b""
    if masked:
        if len(buf) < pos + 4:
            return None
        key, pos = buf[pos:pos + 4], pos + 4
    if len(buf) < pos + n:
        return None
    data = buf[pos:pos + n]
    if masked:
        data = xor_mask(data, key)
    return Frame(b0 & 0x0F, data, masked, bool(b0 & 0x80)), pos + n


def parse_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    """An HTTP head (without its blank line): (first line, [(name, value)] as sent)."""
    lines = head.decode("latin-1").split("\r\n")
    fields = []
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        fields.append((k.strip(), v.strip()))
    return lines[0], fields


class Conn:
    """One end of a TCP connection speaking HTTP/1.1 then WebSocket, with a receive buffer."""

    RECV_SIZE = 262144
    MASK_FRAMES = True  # a client masks what it sends (RFC 6455 5.1); a server end does not

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""
        self.status_line = ""
        self.headers: dict[str, str] = {}  # of the response head, names in lower case
        self.last_rsv = 0  # the RSV bits of the last frame recv_frame returned (4 = RSV1)

    def fill(self) -> None:
        """Receives more bytes into self.buf; Closed on EOF or a reset."""
        try:
            data = self.sock.recv(self.RECV_SIZE)
        except (ConnectionResetError, BrokenPipeError) as e:
            raise Closed(f"reset ({e.__class__.__name__})") from None
        if not data:
            raise Closed("EOF")
        self.buf += data

    def take_head(self) -> tuple[str, list[tuple[str, str]]]:
        """Reads up to the blank line that ends an HTTP head: see parse_head. Raises Closed,
        socket.timeout or OSError."""
        while b"\r\n\r\n" not in self.buf:
            self.fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        return parse_head(head)

    def read_head(self, timeout: float | None = 5.0) -> str:
        """The response head's status line, or "" if the connection closed (or timed out)
        first. Its headers go into self.headers."""
        self.sock.settimeout(timeout)
        try:
            self.status_line, fields = self.take_head()
        except (EOFError, OSError):  # socket.timeout is an OSError
            return ""
        for k, v in fields:
            self.headers[k.lower()] = v
        return self.status_line

    def recv_frame(self, timeout: float | None = None) -> Frame:
        """The next frame (timeout: for each receive; None keeps the socket's). Raises Closed,
        socket.timeout or OSError; a timeout leaves a partly received frame in the buffer."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        while True:
            got = parse_frame(self.buf)
            if got is not None:
                frame, used = got
                self.last_rsv = (self.buf[0] >> 4) & 7
                self.buf = self.buf[used:]
                return frame
            self.fill()

    def send_frame(self, opcode: int, payload: bytes = b"", fin: bool = True) -> None:
        self.sock.sendall(encode_frame(opcode, payload, fin=fin, mask=self.MASK_FRAMES))

    def send(self, data: bytes) -> str:
        """sendall of raw bytes: "" or why it failed (the other side may close while we
        write)."""
        try:
            self.sock.sendall(data)
            return ""
        except socket.timeout:
            return "send timed out"
        except OSError as e:
            return f"{type(e).__name__}"

    def read_close(self, timeout: float = 5.0) -> tuple[int | None, str, str]:
        """Reads frames until the other side's close frame: (code, reason, how). code None =
        the connection ended without one (how says how), -1 = a close frame without a code."""
        end = time.monotonic() + timeout
        try:
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    return None, "", "no close frame within %.1fs" % timeout
                op, data, _, _ = self.recv_frame(left)
                if op == 8:
                    code = int.from_bytes(data[:2], "big") if len(data) >= 2 else -1
                    return code, data[2:].decode("utf-8", "replace"), "close frame"
        except Closed as e:
            return None, "", str(e)
        except socket.timeout:
            return None, "", "no close frame within %.1fs" % timeout
        except OSError as e:
            return None, "", f"{type(e).__name__}: {e}"

    def wait_eof(self, timeout: float) -> float | None:
        """Seconds until the other side closes the TCP connection (EOF or reset), None if it is
        still open after `timeout`. What arrives meanwhile is added to self.buf."""
        t0 = time.monotonic()
        try:
            while True:
                left = timeout - (time.monotonic() - t0)
                if left <= 0:
                    return None
                self.sock.settimeout(max(0.01, left))
                self.fill()
        except Closed:
            return time.monotonic() - t0
        except socket.timeout:  # before OSError: it is one
            return None
        except OSError:
            return time.monotonic() - t0

    def abort(self) -> None:
        """Close with a TCP reset."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class Client(Conn):
    """A client connection to host:port (not yet upgraded)."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 5.0,
                 rcvbuf: int | None = None, nodelay: bool = True):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if rcvbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.settimeout(timeout)
            sock.connect((host, port))
            if nodelay:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            sock.close()
            raise
        super().__init__(sock)
        self.host = host
        self.port = port
        self.key = new_key()
        self.expected_accept = accept_key(self.key)

    @classmethod
    def open(cls, port: int, timeout: float = 5.0, **kw) -> "Client":
        """A client already upgraded (status_line, headers and expected_accept are there to
        check); Closed if no response came."""
        c = cls(port, timeout=timeout, **kw)
        if not c.upgrade(timeout=timeout):
            c.close()
            raise Closed("no response to the upgrade request")
        return c

    def upgrade(self, path: str = "/", headers: list[str] | tuple = (),
                timeout: float | None = 5.0) -> str:
        """Sends the upgrade request (with self.key) and reads the response head: its status
        line, "" if none came (see read_head)."""
        self.sock.sendall(upgrade_request(self.port, path, self.key, headers, self.host))
        return self.read_head(timeout)

    def handshake(self, godot: bool = True, timeout: float = 5.0,
                  headers: list[str] | tuple = ()) -> int:
        """The whole upgrade (with extra `headers` lines), checked (101 and the accept key,
        else Closed); with `godot`, reads the 4-byte id greeting of Godot's protocol and
        returns the id."""
        status = self.upgrade(headers=headers, timeout=timeout)
        if not status.startswith("HTTP/1.1 101"):
            raise Closed(f"upgrade refused: {status!r}")
        if self.headers.get("sec-websocket-accept") != self.expected_accept:
            raise Closed(f"wrong Sec-WebSocket-Accept: {self.headers}")
        if not godot:
            return 0
        op, data, _, _ = self.recv_frame(timeout)
        if op != 2 or len(data) != 4:
            raise Closed(f"greeting: opcode {op}, {data[:16]!r}")
        return int.from_bytes(data, "little", signed=True)

    def close_cleanly(self, timeout: float = 5.0) -> tuple[int | None, float | None]:
        """Close handshake from our side: (the other side's close code, seconds until it
        closed the TCP connection)."""
        self.send(encode_frame(8, (1000).to_bytes(2, "big") + b"bye"))
        code, _, _ = self.read_close(timeout)
        return code, self.wait_eof(timeout)


class ServerConn(Conn):
    """The server end of an accepted TCP connection: reads the upgrade request, answers it the
    way Godot's server does (101, then the 4-byte little-endian id), sends unmasked frames."""

    MASK_FRAMES = False

    def __init__(self, sock: socket.socket):
        super().__init__(sock)
        self.request_line = ""
        self.request_headers: list[tuple[str, str]] = []

    def read_request(self) -> None:
        self.request_line, self.request_headers = self.take_head()

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.request_headers if k.lower() == name.lower()]

    def accept(self, peer_id: int) -> None:
        accept = accept_key((self.header("sec-websocket-key") or [""])[0])
        self.sock.sendall((f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                           ).encode())
        self.send_frame(2, peer_id.to_bytes(4, "little"))


def listen(port: int, host: str = "127.0.0.1") -> socket.socket:
    """A TCP listener on host:port (SO_REUSEADDR, backlog 8)."""
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, port))
    ls.listen(8)
    return ls


def accept(ls: socket.socket, timeout: float, stop=None) -> socket.socket | None:
    """The next connection to `ls` (with a 5 s timeout of its own), or None after `timeout`
    seconds or once `stop` (a threading.Event) is set."""
    ls.settimeout(0.1)
    end = time.monotonic() + timeout
    while time.monotonic() < end and not (stop is not None and stop.is_set()):
        try:
            conn, _ = ls.accept()
            conn.settimeout(5)
            return conn
        except socket.timeout:
            continue
    return None
