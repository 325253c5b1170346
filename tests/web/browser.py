"""Headless Chromium for the page's tests and benchmarks: Debian's Chromium driven by Playwright.

No browser is downloaded: Playwright is pointed at the system Chromium (``/usr/bin/chromium``, or
``AMSER_CHROMIUM``).  The page's files are served by :class:`PageFiles` (the service's routes for the
page, without the service) or by ``amser serve`` itself.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from amser_dsp.web import web_root

#: Flags for a quiet, sandbox-free headless run on a CI machine (root, no GPU, no network).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]

#: Helpers the tests call in the page: arrays travel as base64 of their little-endian bytes.
PAGE_HELPERS = """
window.t = {
  b64(bytes) {
    const u8 = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let s = "";
    for (let i = 0; i < u8.length; i += 0x8000) s += String.fromCharCode.apply(null, u8.subarray(i, i + 0x8000));
    return btoa(s);
  },
  bytes(text) {
    const raw = atob(text);
    const out = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out;
  },
  f32(text) { return new Float32Array(window.t.bytes(text).buffer); },
  i32(text) { return new Int32Array(window.t.bytes(text).buffer); },
};
"""


def chromium_path() -> str | None:
    """Debian's Chromium (or AMSER_CHROMIUM): the only browser these tests use."""
    path = os.environ.get("AMSER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    return path if Path(path).is_file() else None


def launch(playwright: Any, extra_args: list[str] | None = None) -> Any:
    return playwright.chromium.launch(
        executable_path=chromium_path(), headless=True, args=[*CHROMIUM_ARGS, *(extra_args or [])]
    )


class PageFiles(http.server.SimpleHTTPRequestHandler):
    """The page's routes without the service: / is index.html, /static/ the package's web folder."""

    def translate_path(self, path: str) -> str:
        path = path.split("?", 1)[0]
        if path == "/":
            path = "/static/index.html"
        if not path.startswith("/static/"):
            return str(web_root() / "__missing__")
        return super().translate_path(path[len("/static") :])

    def log_message(self, *args: Any) -> None:  # quiet
        pass


@contextlib.contextmanager
def static_site() -> Iterator[str]:
    """The page's files on 127.0.0.1 (no service behind them: the page says it is not connected)."""
    handler = functools.partial(PageFiles, directory=str(web_root()))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def wait_for(page: Any, expression: str, timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll a JavaScript expression until it is truthy (Playwright's wait_for_function compiles its predicate
    with eval, which the page's Content-Security-Policy forbids; evaluate() is not subject to it)."""
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(f"() => {expression}")
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{expression!r} stayed false for {timeout} s")
        time.sleep(interval)


def open_page(browser: Any, url: str, routes: dict[str, Any] | None = None) -> Any:
    """A new page at ``url`` with the page loaded (its codec ready) and the test helpers installed.

    ``routes`` maps URL patterns to Playwright route handlers installed before the page loads.
    """
    page = browser.new_page()
    for pattern, handler in (routes or {}).items():
        page.route(pattern, handler)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(url)
    wait_for(page, "window.amserPage !== undefined")
    page.evaluate("async () => { await window.amserPage.ready.catch(() => {}); }")
    page.evaluate(PAGE_HELPERS)
    page.page_errors = errors
    assert page.evaluate("window.amserPage.state.amser !== null"), f"the page did not load its codec: {errors}"
    return page


def b64(a: np.ndarray | bytes) -> str:
    return base64.b64encode(a if isinstance(a, bytes) else np.ascontiguousarray(a).tobytes()).decode()


def unb64(text: str, dtype: Any = np.uint8) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=dtype)
