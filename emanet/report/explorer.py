"""`write_explorer`: one self-contained HTML page to explore a prediction and its EM bases.

The page shows the image with the segmentation over it (opacity slider, legend). Hovering a
pixel lists its top class probabilities and its responsibilities over the K bases; clicking a
basis draws its map over the image, on one colour scale (0 to 1) with a colour bar.

Compact and offline: the photo is a JPEG data URI; the per-pixel top-3 class ids and
probabilities (uint8, probability quantised to 1/255) and the K responsibility maps (uint8, at
the feature size) are concatenated, zlib-compressed and base64-embedded; the page inflates them
with the browser's own `DecompressionStream`. A Content-Security-Policy forbids any request.
A pixel's responsibilities are those of the feature cell it falls in (nearest cell).
"""

from __future__ import annotations

import base64
import io
import json
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ..fileio import atomic_write
from .page import _CSS, _esc

__all__ = ["write_explorer", "explorer_html", "TOP_K"]

TOP_K = 3  # class probabilities kept per pixel


def _pack(probs: np.ndarray, attention: np.ndarray | None, top_k: int) -> tuple[bytes, int]:
    """uint8 top-k ids (k, H, W), top-k probabilities × 255 (k, H, W), responsibilities × 255
    (K, h, w), concatenated and zlib-compressed; returns (bytes, k)."""
    c = probs.shape[0]
    if c > 256:
        raise ValueError(f"the explorer page stores class ids in 8 bits; this model has {c} classes")
    k = min(top_k, c)
    order = np.argsort(-probs, axis=0, kind="stable")[:k]  # (k, H, W)
    top = np.take_along_axis(probs, order, axis=0)
    parts = [order.astype(np.uint8), np.round(np.clip(top, 0, 1) * 255).astype(np.uint8)]
    if attention is not None:
        parts.append(np.round(np.clip(attention, 0, 1) * 255).astype(np.uint8))
    raw = b"".join(np.ascontiguousarray(p).tobytes() for p in parts)
    return zlib.compress(raw, 9), k


def _jpeg_uri(image: np.ndarray, quality: int = 90) -> str:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def explorer_html(
    image: np.ndarray,
    probs: np.ndarray,
    attention: np.ndarray | None,
    class_names: Sequence[str],
    palette: Sequence[Sequence[int]],
    title: str = "prediction",
    top_k: int = TOP_K,
) -> str:
    """The page as a string.

    Args:
        image: (H, W, 3) uint8 RGB.
        probs: (C, H, W) class probabilities at the image size.
        attention: (K, h, w) responsibilities at the feature size, or None (no basis panel).
        class_names: C names; palette: at least C RGB colours.
        title: shown as the heading (e.g. the file's relative path).
    """
    h, w = image.shape[:2]
    if probs.shape[1:] != (h, w):
        raise ValueError(f"probs of shape {probs.shape} do not match the image's {h}x{w}")
    data, k = _pack(np.asarray(probs, np.float32), attention, top_k)
    c = probs.shape[0]
    meta = {
        "H": h, "W": w, "k": k, "C": c,
        "K": 0 if attention is None else int(attention.shape[0]),
        "h": 0 if attention is None else int(attention.shape[1]),
        "w": 0 if attention is None else int(attention.shape[2]),
        "names": [str(n) for n in list(class_names)[:c]] + [f"class {i}" for i in range(len(class_names), c)],
        "palette": [[int(v) for v in palette[i]] for i in range(c)],
    }  # fmt: skip
    zoom = max(1, 512 // max(h, w))
    width = min(w * zoom, 960)
    csp = "default-src 'none'; img-src data: blob:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<title>emanet explorer: {_esc(title)}</title>
<style>{_CSS}{_EXPLORER_CSS}</style></head>
<body><main>
<h1>{_esc(title)}</h1>
<p class="sub">{w}&times;{h} pixels, {c} classes, K={meta["K"]} bases. Hover a pixel; click a basis.</p>
<section class="cols">
<div id="viewer-col">
<div id="stage" style="width:{width}px;height:{round(width * h / w)}px">
<img id="photo" alt="image" src="{_jpeg_uri(image)}">
<canvas id="seg" width="{w}" height="{h}"></canvas>
<canvas id="basis-map" width="{max(meta["w"], 1)}" height="{max(meta["h"], 1)}" hidden></canvas>
<div id="cursor"></div>
</div>
<label>overlay opacity <input id="opacity" type="range" min="0" max="1" step="0.05" value="0.5"></label>
<div id="legend"></div>
</div>
<div id="info-col">
<h3>pixel <span id="pixel">(move the mouse over the image)</span></h3>
<table id="probs"><tbody></tbody></table>
<h3 id="basis-title">no basis selected</h3>
<div id="colorbar"><span>0</span><canvas id="bar" width="200" height="10"></canvas><span>1</span></div>
<h3>responsibilities over the {meta["K"]} bases</h3>
<div id="bases"></div>
</div>
</section>
</main>
<script id="meta" type="application/json">{json.dumps(meta)}</script>
<script id="data" type="application/octet-stream">{base64.b64encode(data).decode()}</script>
<script>{_EXPLORER_JS}</script>
</body></html>
"""


def write_explorer(
    path: str | Path,
    image: np.ndarray,
    probs: np.ndarray,
    attention: np.ndarray | None,
    class_names: Sequence[str],
    palette: Sequence[Sequence[int]],
    title: str = "prediction",
) -> Path:
    """Write `explorer_html(...)` to `path` (atomically); returns the path."""
    path = Path(path)
    page = explorer_html(image, probs, attention, class_names, palette, title)
    with atomic_write(path) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    return path


_EXPLORER_CSS = """
#stage{position:relative;border:1px solid #d0d7de;cursor:crosshair}
#stage img,#stage canvas{position:absolute;left:0;top:0;width:100%;height:100%;image-rendering:pixelated}
#basis-map{image-rendering:auto;opacity:.75}
#cursor{position:absolute;width:7px;height:7px;border:2px solid #fff;outline:1px solid #000;
  transform:translate(-50%,-50%);pointer-events:none;display:none}
