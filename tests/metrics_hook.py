"""Python side of tests/godot/metrics.gd: traffic from a raw WebSocket client and one bad
request, then GET on the rust server's metrics_path, parsed with prometheus_client's text
parser (the reference parser of the format) and checked against the server's get_stats().
Also a refused connection per cause of a PROXY header failure (a server with proxy_protocol)
and a failed TLS handshake per cause (a wss:// server: plain HTTP, a client that refuses the
certificate, a silent socket, a socket closed at once), each read back from its server's
metrics.
"""

from __future__ import annotations

import re
import socket
import ssl
import sys
import time

import provision
import rawws
from harness import Checks, Ctx
from health_hook import get
from proxy_protocol_hook import v1

PROMETHEUS_CLIENT = "prometheus_client==0.26.0"
P = "rust_websocket_"


def refused(port: int, data: bytes, source: str = "127.0.0.1", wait: float = 5.0) -> bool:
    """Sends `data` from `source` and waits for the server to close the connection: whether
    it did within `wait` seconds."""
    with socket.socket() as s:
        s.bind((source, 0))
        s.settimeout(wait)
        s.connect(("127.0.0.1", port))
        s.sendall(data)
        end = time.monotonic() + wait
        try:
            while time.monotonic() < end:
                if not s.recv(4096):
                    return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
    return False


def certificate_rejected(port: int) -> bool:
    """A TLS client that verifies the server's certificate against the system's CAs (the
    test's self-signed one fails): whether the client refused it."""
    context = ssl.create_default_context()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        try:
            context.wrap_socket(raw, server_hostname="localhost").close()
        except ssl.SSLCertVerificationError:
            return True
        except (OSError, ssl.SSLError):
            return False
    return False


