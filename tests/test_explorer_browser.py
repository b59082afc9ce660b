"""The explorer page in headless Chromium, driven through the DevTools client of
test_report_browser.py: it loads with no console error and no request; a real mouse move over a
chosen pixel shows that pixel's class probabilities and responsibilities (as the model computed
them, to display rounding); clicking a basis changes the map drawn over the image."""

from __future__ import annotations

import base64
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import emanet
from emanet.report.explorer import write_explorer

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_report_browser import _CDP, _console_errors, find_chromium  # noqa: E402

SCREENSHOT = Path("/tmp/explorer.png")


def _page(tmp_path):
    torch.manual_seed(0)
    model = emanet.create_model("emanet_r18", 4, ema_channels=32, channels=16, num_bases=8).eval()
    model.decode_head.emau.temperature = 0.02  # untrained: sharpen the responsibilities so maps differ
    rng = np.random.default_rng(0)
    image = np.asarray(Image.fromarray(rng.integers(0, 255, (4, 5, 3), dtype=np.uint8)).resize((64, 48)))
    pred = emanet.Predictor(model, device="cpu").predict(image, return_probs=True, return_attention=True)
    names, palette = (
        ["sky", "tree", "road", "car"],
        [[70, 130, 180], [20, 160, 40], [128, 64, 128], [220, 20, 60]],
    )
    html = write_explorer(
        tmp_path / "page.html", image, pred.probs, pred.attention, names, palette, "test.png"
    )
    return html, pred, names


def _eval(cdp, session, expression):
    result = cdp.send(
        "Runtime.evaluate",
        {"expression": expression, "returnByValue": True, "awaitPromise": True},
        session=session,
    )
    return result["result"].get("value")


def _mouse(cdp, session, kind, x, y):
    params = {
        "type": kind,
        "x": x,
        "y": y,
        "button": "left" if kind != "mouseMoved" else "none",
        "clickCount": 1,
    }
    cdp.send("Input.dispatchMouseEvent", params, session=session)


@pytest.mark.slow
def test_explorer_hover_and_click_in_chromium(tmp_path):
    binary = find_chromium()
    if binary is None:
        pytest.fail("Chromium is not installed: `apt-get update && apt-get install -y chromium`")
    html, pred, names = _page(tmp_path)
    url = html.resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="emanet-chromium-") as profile:
        cdp = _CDP(binary, profile, tmp_path / "chromium.log")
        try:
            target = cdp.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Runtime", "Log", "Page", "Network"):
                cdp.send(f"{domain}.enable", session=session)
            cdp.send("Page.navigate", {"url": url}, session=session)
            cdp.wait_event("Page.loadEventFired")
            deadline = time.monotonic() + 30
            while _eval(cdp, session, "document.body.dataset.ready || ''") != "1":
                assert time.monotonic() < deadline, "the page never finished inflating its data"
                time.sleep(0.1)
            rect = _eval(
                cdp, session, "JSON.stringify(document.getElementById('stage').getBoundingClientRect())"
            )
            rect = json.loads(rect)
            x, y = 41, 17  # the chosen pixel
            _mouse(cdp, session, "mouseMoved", rect["x"] + (x + 0.5) * rect["width"] / 64,
                   rect["y"] + (y + 0.5) * rect["height"] / 48)  # fmt: skip
            shown = json.loads(
                _eval(
                    cdp,
                    session,
                    """JSON.stringify({
              pixel: document.getElementById('pixel').textContent,
              probs: [...document.querySelectorAll('#probs tr')]
                .map(r => [...r.cells].map(c => c.innerText.trim())),
              bases: [...document.querySelectorAll('.basis')].map(e => e.textContent)})""",
                )
            )
            map_before = _eval(cdp, session, "document.getElementById('basis-map').toDataURL()")
            clicks = []
            chosen = [int(b) for b in np.argsort(-pred.attention.sum(axis=(1, 2)))[:2]]  # two busy bases
            for b in chosen:
                rect_js = f"JSON.stringify(document.querySelectorAll('.basis')[{b}].getBoundingClientRect())"
                box = json.loads(_eval(cdp, session, rect_js))
                cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
                _mouse(cdp, session, "mousePressed", cx, cy)
                _mouse(cdp, session, "mouseReleased", cx, cy)
                drawn = _eval(cdp, session, "document.getElementById('basis-map').toDataURL()")
                clicks.append(
                    (drawn, _eval(cdp, session, "document.getElementById('basis-title').textContent"))
                )
            height = _eval(cdp, session, "Math.ceil(document.body.getBoundingClientRect().height)")
            shot = cdp.send("Page.captureScreenshot", {"format": "png", "clip": {
                "x": 0, "y": 0, "width": 1280, "height": height, "scale": 1}}, session=session)  # fmt: skip
        finally:
            cdp.close()
    SCREENSHOT.write_bytes(base64.b64decode(shot["data"]))
    assert _console_errors(cdp.events) == []
    requests = [
        e["params"]["request"]["url"] for e in cdp.events if e.get("method") == "Network.requestWillBeSent"
    ]
    assert [r for r in requests if r != url and not r.startswith("data:")] == []
    # the hovered pixel's top-3 classes and probabilities, as the model computed them
    assert shown["pixel"] == f"({x}, {y})"
    p = pred.probs[:, y, x]
    order = np.argsort(-p)[:3]
    assert [row[0] for row in shown["probs"]] == [names[c] for c in order]
    for row, c in zip(shown["probs"], order, strict=True):
        # shown as whole percent from a 1/255 quantisation: within rounding of the true value
        assert abs(float(row[1].rstrip("%")) - 100 * p[c]) <= 0.5 + 100 / 510, (row, p[c])
    # its responsibilities over the K bases: those of the feature cell the pixel falls in
    k, h, w = pred.attention.shape
    r = pred.attention[:, y * h // 48, x * w // 64]
    assert len(shown["bases"]) == k
    for b, text in enumerate(shown["bases"]):
        label, value = text.split()
        assert label == f"b{b}" and abs(float(value) - r[b]) <= 0.005 + 1 / 510, (text, r[b])
    # clicking a basis draws its map; another basis draws another map
    (map_a, title_a), (map_b, title_b) = clicks
    assert map_a != map_before and map_b != map_a
    assert title_a.startswith(f"basis {chosen[0]} ") and title_b.startswith(f"basis {chosen[1]} ")
    assert SCREENSHOT.stat().st_size > 10_000
