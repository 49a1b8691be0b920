"""Python sides of the scenarios that put raw sockets against Godot peers (tests/rawws.py):
what a Godot server sends and accepts on the wire, and how it treats sockets that stall.

    wire              raw WebSocket clients against a server (tests/godot/wire.gd)
    headers           a raw server and a raw client read handshake_headers (headers.gd)
    raw_mode          a plain WebSocket client against a raw-mode server (raw_mode.gd)
    peer_handle       a raw server that closes with 4003 and keeps the TCP (peer_handle.gd)
    slow_consumer     clients that never read (slow_consumer.gd)
    handshake_timeout a silent socket and a half-sent request (handshake_timeout.gd)
    ipv6              whether ::1 works on this machine (ipv6.gd)

Each is a hook of tests/suite.py's table: it takes a harness.Ctx and returns harness.Checks.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import rawws
from harness import Checks, Ctx


def _wait_server(ctx: Ctx, checks: Checks, flag: str = "server_ready") -> bool:
    return ctx.wait_flag(flag, 15) or checks.check(False, flag, f"server never signalled {flag}")


def _expect_frame(checks: Checks, ws: rawws.Conn, name: str, opcode: int,
                  payload: bytes) -> None:
    """The next frame is an unmasked `opcode` frame carrying `payload`."""
    try:
        op, data, masked, _ = ws.recv_frame()
        checks.check(op == opcode and data == payload and not masked, name,
                     f"opcode {op}, payload {data[:40]!r}, masked {masked} "
                     f"(expected opcode {opcode}, {payload!r})")
    except (EOFError, OSError) as e:
        checks.check(False, name, f"no frame: {e}")


def _expect_close(checks: Checks, ws: rawws.Conn, name: str, code: int,
                  masked: bool | None = None) -> None:
    """The next frame is a close frame with `code` (and masked as said, if said)."""
    try:
        op, data, was_masked, _ = ws.recv_frame()
        got = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
        checks.check(op == 8 and got == code and masked in (None, was_masked), name,
                     f"opcode {op}, payload {data[:40]!r}, masked {was_masked}")
    except (EOFError, OSError) as e:
        checks.check(False, name, f"no close frame: {e}")


def _raw_server(ctx: Ctx, checks: Checks, socks: list, offset: int, timeout: float,
                name: str, why: str) -> rawws.ServerConn | None:
    """A raw server on port+offset for one Godot client (flag "raw_srv_ready"): its
    connection with the upgrade request read, or None (a failed check `name`). The sockets
    go into `socks`, for the caller to close."""
    ls = rawws.listen(ctx.port + offset)
    socks.append(ls)
    ctx.flag("raw_srv_ready")
    sock = rawws.accept(ls, timeout, ctx.stop)
    if not checks.check(sock is not None, name, why):
        return None
    socks.append(sock)
    srv = rawws.ServerConn(sock)
    srv.read_request()
    return srv


def _end(ctx: Ctx, godot_role: str, *socks) -> None:
    """Passes the scenario's "done" barrier and waits for `godot_role` to pass it too (so
    nothing closes under the Godot side's last checks), then closes `socks` (None skipped)."""
    ctx.barrier("done")
    ctx.wait_flag(f"bar_done.{godot_role}", 15)
    for s in socks:
        if s is not None:
            s.close()


def _id_greeting(checks: Checks, ws: rawws.Client, name: str) -> int:
    """Reads Godot's id message (4 bytes, little-endian, binary, unmasked): the id."""
    op, data, masked, _ = ws.recv_frame()
    checks.check(op == 2 and len(data) == 4 and not masked, f"{name}_id_message",
                 f"opcode {op}, {len(data)} bytes {data.hex()}, masked {masked}")
    return int.from_bytes(data[:4].ljust(4, b"\0"), "little", signed=True)


# ------------------------------------------------------------------------------------------

