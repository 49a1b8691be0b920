"""Python side of tests/godot/browser.gd: the JavaScript client (godot-project/web/) in headless
Chromium against a Godot server.

The hook serves godot-project/web/ over HTTP on 127.0.0.1:(port+1), starts Chromium (tests/cdp.py)
while Godot starts, and once the server is ready opens
`index.html?server=ws://127.0.0.1:PORT/`. The page connects with RwsmpClient, sends its five
packets, echoes every server packet with a leading 0xEE and records everything until the server
closes the connection; the hook polls `window.rwsmpResult` through the DevTools protocol and
checks the id (against the one the server published), the bytes the page sent and received, and
the close code. The server (browser.gd) checks the bytes it received from the browser, its
peer id and the echoes. Chromium comes from tests/provision.py (run_tests.py provides it before
the tests start); without one the test fails with "no chromium: <why>" (the flag browser_failed
lets the server stop waiting).
"""

from __future__ import annotations

import functools
import http.server
import os
import threading
import time

import cdp
import provision
from harness import Checks

WEB_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "godot-project", "web")

# Must match godot-project/web/index.html (PACKETS) and tests/godot/browser.gd.
def _pattern(size: int, mul: int, add: int) -> bytes:
    return bytes((i * mul + add) & 0xFF for i in range(size))


PAGE_PACKETS = [b"\x01\x02\x03", b"hello from the browser", b"\x00\xff\x80\x7f",
                _pattern(300, 7, 1), _pattern(20000, 31, 7)]
SERVER_PACKETS = [b"\xde\xad\xbe\xef", b"hello from godot", _pattern(1000, 13, 5),
                  _pattern(40000, 17, 3)]
PAGE_TIMEOUT = 15.0


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".js": "text/javascript", ".html": "text/html"}

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, fmt, *args) -> None:  # keep the test output quiet
        self.server.requests.append(fmt % args)


def serve_web(port: int) -> http.server.ThreadingHTTPServer:
    """godot-project/web/ on 127.0.0.1:port, served from a daemon thread."""
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", port), functools.partial(_Handler, directory=WEB_DIR))
    httpd.daemon_threads = True
    httpd.requests = []
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                     daemon=True).start()
    return httpd


def _short(h: str) -> str:
    return h if len(h) <= 48 else f"<{len(h) // 2} bytes {h[:32]}...>"


@provision.needs("chromium")
def browser_hook(ctx) -> list:
    checks = Checks()
    check = checks.check
    httpd = None
    browser = None
    page = None
    try:
        try:
            browser = cdp.Chromium(os.path.join(ctx.dir, "chromium.log"))
        except cdp.ChromiumMissing as e:
            ctx.flag("browser_failed")
            return [(False, "py.chromium", str(e))]
        httpd = serve_web(ctx.port + 1)
        t0 = time.monotonic()
        browser.start()
        page = browser.page()
        checks.info("chromium_start", f"chromium ready in {time.monotonic() - t0:.2f}s")
        if not ctx.wait_flag("server_ready", 15):
            ctx.flag("browser_failed")
            return checks + [(False, "py.server_ready", "server never signalled server_ready")]
        server = f"ws://127.0.0.1:{ctx.port}/"
        page.navigate(f"http://127.0.0.1:{ctx.port + 1}/index.html?server={server}")
        end = time.monotonic() + PAGE_TIMEOUT + 2
        res = None
        while time.monotonic() < end and not ctx.stop.is_set():
            res = page.evaluate("window.rwsmpResult && window.rwsmpResult.done "
                                "? window.rwsmpResult : null")
            if res:
                break
            time.sleep(0.1)
        if not check(bool(res), "page_finished", "" if res else
                     "the page did not finish; console: " + " | ".join(page.console[-10:])):
            ctx.flag("browser_failed")
            return checks
        title = page.evaluate("document.title")
        dom = page.evaluate("document.getElementById('result').textContent")
        check(title == ("rwsmp: error" if res.get("error") else "rwsmp: done"), "page_title",
              repr(title))
        check(bool(dom) and '"done":true' in dom, "page_result_in_dom", repr((dom or "")[:80]))
        check(res.get("error") is None, "page_no_error", "" if res.get("error") is None else
              f"{res.get('error')}; console: " + " | ".join(page.console[-10:]))
        srv_id = None
        path = os.path.join(ctx.dir, "val_browser_id")
        if ctx.wait_flag("browser_id_set", 5) and os.path.exists(path):
            with open(path) as f:
                srv_id = int(f.read().strip())
        check(srv_id is not None and res.get("id") == srv_id and srv_id >= 2, "page_id",
              f"page id {res.get('id')}, server's peer id {srv_id}")
        sent = res.get("sent", [])
        check(sent == [p.hex() for p in PAGE_PACKETS], "page_sent",
              f"sent {[_short(h) for h in sent]}")
        got = res.get("received", [])
        want = [p.hex() for p in SERVER_PACKETS]
        check(got == want, "page_received",
              f"received {[_short(h) for h in got]}, expected {[_short(h) for h in want]}")
        check(res.get("echoed") == len(SERVER_PACKETS), "page_echoed", str(res.get("echoed")))
        close = res.get("close") or {}
        check(close.get("code") == 1000 and close.get("wasClean") is True, "page_close_1000",
              f"close {close}")
        checks.info("page_close", f"browser saw close {close}")
        requests = getattr(httpd, "requests", [])
        check(any("rwsmp-client.js" in r for r in requests), "module_served", str(requests))
    except Exception as e:  # noqa: BLE001 - reported as a failed check with the reason
        ctx.flag("browser_failed")
        detail = f"{type(e).__name__}: {e}"
        if page is not None:
            detail += "; console: " + " | ".join(page.console[-10:])
        if browser is not None:
            detail += "; chromium: " + browser.log_tail(5)
        checks.append((False, "py.browser", detail))
    finally:
        ctx.barrier("done")
        ctx.wait_flag("bar_done.server", 15)
        if browser is not None:
            browser.stop()
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
    return checks
