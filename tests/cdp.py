"""Headless Chromium driven over the DevTools protocol (CDP), for testing the HTML report.

The protocol runs over a pipe (`--remote-debugging-pipe`: fd 3 in, fd 4 out, messages are
JSON ending in NUL), so no port is opened and nothing beyond the standard library is needed.
Every event is kept, so a test can check console messages, exceptions and requests.
"""
from __future__ import annotations

import fcntl
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-pipe", "--mute-audio", "--hide-scrollbars"]


def chromium_binary() -> str | None:
    """The chromium (or chrome) executable on PATH, or None."""
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))
                 if p), None)


class Browser:
    """One headless Chromium with one page; a context manager that kills it on exit."""

    def __init__(self, width: int = 1280, height: int = 900, binary: str | None = None) -> None:
        binary = binary or chromium_binary()
        if binary is None:
            raise FileNotFoundError("chromium is not installed")
        self.profile = tempfile.mkdtemp(prefix="emobatch-chromium-")
        to_chrome, self._send_fd = os.pipe()
        self._recv_fd, from_chrome = os.pipe()

        def fds_3_and_4() -> None:  # in the child: the pipe ends where Chromium expects them
            # copies above 10 first, so neither end is overwritten if it already is fd 3 or 4
            a, b = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_chrome, from_chrome))
            os.dup2(a, 3), os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self.profile}", f"--window-size={width},{height}",
             "about:blank"], pass_fds=(3, 4), preexec_fn=fds_3_and_4,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome), os.close(from_chrome)
        self.events: list[dict[str, Any]] = []
        self._replies: dict[int, queue.Queue] = {}
        self._lock = threading.Lock()
        self._next_id = 0
        threading.Thread(target=self._read, daemon=True).start()
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        attached = self.call("Target.attachToTarget", targetId=target, flatten=True)
        # the protocol's id of this attachment: commands that carry it go to the page
        self.channel = attached["sessionId"]
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.call(f"{domain}.enable", channel=self.channel)
        self.call("Emulation.setDeviceMetricsOverride", channel=self.channel, width=width,
                  height=height, deviceScaleFactor=1, mobile=False)

    def _read(self) -> None:
        buf = b""
        while chunk := os.read(self._recv_fd, 1 << 16):
            buf += chunk
            *messages, buf = buf.split(b"\0")
            for raw in messages:
                msg = json.loads(raw)
                if "id" in msg:
                    self._replies[msg["id"]].put(msg)
                else:
                    self.events.append(msg)

    def call(self, method: str, channel: str | None = None, timeout: float = 30,
             **params: Any) -> dict[str, Any]:
        """Send one command and return its result (RuntimeError on a protocol error)."""
        with self._lock:
            self._next_id += 1
            mid = self._next_id
            self._replies[mid] = queue.Queue()
        msg = {"id": mid, "method": method, "params": params}
        if channel:
            msg["sessionId"] = channel
        os.write(self._send_fd, json.dumps(msg).encode() + b"\0")
        reply = self._replies[mid].get(timeout=timeout)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def page(self, method: str, **params: Any) -> dict[str, Any]:
        """A command to the page (over its channel)."""
        return self.call(method, channel=self.channel, **params)

    def wait_event(self, method: str, timeout: float = 30) -> dict[str, Any]:
        """The first event named method (waiting up to timeout s for it)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for ev in list(self.events):
                if ev.get("method") == method:
                    return ev
            time.sleep(0.05)
        raise TimeoutError(method)

    def open(self, path: Path, settle: float = 1.0) -> None:
        """Load a local file and wait for its load event, then settle s for scripts."""
        self.page("Page.navigate", url=Path(path).resolve().as_uri())
        self.wait_event("Page.loadEventFired")
        time.sleep(settle)

    def js(self, expression: str, timeout: float = 30) -> Any:
        """Evaluate a JavaScript expression in the page; its JSON value (promises awaited)."""
        r = self.page("Runtime.evaluate", expression=expression, returnByValue=True,
                      awaitPromise=True, timeout=int(timeout * 1000))
        if "exceptionDetails" in r:
            raise RuntimeError(r["exceptionDetails"])
        return r["result"].get("value")

    def problems(self) -> list[str]:
        """Console errors/warnings, uncaught exceptions and error log entries so far."""
        out = []
        for ev in self.events:
            m, p = ev.get("method"), ev.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append(f"exception: {p['exceptionDetails']}")
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning",
                                                                         "assert"):
                out.append(f"console.{p['type']}: {p.get('args')}")
            elif m == "Log.entryAdded" and p["entry"].get("level") in ("error", "warning"):
                entry = p["entry"]
                out.append(f"log {entry['level']}: {entry.get('text')} {entry.get('url', '')}")
        return out

    def requests(self) -> list[str]:
        """URLs of every request the page made (documents, media, images, ...)."""
        return [ev["params"]["request"]["url"] for ev in self.events
                if ev.get("method") == "Network.requestWillBeSent"]

    def screenshot(self, path: Path, height: int | None = None) -> None:
        """PNG of the page from the top, height px high (default: the whole page)."""
        import base64

        full = self.js("document.documentElement.scrollHeight")
        width = self.js("document.documentElement.scrollWidth")
        clip = {"x": 0, "y": 0, "width": width, "height": min(height or full, full), "scale": 1}
        shot = self.page("Page.captureScreenshot", format="png", clip=clip,
                         captureBeyondViewport=True)
        Path(path).write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        os.close(self._send_fd)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
