"""A minimal headless-Chromium driver over the DevTools protocol (websockets' sync client), for
the end-to-end browser tests. Debian's `chromium`; `.ci/install-extras` installs it."""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")
START_TIMEOUT = 20.0
STEP_TIMEOUT = 20.0


def chromium_path() -> str | None:
    explicit = os.environ.get("WQBOT_CHROMIUM")
    if explicit:
        return explicit if os.path.exists(explicit) else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


class Browser:
    """One headless Chromium and one page. Raises RuntimeError when Chromium cannot start."""

    def __init__(self, binary: str, window: str = "1280,1800"):
        from websockets.sync.client import connect

        self.profile = tempfile.mkdtemp(prefix="wqbot-chromium-")
        self.proc = subprocess.Popen(
            [
                binary,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-sync",
                "--disable-background-networking",
                "--disable-component-update",
                "--password-store=basic",
                "--lang=zh-CN",
                f"--window-size={window}",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                f"--user-data-dir={self.profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._connection = None
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = (self.proc.stderr.read() if self.proc.poll() is not None else b"").decode(errors="replace")
                self.close()
                raise RuntimeError(f"{binary} did not start: {err.strip()[-400:] or 'no DevTools port'}")
            time.sleep(0.05)
        port = int(port_file.read_text().splitlines()[0])
        pages = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
        page = next(p for p in pages if p.get("type") == "page")
        self._connection = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=5)
        self.ws = self._connection.__enter__()
        self._ids = itertools.count(1)
        self.send("Page.enable")
        self.send("Runtime.enable")

    def send(self, method: str, **params):
        n = next(self._ids)
        self.ws.send(json.dumps({"id": n, "method": method, "params": params}))
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if msg.get("id") == n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def evaluate(self, expression: str):
        r = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            return None
        return r.get("result", {}).get("value")

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def wait_for(self, expression: str, what: str, timeout: float = STEP_TIMEOUT):
        """The expression's value once the document has loaded and the value is truthy (a DOM node
        counts as true: by value it would serialise to an empty, falsy object)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(
                f"document.readyState === 'complete' ? (v => v instanceof Node || v)({expression}) : null"
            )
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(
            f"timed out waiting for {what}; page at {self.evaluate('location.href')!r}: "
            f"{(self.evaluate('document.body && document.body.innerText') or '')[:500]!r}"
        )

    def text(self, selector: str) -> str | None:
        return self.evaluate(f"(e => e && e.innerText)(document.querySelector({json.dumps(selector)}))")

    def click(self, selector: str) -> None:
        assert self.evaluate(f"(e => (e && (e.click(), true)))(document.querySelector({json.dumps(selector)}))"), (
            selector
        )

    def screenshot(self, path) -> bytes:
        data = base64.b64decode(self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"])
        Path(path).write_bytes(data)
        return data

    def close(self) -> None:
        try:
            if self._connection is not None:
                self._connection.__exit__(None, None, None)
        except Exception:
            pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.profile, ignore_errors=True)
