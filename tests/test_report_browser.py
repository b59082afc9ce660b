"""The report in a real browser: headless Chromium loads it from disk, every embedded image
decodes, the console stays clean, nothing is fetched from the network, and the mIoU table shows.

How: Chromium is driven through the Chrome DevTools Protocol over `--remote-debugging-pipe`
(JSON messages separated by NUL bytes on file descriptors 3 and 4), with a client of ~100 lines
of standard library below. No websocket, no port, no Playwright/Selenium and no browser
download, so it works offline with the distribution's `chromium` package (CI installs it with
apt-get in .ci/run). Without Chromium the test FAILS and says how to install it.

Reusable: `check_report_in_browser(html_path, screenshot_path)` returns what the page showed,
`assert_report_ok(result)` checks it, e.g. on the real demo run:

    from test_report_browser import assert_report_ok, check_report_in_browser
    assert_report_ok(check_report_in_browser("runs/demo/report.html", "runs/demo/report.png"))
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

# The slow tier: `make test` runs it, `make test-fast` (-m "not slow") does not.
pytestmark = pytest.mark.slow


# test_report (the run-directory fixtures) sits next to this file; importable under any import mode
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # runs as root in CI containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
    "--hide-scrollbars",
    "--mute-audio",
    "--window-size=1280,4000",
]

# Runs in the page: what a reader would see. Data URIs never show up as network resources.
_PAGE_PROBE = """(() => {
  const imgs = [...document.images];
  const table = document.getElementById('miou-table');
  const box = table ? table.getBoundingClientRect() : null;
  return {
    title: document.title,
    images: imgs.length,
    broken_images: imgs.filter(i => !(i.complete && i.naturalWidth > 0))
                       .map(i => i.alt || i.src.slice(0, 80)),
    miou_table: table ? [...table.rows].map(r => [...r.cells].map(c => c.innerText.trim())) : null,
    miou_table_visible: !!box && box.width > 0 && box.height > 0,
    resources: performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith('data:')),
    scripts: document.scripts.length,
    height: Math.ceil(document.body.getBoundingClientRect().height),  // the content, not the window
  };
})()"""


def find_chromium() -> str | None:
    """$CHROMIUM, else /usr/bin/chromium, else chromium / chromium-browser / google-chrome on PATH."""
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


class _CDP:
    """A minimal Chrome DevTools Protocol client over --remote-debugging-pipe."""

    def __init__(self, binary: str, user_data_dir: str, log_path: Path):
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def child_fds():  # Chromium reads commands on fd 3 and writes replies on fd 4
            # Copy both ends above 3/4 first (either may sit on 3 or 4 already), then place them.
            # set_inheritable: dup2 onto the same number keeps close-on-exec set.
            a, b = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10), fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)
            os.close(a)
            os.close(b)

        self._log = open(log_path, "wb")  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}", "--remote-debugging-pipe",
             "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
            preexec_fn=child_fds, close_fds=False,
        )  # fmt: skip
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._next_id = 0
        self._replies: dict[int, dict] = {}
        self.events: list[dict] = []
        self._inbox: queue.Queue = queue.Queue()
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self) -> None:
        buf = b""
        while chunk := os.read(self._from_chrome, 1 << 20):
            buf += chunk
            *messages, buf = buf.split(b"\0")
            for m in messages:
                self._inbox.put(json.loads(m))
        self._inbox.put(None)  # Chromium closed the pipe

    def _pump(self, deadline: float) -> None:
        try:
            msg = self._inbox.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            return
        if msg is None:
            raise RuntimeError("Chromium closed the DevTools pipe (crashed?)")
        if "id" in msg:
            self._replies[msg["id"]] = msg
        else:
            self.events.append(msg)

    def send(
        self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60.0
    ):
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while self._next_id not in self._replies:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no reply to {method} within {timeout:.0f} s")
            self._pump(deadline)
        reply = self._replies.pop(self._next_id)
        if "error" in reply:
            raise RuntimeError(f"{method} failed: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, method: str, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events:
                if e.get("method") == method:
                    return e
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {method} event within {timeout:.0f} s")
            self._pump(deadline)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # it may have crashed already
            self.send("Browser.close", timeout=10)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_chrome, self._from_chrome):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._log.close()


def _console_errors(events: list[dict]) -> list[str]:
    errors = []
    for e in events:
        p = e.get("params", {})
        if e.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            errors.append(
                "console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"])
            )
        elif e.get("method") == "Runtime.exceptionThrown":
            errors.append("exception: " + p["exceptionDetails"].get("text", ""))
        elif e.get("method") == "Log.entryAdded" and p["entry"].get("level") == "error":
            errors.append(
                f"log ({p['entry'].get('source')}): {p['entry'].get('text')} {p['entry'].get('url', '')}"
            )
        elif e.get("method") == "Network.loadingFailed":
            errors.append(f"network: {p.get('errorText')}")
    return errors


def check_report_in_browser(
    html_path: str | Path, screenshot_path: str | Path, timeout: float = 90.0
) -> dict:
    """Open an HTML file in headless Chromium, screenshot the whole page and report what loaded.

    Returns:
        dict with title, images (count), broken_images, miou_table (rows of cell texts, or None),
        miou_table_visible, resources (non-data URLs the page loaded), requests (URLs requested
        besides the page itself), console_errors, scripts, height, screenshot (path).

    Raises:
        FileNotFoundError: Chromium is not installed (message says how to install it).
    """
    binary = find_chromium()
    if binary is None:
        raise FileNotFoundError(
            "Chromium not found (looked at $CHROMIUM, /usr/bin/chromium and PATH): "
            "install it with `apt-get update && apt-get install -y chromium` (.ci/run does this in CI)"
        )
    html_path, screenshot_path = Path(html_path).resolve(), Path(screenshot_path)
    url = html_path.as_uri()
    with tempfile.TemporaryDirectory(prefix="emanet-chromium-") as profile:
        log_path = Path(profile).parent / f"{Path(profile).name}.log"  # outside the profile Chromium owns
        cdp = _CDP(binary, profile, log_path)
        try:
            target = cdp.send("Target.createTarget", {"url": "about:blank"}, timeout=timeout)["targetId"]
            session = cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Runtime", "Log", "Page", "Network"):
                cdp.send(f"{domain}.enable", session=session)
            cdp.send("Page.navigate", {"url": url}, session=session, timeout=timeout)
            cdp.wait_event("Page.loadEventFired", timeout=timeout)
            probe = cdp.send(
                "Runtime.evaluate",
                {"expression": _PAGE_PROBE, "returnByValue": True, "awaitPromise": True},
                session=session,
            )["result"]["value"]
            width = 1280
            shot = cdp.send(
                "Page.captureScreenshot",
                {"format": "png", "captureBeyondViewport": True,
                 "clip": {"x": 0, "y": 0, "width": width, "height": max(probe["height"], 1), "scale": 1}},
                session=session, timeout=timeout,
            )  # fmt: skip
        except Exception as e:
            log = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
            raise RuntimeError(
                f"Chromium could not render {html_path}: {e}\n--- chromium log ---\n{log}"
            ) from e
        finally:
            cdp.close()
            log_path.unlink(missing_ok=True)
    import base64

    screenshot_path.parent.mkdir(parents=True, exist_ok=True)
    screenshot_path.write_bytes(base64.b64decode(shot["data"]))
    requests = [
        e["params"]["request"]["url"]
        for e in cdp.events
        if e.get("method") == "Network.requestWillBeSent"
        and e["params"]["request"]["url"] != url
        and not e["params"]["request"]["url"].startswith("data:")
    ]
    return {**probe, "requests": requests, "console_errors": _console_errors(cdp.events),
            "screenshot": str(screenshot_path)}  # fmt: skip


def assert_report_ok(result: dict, min_images: int = 1) -> None:
    """The checks of issue 5 on a `check_report_in_browser` result."""
    assert result["images"] >= min_images, result
    assert result["broken_images"] == [], f"images that did not load: {result['broken_images']}"
    assert result["console_errors"] == [], f"console errors: {result['console_errors']}"
    assert result["resources"] == [] and result["requests"] == [], (
        f"the page fetched something: {result['resources'] + result['requests']}"
    )
    assert result["scripts"] == 0, "the report must not contain scripts"
    table = result["miou_table"]
    assert table and result["miou_table_visible"], "no visible mIoU table"
    assert table[1][0] == "mIoU" and table[1][1].endswith("%"), table
    assert Path(result["screenshot"]).stat().st_size > 10_000


def test_report_in_chromium(tmp_path):
    from test_report import make_run_dir

    from emanet.report import write_report

    if find_chromium() is None:
        pytest.fail(
            "Chromium is not installed, so the report cannot be checked in a browser: "
            "`apt-get update && apt-get install -y chromium` (CI: .ci/run installs it)"
        )
    html = write_report(make_run_dir(tmp_path / "run"))
    result = check_report_in_browser(html, tmp_path / "report.png")
    assert_report_ok(result, min_images=3 + 3 * 8)
    assert result["images"] == 3 + 3 * 8
    assert result["title"].startswith("emanet report: run")
    assert [row[0] for row in result["miou_table"]][:4] == [
        "metric",
        "mIoU",
        "pixel accuracy",
        "mean accuracy",
    ]
    from PIL import Image

    with Image.open(result["screenshot"]) as shot:
        assert shot.width == 1280 and shot.height == result["height"] > 2000
        # not a blank page: the screenshot has many colours (charts, masks, attention maps)
        assert len(shot.convert("RGB").getcolors(1 << 20) or []) > 500
    if out := os.environ.get("EMANET_REPORT_SCREENSHOT"):  # keep a copy to look at
        shutil.copy(result["screenshot"], out)


def test_interrupted_report_in_chromium(tmp_path):
    from test_report import make_interrupted_run

    from emanet.report import write_report

    if find_chromium() is None:
        pytest.fail("Chromium is not installed: `apt-get update && apt-get install -y chromium`")
    html = write_report(make_interrupted_run(tmp_path / "run"))
    result = check_report_in_browser(html, tmp_path / "report.png")
    assert result["images"] == 1 and result["broken_images"] == [] and result["console_errors"] == []
    assert result["miou_table"] is None  # no evaluation yet: a note instead


def test_browser_check_catches_problems(tmp_path):
    """The checker itself: a broken image, a console error, a script and a network fetch are seen."""
    if find_chromium() is None:
        pytest.fail("Chromium is not installed: `apt-get update && apt-get install -y chromium`")
    page = tmp_path / "bad.html"
    page.write_text(
        "<!DOCTYPE html><html><head><title>bad</title></head><body><p>no table</p>"
        '<img alt="corrupt" src="data:image/png;base64,AAAA">'
        '<img alt="remote" src="http://127.0.0.1:9/x.png">'  # discard port: refused at once
        '<script>console.error("boom")</script></body></html>'
    )
    result = check_report_in_browser(page, tmp_path / "bad.png")
    assert sorted(result["broken_images"]) == ["corrupt", "remote"]
    assert any("boom" in e for e in result["console_errors"])
    assert "http://127.0.0.1:9/x.png" in result["requests"]
    assert result["scripts"] == 1 and result["miou_table"] is None
    with pytest.raises(AssertionError):
        assert_report_ok(result)


def test_missing_chromium_is_an_error_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "find_chromium", lambda: None)
    with pytest.raises(FileNotFoundError, match="apt-get install -y chromium"):
        check_report_in_browser(tmp_path / "x.html", tmp_path / "x.png")