def wire_hook(ctx: Ctx) -> list:
    """Raw WebSocket clients against a Godot server (tests/godot/wire.gd)."""
    checks = Checks()
    conns: list[rawws.Client] = []
    try:
        if not _wait_server(ctx, checks):
            return checks
        ids = []
        for n in (1, 2):
            ws = rawws.Client.open(ctx.port)
            conns.append(ws)
            checks.check(ws.status_line.startswith("HTTP/1.1 101"), f"c{n}_status_101",
                         ws.status_line)
            checks.check(ws.headers.get("sec-websocket-accept") == ws.expected_accept,
                         f"c{n}_accept_key", str(ws.headers))
            checks.check("sec-websocket-protocol" not in ws.headers, f"c{n}_no_subprotocol",
                         str(ws.headers))
            pid = _id_greeting(checks, ws, f"c{n}")
            checks.check(2 <= pid < 2**31, f"c{n}_id_range", f"id {pid}")
            ids.append(pid)
        checks.check(ids[0] != ids[1], "ids_distinct", str(ids))
        ctx.put_value("id1", ids[0])
        ctx.put_value("id2", ids[1])
        c1, c2 = conns
        # c2: a message over inbound_buffer_size (65535) -> close 1009, then the TCP closes.
        c2.send_frame(2, b"\x01" * 70000)
        c2.sock.settimeout(5)
        _expect_close(checks, c2, "too_big_close_1009", 1009)
        # c1: an empty binary message, a text message, a binary message.
        c1.send_frame(2, b"")
        c1.send_frame(1, b"txt")
        c1.send_frame(2, b"after")
        c1.sock.settimeout(10)
        _expect_frame(checks, c1, "server_packet_binary_frame", 2, b"srv")
        c1.send_frame(8, (1000).to_bytes(2, "big") + b"bye")
        c1.sock.settimeout(5)
        _expect_close(checks, c1, "close_answered_1000", 1000)
        # RFC 6455 7.1.1: the server closes the TCP connection first (the built-in at once).
        took = c1.wait_eof(5)
        checks.check(took is not None and took < 1.0, "server_closes_tcp_after_close_handshake",
                     f"TCP closed {took:.3f}s after the close handshake" if took is not None
                     else "TCP still open after 5s")
        if took is not None:
            checks.info("close", f"TCP closed {took:.3f}s after the close handshake")
    finally:
        _end(ctx, "server", *conns)
    return checks


def headers_hook(ctx: Ctx) -> list:
    """handshake_headers (tests/godot/headers.gd): a raw server records the Godot client's
    request; a raw client reads the Godot server's 101 response."""
    checks = Checks()
    socks: list = []
    try:
        srv = _raw_server(ctx, checks, socks, 1, 15, "client_accepted",
                          "the Godot client never connected")
        if srv is None:
            return checks
        headers = f"request headers {srv.request_headers}"
        checks.check(srv.request_line == "GET /hdr?q=1 HTTP/1.1", "request_line",
                     srv.request_line)
        checks.check(srv.header("x-token") == ["abc123"], "client_header_x_token", headers)
        checks.check(srv.header("x-extra") == ["two words"], "client_header_x_extra", headers)
        checks.check(srv.header("sec-websocket-version") == ["13"], "client_version_13",
                     headers)
        checks.info("request", "request headers: " + ", ".join(
            f"{k}: {v}" for k, v in srv.request_headers if k.lower() != "sec-websocket-key"))
        srv.accept(777777)
        op, data, masked, _ = srv.recv_frame()
        checks.check(op == 2 and data == b"from godot" and masked, "client_packet",
                     f"opcode {op}, payload {data[:40]!r}, masked {masked}")
        srv.send_frame(2, b"from python")
        ctx.barrier("client_done")

        if not _wait_server(ctx, checks):
            return checks
        ws = rawws.Client.open(ctx.port)
        socks.append(ws.sock)
        checks.check(ws.status_line.startswith("HTTP/1.1 101"), "server_status_101",
                     ws.status_line)
        checks.check(ws.headers.get("x-server") == "yes", "server_header_x_server",
                     str(ws.headers))
        checks.check(ws.headers.get("x-extra") == "srv", "server_header_x_extra",
                     str(ws.headers))
        checks.check(ws.headers.get("sec-websocket-accept") == ws.expected_accept,
                     "server_accept_key", str(ws.headers))
        op, data, _, _ = ws.recv_frame()
        checks.check(op == 2 and len(data) == 4, "server_id_message", f"opcode {op}, {data.hex()}")
        ctx.put_value("raw_id", int.from_bytes(data[:4].ljust(4, b"\0"), "little", signed=True))
    finally:
        ctx.barrier("client_done")
        _end(ctx, "main", *socks)
    return checks


RAW_FIRST = b"first-from-server"     # tests/godot/raw_mode.gd FIRST, BIN, BIN2
RAW_BIN = bytes([0, 1, 2, 250, 255])
RAW_BIN2 = bytes([9, 8, 7, 6, 5, 4])


