"""`write_report(run_dir)`: one self-contained HTML page about a training run.

The page embeds every picture as a base64 data URI and its CSS inline; it loads nothing, runs
no script and opens from disk. It reads the run directory the trainer writes:

    config.yaml     resolved config            env.json       versions, device, world size
    metrics.jsonl   train / eval lines         eval.json      final evaluation
    samples/*.npz   image, label, pred, attention, name
    bench.json      {"rows": [...], "title": ...}

Every part is optional: an interrupted run (partial metrics.jsonl, even with a truncated last
line) gets a page whose missing parts say what is missing and which command writes it. Charts
need matplotlib (``pip install emanet[plot]``); without it they become such notes too.
"""

from __future__ import annotations

import datetime as _dt
import warnings
from pathlib import Path

from ..fileio import atomic_write
from .page import (
    _CSS,
    _esc,
    _note,
    _Run,
    read_metrics,
)
from .sections import _SECTIONS

__all__ = ["write_report", "render_report", "read_metrics"]


def render_report(run_dir: str | Path, max_samples: int = 6) -> str:
    """The report of `run_dir` as an HTML string (see `write_report`)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(
            f"run directory {run_dir} does not exist (expected the output of `emanet train`)"
        )
    run = _Run(run_dir, max_samples)
    body = []
    for anchor, title, fn in _SECTIONS:
        try:
            content = fn(run)
        except Exception as e:  # a malformed part spoils its own section only
            warnings.warn(f"report section {title!r} failed: {e!r}", stacklevel=2)
            content = _note(f"This section could not be drawn: {type(e).__name__}: {e}", "error")
        heading = "" if anchor == "overview" else f"<h2>{_esc(title)}</h2>"
        body.append(f'<section id="{anchor}">{heading}{content}</section>')
    from .._version import __version__

    nav = "".join(f'<a href="#{a}">{_esc(t)}</a>' for a, t, _ in _SECTIONS[1:])
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    model = run._cfg("model", "name")
    title = f"{run_dir.resolve().name}" + (f" — {model}" if model else "")
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>emanet report: {_esc(title)}</title><style>{_CSS}</style></head><body><main>"
        f"<h1>{_esc(title)}</h1><p class='sub'>{_esc(run_dir.resolve())} · "
        f"report by emanet {_esc(__version__)} · {now}</p><nav>{nav}</nav>"
        f"{''.join(body)}</main></body></html>\n"
    )


def write_report(run_dir: str | Path, out: str | Path | None = None, max_samples: int = 6) -> Path:
    """Write the HTML report of a run directory and return its path.

    Args:
        run_dir: a directory written by `emanet train` (any part may be missing).
        out: output file; default ``run_dir/report.html``.
        max_samples: how many of samples/*.npz to show.
    """
    text = render_report(run_dir, max_samples=max_samples)
    out = Path(out) if out is not None else Path(run_dir) / "report.html"
    with atomic_write(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(0o644)  # a page to share: not the 0600 of the temporary file
    return out
