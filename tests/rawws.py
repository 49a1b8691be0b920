"""The normal WebSocket protocol (RFC 6455) for the Python test hooks, standard library only.

Used by tests/run_tests.py (RawWs, RawWsServerSide), tests/handshake_handler_hook.py (Upgrade),
tests/hostile_hook.py (Client, and `frame`) and tests/cdp.py (the DevTools connection):

    c = Client(port)                    # a TCP connection to 127.0.0.1:port
    status = c.upgrade("/path", ["X-Token: abc"])   # the request, then the response head
    c.headers["sec-websocket-accept"] == c.expected_accept
    c.send_frame(2, b"data")            # masked, as a client sends
    op, data, masked, fin = c.recv_frame(5.0)

Pieces: `upgrade_request` / `request_head` (the request, with extra header lines),
`Conn.read_head` (a response head: status line and headers), `encode_frame` (one frame, any
opcode, flags, length field and mask), `parse_frame` (the first complete frame in a buffer).
What the hostile tests send on purpose (bad frames, bad requests, trickled bytes) is built at
their call sites, with these functions' options or by hand.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
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

    RECV_SIZE = 65536
    MASK_FRAMES = True  # a client masks what it sends (RFC 6455 5.1); a server end does not

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""
        self.status_line = ""
        self.headers: dict[str, str] = {}  # of the response head, names in lower case

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
                self.buf = self.buf[used:]
                return frame
            self.fill()

    def send_frame(self, opcode: int, payload: bytes = b"", fin: bool = True) -> None:
        self.sock.sendall(encode_frame(opcode, payload, fin=fin, mask=self.MASK_FRAMES))

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class Client(Conn):
    """A client connection to host:port (not yet upgraded)."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 5.0,
                 rcvbuf: int | None = None, nodelay: bool = False):
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

    def upgrade(self, path: str = "/", headers: list[str] | tuple = (),
                timeout: float | None = 5.0) -> str:
        """Sends the upgrade request (with self.key) and reads the response head: its status
        line, "" if none came (see read_head)."""
        self.sock.sendall(upgrade_request(self.port, path, self.key, headers, self.host))
        return self.read_head(timeout)