def raw_mode_hook(ctx: Ctx) -> list:
    """tests/godot/raw_mode.gd: a plain WebSocket client against a server with
    godot_protocol = false. No id greeting: the first frame is the server's own packet."""
    checks = Checks()
    ws = None
    try:
        if not _wait_server(ctx, checks):
            return checks
        ws = rawws.Client.open(ctx.port)
        ws.sock.settimeout(10)
        checks.check(ws.status_line.startswith("HTTP/1.1 101"), "status_101", ws.status_line)
        checks.check(ws.headers.get("sec-websocket-accept") == ws.expected_accept, "accept_key",
                     str(ws.headers))
        checks.check("sec-websocket-protocol" not in ws.headers, "no_subprotocol",
                     str(ws.headers))
        # Godot's protocol would send the 4-byte id first; raw mode sends nothing of its own.
        _expect_frame(checks, ws, "first_frame_is_server_packet_not_id", 2, RAW_FIRST)
        ws.send_frame(1, b"hello")
        ws.send_frame(2, RAW_BIN)
        _expect_frame(checks, ws, "send_text_is_text_frame", 1, b"hi")
        _expect_frame(checks, ws, "put_packet_is_binary_frame", 2, RAW_BIN2)
        _expect_frame(checks, ws, "broadcast_send_text_is_text_frame", 1, b"all")
        # get_peer(id) on the server: send_text, put_packet, send(.., WRITE_MODE_TEXT), send(..),
        # send([]) (an empty message; put_packet([]) sends nothing), put_var(7), then 65535 bytes
        # (the oversize sends before it returned ERR_OUT_OF_MEMORY and sent nothing), "h-last".
        _expect_frame(checks, ws, "handle_send_text_is_text_frame", 1, b"h-text")
        _expect_frame(checks, ws, "handle_put_packet_is_binary_frame", 2, RAW_BIN)
        _expect_frame(checks, ws, "handle_send_write_mode_text_is_text_frame", 1, b"h-send-text")
        _expect_frame(checks, ws, "handle_send_is_binary_frame", 2, RAW_BIN2)
        _expect_frame(checks, ws, "handle_send_empty_is_empty_binary_frame", 2, b"")
        _expect_frame(checks, ws, "handle_put_var_is_var_to_bytes", 2,
                      (2).to_bytes(4, "little") + (7).to_bytes(4, "little"))
        try:
            op, data, _, _ = ws.recv_frame()
            checks.check(op == 2 and data == b"a" * 65535, "handle_put_packet_65535",
                         f"opcode {op}, {len(data)} bytes {data[:20]!r}")
        except (EOFError, OSError) as e:
            checks.check(False, "handle_put_packet_65535", f"no frame: {e}")
        _expect_frame(checks, ws, "handle_last_text_frame", 1, b"h-last")
        ctx.barrier("godot_client_done")
        if not ctx.wait_flag("bar_godot_client_done.server", 20):
            return checks + [(False, "py.godot_client_done", "the server never got there")]
        ws.send_frame(8, (4100).to_bytes(2, "big") + b"raw done")
        _expect_close(checks, ws, "close_answered", 4100)
        took = ws.wait_eof(5.0)
        checks.check(took is not None, "server_closes_tcp",
                     "TCP still open 5 s after the close handshake" if took is None
                     else f"closed {took:.3f}s after the close handshake")
    finally:
        ctx.barrier("godot_client_done")
        _end(ctx, "server", ws)
    return checks


def peer_handle_hook(ctx: Ctx) -> list:
    """peer_handle step3: a raw server that sends close 4003 "raw bye", reads the client's close
    reply, then keeps the TCP connection open without reading or closing it."""
    checks = Checks()
    socks: list = []
    try:
        srv = _raw_server(ctx, checks, socks, 5, 20, "C_accepted", "client C never connected")
        if srv is None:
            return checks
        sock = srv.sock
        srv.accept(777777)
        if not checks.check(ctx.wait_flag("C_ready", 10), "C_ready", "client C never got ready"):
            return checks
        srv.send_frame(8, (4003).to_bytes(2, "big") + b"raw bye")
        _expect_close(checks, srv, "C_close_reply", 4003, masked=True)
        # Does the client close its end? Reported only (RFC 6455: the server closes first).
        t0 = time.monotonic()
        eof = None
        sock.settimeout(0.05)
        while eof is None and not ctx.stop.is_set() and time.monotonic() - t0 < 6:
            try:
                if sock.recv(4096) == b"":
                    eof = time.monotonic() - t0
            except socket.timeout:
                if ctx.wait_flag("C_done", 0) and time.monotonic() - t0 > 3.5:
                    break
            except OSError:
                eof = time.monotonic() - t0
        checks.info("C_tcp", f"client C closed its TCP end {eof:.3f}s after its close reply"
                    if eof is not None else "client C kept its TCP end open")
    finally:
        ctx.wait_flag("C_done", 15)
        for s in socks:
            s.close()
    return checks


