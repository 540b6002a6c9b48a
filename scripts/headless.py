"""Open an HTML page in headless Chromium and report what happened, over the DevTools pipe.

    python scripts/headless.py PAGE.html [--screenshot PNG] [--sections DIR] [--width 1280]

Prints JSON: the console messages and exceptions, every network request the page made,
every ``data-figure`` element's key and value, and the layout at the window's width (the
page's scroll width, elements wider than the window outside a scrolling box, section boxes).
Talks the Chrome DevTools Protocol over ``--remote-debugging-pipe`` (file descriptors 3 and
4), so it needs no driver, no port and no Python package beyond the standard library. Used by
the report's browser test and the demo.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--remote-debugging-pipe", "about:blank",
]  # fmt: skip
FIGURES = (
    "JSON.stringify(Array.from(document.querySelectorAll('[data-figure]'))"
    ".map(e => [e.dataset.figure, e.dataset.value]))"
)

# The page's width as laid out, every element wider than the window, and each section's box.
LAYOUT = """JSON.stringify({
  scroll_width: Math.max(document.documentElement.scrollWidth, document.body.scrollWidth),
  overflowing: Array.from(document.querySelectorAll('body *'))
    .filter(e => e.getBoundingClientRect().right > window.innerWidth + 0.5
                 && !e.closest('.scroll'))
    .map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')).slice(0, 20),
  sections: Object.fromEntries(Array.from(document.querySelectorAll('section[id]')).map(e => {
    const r = e.getBoundingClientRect();
    return [e.id, {x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height}];
  })),
})"""


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


class Browser:
    """One headless Chromium and its DevTools pipe."""

    def __init__(self, executable: str, profile: str) -> None:
        to_child, self._to_browser = os.pipe()
        self._from_browser, from_child = os.pipe()

        def wire() -> None:  # the child's fd 3 reads commands, fd 4 writes replies
            os.dup2(to_child, 3)
            os.dup2(from_child, 4)

        self.process = subprocess.Popen(
            [executable, *FLAGS[:-1], f"--user-data-dir={profile}", FLAGS[-1]],
            preexec_fn=wire,
            pass_fds=(3, 4, to_child, from_child),  # kept open past close_fds
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: close() ends every helper too
        )
        os.close(to_child), os.close(from_child)
        self._buffer, self._next_id, self.events = b"", 0, []

    def _read(self, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            left = max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if not ready:
                raise TimeoutError(f"chromium said nothing for {timeout:.0f} s")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send one command and wait for its reply, keeping the events that arrive meanwhile."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(method)
            self.events.append(self._read(max(0.1, deadline - time.monotonic())))

    def close(self) -> None:
        """Kill the browser and its helper processes, which otherwise go on writing into the
        profile folder while it is being removed."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def _problems(events: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    console, requests = [], []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning"):
            console.append(" ".join(str(a.get("value", a)) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            console.append(str(params.get("exceptionDetails", {}).get("text")))
        elif method == "Log.entryAdded" and params["entry"].get("level") in ("error", "warning"):
            console.append(params["entry"].get("text", ""))
        elif method == "Network.requestWillBeSent":
            requests.append(params["request"]["url"])
    return console, requests


def _evaluate(browser: Browser, session: str, expression: str) -> Any:
    return browser.send("Runtime.evaluate", session, expression=expression, returnByValue=True)[
        "result"
    ]["value"]


def open_page(
    page: Path,
    screenshot: Path | None = None,
    chromium: str | None = None,
    width: int = 1280,
    sections_to: Path | None = None,
) -> dict:
    """Load ``page`` in a ``width``-px window; return its console problems, requests, figures
    and layout (the page's scroll width, each section's box), and screenshot it whole and,
    into ``sections_to``, one PNG per ``<section id=...>``."""
    shots: list[str] = []
    executable = chromium or find_chromium()
    if executable is None:
        raise FileNotFoundError("no chromium on PATH (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        browser = Browser(executable, profile)
        try:
            targets = browser.send("Target.getTargets")["targetInfos"]
            page_id = next(t["targetId"] for t in targets if t["type"] == "page")
            session = browser.send("Target.attachToTarget", targetId=page_id, flatten=True)
            sid = session["sessionId"]
            for domain in ("Runtime", "Log", "Network", "Page"):
                browser.send(f"{domain}.enable", sid)
            url = page.resolve().as_uri()
            browser.send("Page.navigate", sid, url=url)
            browser.wait_for("Page.loadEventFired")
            browser.send("Emulation.setDeviceMetricsOverride", sid, width=width, height=900,
                         deviceScaleFactor=1, mobile=False)  # fmt: skip
            figures = browser.send("Runtime.evaluate", sid, expression=FIGURES, returnByValue=True)
            layout = json.loads(_evaluate(browser, sid, LAYOUT))
            if screenshot:
                shot = browser.send("Page.captureScreenshot", sid, captureBeyondViewport=True)
                screenshot.write_bytes(base64.b64decode(shot["data"]))
            if sections_to:
                sections_to.mkdir(parents=True, exist_ok=True)
                for name, box in layout["sections"].items():
                    clip = {**box, "scale": 1}
                    shot = browser.send("Page.captureScreenshot", sid, clip=clip,
                                        captureBeyondViewport=True)  # fmt: skip
                    path = sections_to / f"{name}.png"
                    path.write_bytes(base64.b64decode(shot["data"]))
                    shots.append(str(path))
        finally:
            browser.close()
    console, requests = _problems(browser.events)
    return {
        "url": url,
        "console": console,
        "requests": [r for r in requests if r != url],
        "figures": dict(json.loads(figures["result"]["value"])),
        "width": width,
        "scroll_width": layout["scroll_width"],
        "overflowing": layout["overflowing"],
        "sections": layout["sections"],
        "section_screenshots": shots,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("--screenshot", type=Path, default=None)
    parser.add_argument("--chromium", default=None)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--sections", type=Path, default=None, help="one PNG per section here")
    args = parser.parse_args()
    seen = open_page(args.page, args.screenshot, args.chromium, args.width, args.sections)
    print(json.dumps(seen, indent=2))


if __name__ == "__main__":
    main()