def scrape(port: int, prefix: bytes = b"", tls: bool = False) -> str:
    """The body of GET /metrics, after `prefix` (a PROXY header), over TLS if `tls` (the
    test's self-signed certificate is not checked)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    raw.sendall(prefix)
    s = raw
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        s = context.wrap_socket(raw, server_hostname="localhost")
    with s:
        s.sendall(f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except (OSError, ssl.SSLError):
            pass
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise ValueError(f"scrape of port {port}: {head[:80]!r}")
    return body.decode()


def metrics_hook(ctx: Ctx) -> list:
    checks = Checks()
    try:
        sys.path.insert(0, provision.python_package(PROMETHEUS_CLIENT))
        from prometheus_client.parser import text_string_to_metric_families
    except Exception as e:  # pip or import failure: the test says why
        return [(False, "py.prometheus_client", f"cannot provide {PROMETHEUS_CLIENT}: {e}")]
    try:
        if not ctx.wait_flag("server_ready", 15):
            return checks + [(False, "py.server_ready", "the server never got ready")]
        port = ctx.port
        ws = rawws.Client(port)
        checks.check(ws.handshake() >= 2, "raw_connected")
        for i in range(3):
            ws.send_frame(2, bytes([i]) * 7)
            op, data, _, _ = ws.recv_frame(5.0)
            checks.check(op == 2 and data == bytes([i]) * 7, f"raw_echo_{i}", f"{op} {data!r}")
        code, _ = ws.close_cleanly()
        checks.check(code == 1000, "raw_closed_1000", str(code))
        # A request that is neither an upgrade nor the metrics path: a failed handshake.
        line, _, _ = get(port, "/other")
        checks.check(line.startswith("HTTP/1.1 400"), "bad_request_400", line)
        denied = rawws.Client(port)
        line = denied.upgrade("/deny")
        denied.close()
        checks.check(line.startswith("HTTP/1.1 403"), "handler_rejects_403", line)
        line, _, _ = get(port + 1, "/metrics")
        checks.check(line.startswith("HTTP/1.1 403"), "not_allowed_403", line)
        # Port+3 trusts 127.0.0.1 only: one refusal per cause of a PROXY header failure.
        proxied = port + 3
        for cause, data, source in (
                ("missing", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "127.0.0.1"),
                ("malformed", b"PROXY TCP4 1.2.3.4 nonsense 1 2\r\n", "127.0.0.1"),
                ("timeout", b"PROXY TCP4 ", "127.0.0.1"),
                ("untrusted", v1("127.0.0.1", 1234, dport=proxied), "127.0.0.2")):
            checks.check(refused(proxied, data, source), f"proxy_{cause}_refused")
        # Port+4 is wss:// (handshake_timeout 1 s): one failed TLS handshake per cause but
        # "other".
        checks.check(refused(port + 4, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
                     "tls_not_tls_refused")
        checks.check(certificate_rejected(port + 4), "tls_certificate_rejected_by_client")
        checks.check(refused(port + 4, b""), "tls_timeout_refused")
        socket.create_connection(("127.0.0.1", port + 4), timeout=5).close()
        ctx.flag("py_traffic_done")
        if not ctx.wait_flag("stats_ready", 20):
            return checks + [(False, "py.stats_ready", "get_stats() never published")]
        stats = {k: int(v) for k, v in
                 re.findall(r'"(\w+)":\s*(-?\d+)', ctx.read_value("stats"))}
        line, headers, body = get(port, "/metrics")
        checks.check(line.startswith("HTTP/1.1 200"), "metrics_200", line)
        checks.check("version=0.0.4" in headers.get("content-type", ""), "content_type_0_0_4",
                     str(headers))
        families = {f.name: f for f in text_string_to_metric_families(body.decode())}
        value = {}
        for f in families.values():
            for s in f.samples:
                value[(s.name, tuple(sorted(s.labels.items())))] = s.value

        def expect(name: str, kind: str, sample: str, want, labels=()) -> None:
            # The sample must be in its family (a counter declared without `_total` would
            # leave its samples outside, untyped).
            f = families.get(P + name)
            got = next((s.value for s in f.samples if s.name == P + sample
                        and tuple(sorted(s.labels.items())) == tuple(labels)), None) if f else None
            checks.check(f is not None and f.type == kind and got == want, f"metric_{sample}",
                         f"type {f.type if f else None}, value {got} (expected {kind} {want})")

        expect("peers", "gauge", "peers", stats.get("peer_count"))
        expect("connections_accepted", "counter", "connections_accepted_total", 2)
        expect("connections_refused", "counter", "connections_refused_total", 0)
        expect("connections_rejected", "counter", "connections_rejected_total", 1)
        expect("handshake_failures", "counter", "handshake_failures_total", 1)
        expect("tls_failures", "counter", "tls_failures_total", 0, [("cause", "not_tls")])
        expect("received_bytes", "counter", "received_bytes_total", stats.get("bytes_in"))
        expect("sent_bytes", "counter", "sent_bytes_total", stats.get("bytes_out"))
        expect("received_messages", "counter", "received_messages_total",
               stats.get("packets_in"))
        expect("sent_messages", "counter", "sent_messages_total", stats.get("packets_out"))
        expect("queued_bytes", "gauge", "queued_bytes", stats.get("queued_bytes_out"))
        expect("closes", "counter", "closes_total", 1, [("code", "1000")])
        checks.check(stats.get("bytes_in") == 5 * 10 + 3 * 7 and stats.get("packets_in") == 8,
                     "stats_as_sent", str(stats))
        # The PROXY and TLS failures, each counted on its own server.
        proxied_families = {f.name: f for f in text_string_to_metric_families(
            scrape(proxied, v1("127.0.0.1", 5555, dport=proxied)))}
        f = proxied_families.get(P + "proxy_header_failures")
        by_cause = {s.labels.get("cause"): s.value for s in f.samples} if f else {}
        checks.check(f is not None and f.type == "counter" and by_cause == {
            "untrusted": 1, "missing": 1, "malformed": 1, "timeout": 1},
            "metric_proxy_header_failures_total", f"{f.type if f else None} {by_cause}")
        expect("proxy_header_failures", "counter", "proxy_header_failures_total", 0,
               [("cause", "malformed")])
        tls_families = {f.name: f for f in text_string_to_metric_families(
            scrape(port + 4, tls=True))}
        f = tls_families.get(P + "tls_failures")
        by_cause = {s.labels.get("cause"): s.value for s in f.samples} if f else {}
        checks.check(f is not None and f.type == "counter" and by_cause == {
            "not_tls": 1, "certificate_rejected": 1, "timeout": 1, "closed": 1, "other": 0},
            "metric_tls_failures_total", f"{f.type if f else None} {by_cause}")
        h = families.get(P + "heartbeat_rtt_seconds")
        count = value.get((P + "heartbeat_rtt_seconds_count", ()), 0)
        inf = value.get((P + "heartbeat_rtt_seconds_bucket", (("le", "+Inf"),)))
        buckets = [s.value for s in h.samples if s.name.endswith("_bucket")] if h else []
        checks.check(h is not None and h.type == "histogram" and count >= 1 and inf == count
                     and buckets == sorted(buckets), "rtt_histogram",
                     f"type {h.type if h else None}, count {count}, +Inf {inf}, {buckets}")
        checks.info("scrape", " | ".join(
            ln for ln in body.decode().splitlines() if ln and not ln.startswith("#")))
    except (EOFError, OSError, ValueError) as e:
        checks.check(False, "hook", f"{type(e).__name__}: {e}")
    finally:
        ctx.flag("py_done")
        ctx.barrier("done")
    return checks