def slow_consumer_hook(ctx: Ctx) -> list:
    """tests/godot/slow_consumer.gd: a client that never reads but sends unsolicited pongs
    (port+0), then one that never reads at all (port+1, 4 KiB receive buffer)."""
    checks = Checks()
    held = []
    try:
        if not ctx.wait_flag("servers_ready", 15):
            return [(False, "py.servers_ready", "never flagged")]
        spammer = rawws.Client(ctx.port, rcvbuf=4096)
        spammer.handshake()
        held.append(spammer)
        end = time.monotonic() + 6
        pongs = 0
        while time.monotonic() < end and not ctx.stop.is_set():
            if os.path.exists(os.path.join(ctx.dir, "flag_pongs_done")):
                break
            if spammer.send(rawws.encode_frame(10, b"alive", key=os.urandom(4))):
                break  # the server closed the connection
            pongs += 1
            time.sleep(0.1)
        checks.info("pongs", f"{pongs} unsolicited pongs sent")
        slow = rawws.Client(ctx.port + 1, rcvbuf=4096)
        slow.handshake()
        held.append(slow)
        ctx.wait_flag("done_slow", 30)
    finally:
        ctx.barrier("done")
        for c in held:
            c.close()
    return checks


def stalled_sockets(port: int) -> list[rawws.Conn]:
    """Two handshakes that never finish: a silent TCP connection and a half-sent request."""
    silent = rawws.Conn(socket.create_connection(("127.0.0.1", port), timeout=5))
    partial = rawws.Conn(socket.create_connection(("127.0.0.1", port), timeout=5))
    partial.sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
    return [silent, partial]


def handshake_timeout_hook(ctx: Ctx) -> list:
    """handshake_timeout: a silent TCP socket and a half-sent HTTP request are both dropped by
    the server after ~1 s (its handshake_timeout), while a Godot client connects meanwhile.
    Also serves a silent TCP listener on port+3 for the client-side timeout check."""
    checks = Checks()
    listener = rawws.listen(ctx.port + 3)
    ctx.flag("py_listening")
    held: list = []
    try:
        if not _wait_server(ctx, checks):
            return checks
        silent, partial = stalled_sockets(ctx.port)
        held += [silent, partial]
        ctx.flag("raw_open")
        results: dict[str, float | None] = {}

        def measure(key, conn):
            results[key] = conn.wait_eof(6.0)

        threads = [threading.Thread(target=measure, args=(k, c))
                   for k, c in (("silent_socket", silent), ("partial_request", partial))]
        for th in threads:
            th.start()
        # Accept the Godot client's connection to the silent listener and hold it.
        end = time.monotonic() + 8
        while any(th.is_alive() for th in threads) and time.monotonic() < end:
            conn = rawws.accept(listener, 0.1)
            if conn is not None:
                held.append(conn)
        for th in threads:
            th.join()
        for key, t in results.items():
            ok = t is not None and 0.8 <= t <= 2.0
            checks.check(ok, f"{key}_dropped_after_timeout",
                         "never closed within 6s" if t is None else f"closed after {t:.3f}s")
            if t is not None:
                checks.info(key, f"closed after {t:.3f}s")
    finally:
        ctx.barrier("measured")
        # Keep the listener until the scenario ends, so the client times out on its own.
        _end(ctx, "server", *held, listener)
    return checks


def _have_ipv6_loopback() -> bool:
    try:
        ls = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            ls.bind(("::1", 0))
            ls.listen(1)
            c = socket.create_connection(("::1", ls.getsockname()[1]), timeout=2)
            c.close()
        finally:
            ls.close()
        return True
    except OSError:
        return False


def ipv6_hook(ctx: Ctx) -> list:
    """Tells the ipv6 scenario whether ::1 works here; a PASS note says when it was skipped."""
    if _have_ipv6_loopback():
        ctx.put_value("ipv6", 1)
        return [(True, "py.ipv6", "")]
    ctx.put_value("ipv6", 0)
    return [(True, "py.ipv6_skip_info", "SKIPPED: no IPv6 loopback (::1) on this machine")]
