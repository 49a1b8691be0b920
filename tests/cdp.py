"""Headless Chromium driven through the DevTools protocol, with the Python standard library only
(the WebSocket client is tests/rawws.py's). Used by tests/browser_hook.py.

    with Chromium(log_path) as browser:      # raises ChromiumMissing if there is no chromium
        page = browser.page()                # the first tab (about:blank)
        page.navigate("http://127.0.0.1:8000/index.html")
        page.evaluate("document.title")
        page.console                         # console / exception / log lines seen so far

Chromium is `$CHROMIUM`, the `chromium` on PATH, or Debian's unpacked into the private cache by
tests/provision.py (nothing installed system-wide), started as the machine's notes say
(root: --no-sandbox; no network beyond loopback: --disable-background-networking etc.) with a
fresh profile in a temporary directory, and `--remote-debugging-port=0`: it picks a free port and
writes it to DevToolsActivePort in the profile. It is started in a session of its own and, at
the end, that process group alone is terminated (then killed if needed).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import provision
import rawws

MISSING_MESSAGE = ("no chromium: {} (tests/provision.py provides Debian's privately with apt-get; "
                   "or set $CHROMIUM to a Chromium binary)")

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--disable-default-apps", "--mute-audio",
    "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
]


class ChromiumMissing(RuntimeError):
    pass


class CdpError(RuntimeError):
    pass


def chromium_path() -> str:
    """$CHROMIUM, the chromium on PATH, or the private copy; ChromiumMissing says why not."""
    try:
        return provision.path("chromium")
    except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
        raise ChromiumMissing(MISSING_MESSAGE.format(e)) from e


class _Ws(rawws.Client):
    """The DevTools WebSocket (tests/rawws.py): text messages, fragmentation, pings."""

    def __init__(self, host: str, port: int, path: str, timeout: float):
        super().__init__(port, host, timeout)
        status = self.upgrade(path, timeout=timeout)
        if " 101 " not in status + " ":
            raise CdpError(f"DevTools WebSocket handshake failed: {status}")

    def send_text(self, text: str) -> None:
        self.send_frame(1, text.encode())

    def recv_text(self, timeout: float) -> str:
        parts: list[bytes] = []
        while True:
            opcode, data, _, fin = self.recv_frame(timeout)
            if opcode == 8:
                raise EOFError("DevTools connection closed by Chromium")
            if opcode == 9:  # ping: answer with a pong (masked, as a client must)
                self.sock.sendall(rawws.encode_frame(10, data, key=b"\0\0\0\0"))
                continue
            if opcode in (0, 1, 2):
                parts.append(data)
                if fin:
                    return b"".join(parts).decode("utf-8", "replace")


class Page:
    """One page target: commands, and the console/exception/log lines it reported."""

    def __init__(self, ws: _Ws):
        self.ws = ws
        self.next_id = 0
        self.console: list[str] = []

    def command(self, method: str, params: dict | None = None, timeout: float = 10.0) -> dict:
        self.next_id += 1
        cid = self.next_id
        self.ws.send_text(json.dumps({"id": cid, "method": method, "params": params or {}}))
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise CdpError(f"no answer to {method} within {timeout:.0f}s")
            try:
                msg = json.loads(self.ws.recv_text(left))
            except socket.timeout:
                continue
            if msg.get("id") == cid:
                if "error" in msg:
                    raise CdpError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self._event(msg)

    def _event(self, msg: dict) -> None:
        method, p = msg.get("method"), msg.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", a.get("type"))))
                            for a in p.get("args", []))
            self.console.append(f"console.{p.get('type')}: {text}")
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            desc = d.get("exception", {}).get("description") or d.get("text")
            self.console.append(f"exception: {desc}")
        elif method == "Log.entryAdded":
            e = p.get("entry", {})
            self.console.append(f"log.{e.get('level')}: {e.get('text')} {e.get('url', '')}")

    def navigate(self, url: str) -> None:
        res = self.command("Page.navigate", {"url": url})
        if res.get("errorText"):
            raise CdpError(f"navigate to {url}: {res['errorText']}")

    def evaluate(self, expression: str, timeout: float = 10.0):
        """The expression's value (JSON-able), evaluated in the page."""
        res = self.command("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                           timeout)
        if "exceptionDetails" in res:
            raise CdpError(f"evaluate {expression!r}: {res['exceptionDetails'].get('text')}")
        return res.get("result", {}).get("value")


class Chromium:
    """A headless Chromium process with a fresh profile; a context manager."""

    def __init__(self, log_path: str, start_timeout: float = 60.0):
        self.path = chromium_path()
        self.log_path = log_path
        self.start_timeout = start_timeout
        self.profile = tempfile.mkdtemp(prefix="rwsmp-chromium-")
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self._pages: list[Page] = []

    def __enter__(self) -> "Chromium":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, attempts: int = 2) -> None:
        """Starts Chromium; a start that writes no DevToolsActivePort in time is retried once
        with a fresh profile. A cold start has taken 15-32 s on the 2-core VMs here: once its
        page cache has dropped Chromium's 324 MB, the binary pages in at about 11 MB/s. What a
        timed-out attempt read stays cached, so the retry is fast."""
        for attempt in range(1, attempts + 1):
            if self._start_once():
                return
            tail = self.log_tail()
            self._kill()
            shutil.rmtree(self.profile, ignore_errors=True)
            self.profile = tempfile.mkdtemp(prefix="rwsmp-chromium-")
            if attempt == attempts:
                raise CdpError(f"chromium wrote no DevToolsActivePort within "
                               f"{self.start_timeout:.0f}s, {attempts} times: {tail}")

    def _start_once(self) -> bool:
        log = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(
                [self.path, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        finally:
            log.close()
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        end = time.monotonic() + self.start_timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise CdpError(f"chromium exited with code {self.proc.returncode} at start: "
                               f"{self.log_tail()}")
            try:
                with open(port_file) as f:
                    first = f.readline().strip()
                if first:
                    self.port = int(first)
                    return True
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        return False

    def _get_json(self, path: str):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", path)
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    def page(self, timeout: float = 10.0) -> Page:
        """A DevTools session on the first page (tab), with Runtime, Log and Page enabled."""
        end = time.monotonic() + timeout
        while True:
            targets = [t for t in self._get_json("/json/list") if t.get("type") == "page"]
            if targets:
                break
            if time.monotonic() > end:
                raise CdpError("chromium has no page target")
            time.sleep(0.05)
        url = targets[0]["webSocketDebuggerUrl"]  # ws://127.0.0.1:PORT/devtools/page/ID
        path = "/" + url.split("/", 3)[3]
        page = Page(_Ws("127.0.0.1", self.port, path, timeout=10))
        self._pages.append(page)
        for domain in ("Runtime", "Log", "Page"):
            page.command(f"{domain}.enable")
        return page

    def log_tail(self, n: int = 15) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                lines = [ln.rstrip() for ln in f if ln.strip()]
        except OSError:
            return ""
        return " | ".join(lines[-n:])

    def stop(self) -> None:
        for p in self._pages:
            p.ws.close()
        self._kill()
        shutil.rmtree(self.profile, ignore_errors=True)

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(self.proc.pid, sig)  # the group of the process started here
                except (ProcessLookupError, PermissionError):
                    break
                try:
                    self.proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self.proc is not None:
            try:
                # Helpers of the group may outlive the main process for a moment.
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
