"""The HTML page of `emanet data check`: problems, per-split summary, class histogram, overlays.

Self-contained like the run report (inline CSS, images as data URIs); the histogram is drawn
with HTML bars, so no plotting library is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .. import viz
from ..data.check import Report, SplitReport
from .page import _CSS, _esc, _img, _note, _table

__all__ = ["render_check_page", "write_check_page"]

_BAR_CSS = ".bar{display:inline-block;height:12px;background:#0969da;vertical-align:middle}"


def _histogram(report: Report, s: SplitReport) -> str:
    total = sum(s.class_pixels.values()) or 1
    ids = list(range(len(report.class_names))) + [report.ignore_index]
    rows = []
    for i in ids:
        n = s.class_pixels.get(i, 0)
        name = report.class_names[i] if i < len(report.class_names) else "(ignore)"
        colour = report.palette[i] if i < len(report.palette) else (224, 224, 192)
        swatch = f'<span class="sw" style="background:rgb{tuple(colour)}"></span>'
        bar = f'<span class="bar" style="width:{max(1, round(300 * n / total)) if n else 0}px"></span>'
        rows.append(
            [i, (swatch + _esc(name), ""), (str(n), "num"), (f"{100 * n / total:.2f}%", "num"), (bar, "")]
        )
    others = sorted(v for v in s.class_pixels if v not in ids)
    for v in others:  # values outside the classes (only when the mapping left some)
        rows.append([v, "(not a class)", (str(s.class_pixels[v]), "num"), ("", ""), ("", "")])
    return _table(rows, ["id", "class", "pixels", "share", ""])


def _overlays(report: Report, s: SplitReport) -> str:
    if not s.previews:
        return ""
    palette = np.asarray(report.palette or viz.default_palette(256), dtype=np.uint8).reshape(-1, 3)
    figs = []
    for name, image, label in s.previews:
        shown = np.where(label < len(palette), label, report.ignore_index)
        over = viz.overlay(image, shown, palette=palette, ignore_index=report.ignore_index)
        caption = f"<figcaption>{_esc(Path(name).name)}</figcaption>"
        figs.append(f"<figure class='wide'>{_img(over, name)}{caption}</figure>")
    return "<h3>Overlays (mask over image)</h3><div class='panels'>" + "".join(figs) + "</div>"


def render_check_page(report: Report) -> str:
    """The whole page as one HTML string."""
    status = "no errors" if report.ok else "errors found: training would fail or learn the wrong labels"
    parts = [
        f"<h1>Data check: {_esc(report.dataset)}</h1>",
        f"<p class='sub'>{_esc(report.root)} &middot; {len(report.class_names)} classes &middot; "
        f"ignore label {report.ignore_index} &middot; {_esc(status)}</p>",
    ]
    problems = "".join(_note(p.line(), "error" if p.level == "error" else "") for p in report.problems)
    parts.append(
        f"<section><h2>Problems ({len(report.problems)})</h2>{problems or _note('none found')}</section>"
    )
    for s in report.splits:
        rows: list[list[Any]] = [
            ["samples", s.num_samples],
            ["read", s.num_read],
            ["without a mask file", s.num_unlabelled_files],
            ["sizes (WxH)", ", ".join(f"{w}x{h}: {n}" for (w, h), n in s.sizes.most_common(8))],
            ["image modes", ", ".join(f"{m}: {n}" for m, n in s.image_modes.most_common())],
            ["mask modes", ", ".join(f"{m}: {n}" for m, n in s.mask_modes.most_common())],
            ["EXIF orientation", ", ".join(f"{o or 'none'}: {n}" for o, n in s.orientations.most_common())],
            ["ignore fraction", f"{100 * report.ignore_fraction(s):.2f}%"],
            ["mask values (as stored)", ", ".join(str(v) for v in sorted(s.raw_values)[:40])],
        ]
        parts.append(
            f"<section><h2>Split {_esc(s.split)}</h2>{_table(rows)}<h3>Class histogram</h3>"
            f"{_histogram(report, s)}{_overlays(report, s)}</section>"
        )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>emanet data check</title>"
        f"<style>{_CSS}{_BAR_CSS}</style></head><body><main>{''.join(parts)}</main></body></html>"
    )


def write_check_page(report: Report, path: str | Path) -> Path:
    """Write the page to `path` (folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_check_page(report), encoding="utf-8")
    return path