#info-col{flex:0 1 380px}#probs td{font-variant-numeric:tabular-nums}
#bases{display:grid;grid-template-columns:repeat(8,1fr);gap:3px}
.basis{font:11px monospace;border:1px solid #d0d7de;border-radius:3px;padding:1px 3px;cursor:pointer;
  background:linear-gradient(90deg,#9ecbff var(--r,0%),#fff var(--r,0%))}
.basis.sel{outline:2px solid #cf222e}#colorbar{display:flex;gap:6px;align-items:center;font-size:12px}
"""

# Viridis at 9 stops, linearly interpolated: the colour scale of the basis maps and the bar.
_EXPLORER_JS = """
"use strict";
const M = JSON.parse(document.getElementById('meta').textContent);
const VIR = [[68,1,84],[71,44,122],[59,81,139],[44,113,142],[33,144,141],[39,173,129],
             [92,200,99],[170,220,50],[253,231,37]];
function viridis(t) {
  const x = Math.min(Math.max(t, 0), 1) * (VIR.length - 1), i = Math.min(Math.floor(x), VIR.length - 2);
  const f = x - i;
  return VIR[i].map((v, c) => Math.round(v + f * (VIR[i + 1][c] - v)));
}
async function inflate(b64) {
  const bin = Uint8Array.from(atob(b64), ch => ch.charCodeAt(0));
  const stream = new Blob([bin]).stream().pipeThrough(new DecompressionStream('deflate'));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}
const S = {ids: null, top: null, att: null, basis: -1};
function drawSeg() {
  const cv = document.getElementById('seg'), ctx = cv.getContext('2d');
  const img = ctx.createImageData(M.W, M.H), n = M.W * M.H;
  for (let p = 0; p < n; p++) {
    const col = M.palette[S.ids[p]];
    img.data[4 * p] = col[0]; img.data[4 * p + 1] = col[1]; img.data[4 * p + 2] = col[2];
    img.data[4 * p + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  const present = new Set(S.ids.subarray(0, n));
  document.getElementById('legend').innerHTML = [...present].sort((a, b) => a - b).map(c =>
    `<span class="sw" style="background:rgb(${M.palette[c].join(',')})"></span>${M.names[c]}`).join(' ');
}
function drawBasis(b) {
  S.basis = b;
  const cv = document.getElementById('basis-map'), ctx = cv.getContext('2d');
  const img = ctx.createImageData(M.w, M.h), n = M.h * M.w;
  for (let p = 0; p < n; p++) {
    const col = viridis(S.att[b * n + p] / 255);
    img.data[4 * p] = col[0]; img.data[4 * p + 1] = col[1]; img.data[4 * p + 2] = col[2];
    img.data[4 * p + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  cv.hidden = false;
  document.getElementById('basis-title').textContent = `basis ${b} over the image (click it again to hide)`;
  document.querySelectorAll('.basis').forEach((el, i) => el.classList.toggle('sel', i === b));
}
function showPixel(x, y) {
  const n = M.W * M.H, p = y * M.W + x;
  document.getElementById('pixel').textContent = `(${x}, ${y})`;
  const rows = [];
  for (let j = 0; j < M.k; j++) {
    const c = S.ids[j * n + p], v = S.top[j * n + p] / 255;
    const sw = `<span class="sw" style="background:rgb(${M.palette[c].join(',')})"></span>`;
    rows.push(`<tr data-class="${c}"><td>${sw}` +
      `${M.names[c]}</td><td class="num">${(100 * v).toFixed(0)}%</td></tr>`);
  }
  document.querySelector('#probs tbody').innerHTML = rows.join('');
  if (!M.K) return;
  const cy = Math.min(Math.floor(y * M.h / M.H), M.h - 1), cx = Math.min(Math.floor(x * M.w / M.W), M.w - 1);
  const cells = document.querySelectorAll('.basis'), m = M.h * M.w;
  for (let b = 0; b < M.K; b++) {
    const r = S.att[b * m + cy * M.w + cx] / 255;
    cells[b].textContent = `b${b} ${r.toFixed(2)}`;
    cells[b].style.setProperty('--r', `${(100 * r).toFixed(1)}%`);
  }
}
async function main() {
  const bytes = await inflate(document.getElementById('data').textContent.trim());
  const n = M.W * M.H;
  S.ids = bytes.subarray(0, M.k * n);
  S.top = bytes.subarray(M.k * n, 2 * M.k * n);
  S.att = bytes.subarray(2 * M.k * n);
  drawSeg();
  const seg = document.getElementById('seg'), slider = document.getElementById('opacity');
  const setOpacity = () => { seg.style.opacity = slider.value; };
  slider.addEventListener('input', setOpacity); setOpacity();
  const bases = document.getElementById('bases');
  for (let b = 0; b < M.K; b++) {
    const el = document.createElement('div');
    el.className = 'basis'; el.textContent = `b${b}`; el.dataset.basis = b;
    el.addEventListener('click', () => {
      if (S.basis === b) { S.basis = -1; document.getElementById('basis-map').hidden = true;
        el.classList.remove('sel');
        document.getElementById('basis-title').textContent = 'no basis selected'; }
      else drawBasis(b);
    });
    bases.appendChild(el);
  }
  const bar = document.getElementById('bar').getContext('2d');
  for (let i = 0; i < 200; i++) {
    bar.fillStyle = `rgb(${viridis(i / 199).join(',')})`; bar.fillRect(i, 0, 1, 10);
  }
  const stage = document.getElementById('stage'), cursor = document.getElementById('cursor');
  stage.addEventListener('mousemove', e => {
    const r = stage.getBoundingClientRect();
    const x = Math.min(Math.max(Math.floor((e.clientX - r.left) * M.W / r.width), 0), M.W - 1);
    const y = Math.min(Math.max(Math.floor((e.clientY - r.top) * M.H / r.height), 0), M.H - 1);
    cursor.style.display = 'block';
    cursor.style.left = `${(x + 0.5) * r.width / M.W}px`;
    cursor.style.top = `${(y + 0.5) * r.height / M.H}px`;
    showPixel(x, y);
  });
  document.body.dataset.ready = '1';
}
main().catch(e => { console.error(e); document.body.dataset.ready = 'error'; });
"""
