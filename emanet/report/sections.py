"""The sections of the report page, each `(run) -> HTML`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from .. import viz
from .page import (
    _NO_MPL,
    PRODUCERS,
    _esc,
    _fig,
    _have_matplotlib,
    _img,
    _missing,
    _note,
    _num,
    _png,
    _Run,
    _table,
)

# ---------------------------------------------------------------- sections


def _section_overview(run: _Run) -> str:
    ev = run.eval or (run.evals[-1] if run.evals else {})
    src = "final evaluation" if run.eval else ("last evaluation during training" if run.evals else "")
    cards = [
        ("mIoU", run.pct(ev.get("mIoU")), src),
        ("pixel accuracy", run.pct(ev.get("pixel_acc")), src),
        ("mean accuracy", run.pct(ev.get("mean_acc")), src),
    ]
    if run.train:
        total = run._cfg("train", "iters")
        last = run.train[-1]
        of = f" / {total:,}" if isinstance(total, int) and total > 0 else ""
        cards.append(("iterations", f"{int(last['iter']):,}{of}", "reached"))
        if isinstance(last.get("loss"), int | float):
            cards.append(("loss", f"{last['loss']:.4f}", "last logged"))
        if isinstance(last.get("time"), int | float):
            cards.append(("time", _duration(last["time"]), "training wall time"))
    env = run.env or {}
    if env.get("device"):
        cards.append(("device", f"{env['device']}", f"world size {env.get('world_size', 1)}"))
    out = ['<div class="cards">']
    out += [
        f"<div class='card'><span>{_esc(a)}</span><b>{_esc(b)}</b><span>{_esc(c)}</span></div>"
        for a, b, c in cards
    ]
    out.append("</div>")
    for name, why in run.problems.items():
        out.append(_note(f"{name} could not be read and is left out: {why}", "error"))
    missing = [n for n, ok in _presence(run).items() if not ok and n not in run.problems]
    if missing:
        shown = ", ".join("samples/" if n == "samples" else n for n in missing)
        out.append(_note(f"This run is incomplete (interrupted or still running?): missing {shown}"))
    if run.bad_lines:
        out.append(
            _note(
                f"{run.bad_lines} line(s) of metrics.jsonl could not be read and were skipped "
                "(a line cut short when the run stopped)."
            )
        )
    return "".join(out)


def _presence(run: _Run) -> dict[str, bool]:
    return {
        "config.yaml": run.config_text is not None,
        "env.json": run.env is not None,
        "metrics.jsonl": run.has_metrics,
        "eval.json": run.eval is not None,
        "samples": bool(run.samples),
    }


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h {s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m {s % 60:02d}s"


def _section_run(run: _Run) -> str:
    env = ""
    if run.env is None:
        env = _missing(run, "env.json", "No environment record")
    else:
        env = _table(
            [[k, v if not isinstance(v, dict | list) else json.dumps(v)] for k, v in run.env.items()]
        )
    cfg = (
        _missing(run, "config.yaml", "No config")
        if run.config_text is None
        else f"<pre>{_esc(run.config_text)}</pre>"
    )
    return (
        f"<div class='cols'><div><h3>Environment</h3>{env}</div>"
        f"<div><h3>Resolved config</h3>{cfg}</div></div>"
    )


def _smooth(y: np.ndarray, weight: float) -> np.ndarray:
    out, acc = np.empty_like(y), y[0]
    for i, v in enumerate(y):
        acc = weight * acc + (1 - weight) * v
        out[i] = acc
    return out


def _section_curves(run: _Run) -> str:
    if not run.has_metrics:
        return _missing(run, "metrics.jsonl", "No training curves")
    if not run.train and not run.evals:
        return _note("metrics.jsonl has no readable lines yet. " + PRODUCERS["metrics.jsonl"])
    if not _have_matplotlib():
        return _note(_NO_MPL)
    fig = _fig((12.4, 3.5))
    ax_loss, ax_lr, ax_miou = fig.subplots(1, 3)
    it = np.array([r["iter"] for r in run.train], dtype=float)
    for key, color in (("loss", "C0"), ("aux_loss", "C1")):
        pts = [(r["iter"], r[key]) for r in run.train if isinstance(r.get(key), int | float)]
        if pts:
            x, y = np.array(pts, dtype=float).T
            ax_loss.plot(x, y, color=color, alpha=0.3, lw=0.8)
            ax_loss.plot(x, _smooth(y, 0.9 if len(y) > 50 else 0.0), color=color, lw=1.6, label=key)
    ax_loss.set(title="training loss", xlabel="iteration")
    ax_loss.legend(fontsize=8)
    lr = [(r["iter"], r["lr"]) for r in run.train if isinstance(r.get("lr"), int | float)]
    if lr:
        ax_lr.plot(*np.array(lr, dtype=float).T, color="C2")
    ax_lr.set(title="learning rate", xlabel="iteration")
    ev = [(r["iter"], r["mIoU"] * run.scale) for r in run.evals if isinstance(r.get("mIoU"), int | float)]
    if ev:
        x, y = np.array(ev, dtype=float).T
        ax_miou.plot(x, y, "o-", color="C3")
        ax_miou.margins(x=0.08, y=0.2)  # room for the "best" label
        b = int(np.argmax(y))
        ax_miou.annotate(
            f"best {y[b]:.2f}",
            (x[b], y[b]),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize=8,
        )
    else:
        ax_miou.text(0.5, 0.5, "no evaluation yet", ha="center", va="center", transform=ax_miou.transAxes)
    ax_miou.set(title="validation mIoU (%)", xlabel="iteration")
    for ax in (ax_loss, ax_lr, ax_miou):
        ax.grid(alpha=0.3)
        if len(it):
            ax.set_xlim(left=0)
    caption = f"{len(run.train)} training lines, {len(run.evals)} evaluation lines"
    return _img(_png(fig), "training curves", "chart") + f"<p class='sub'>{caption}</p>"


def _section_eval(run: _Run) -> str:
    ev = run.eval
    if ev is None and not run.evals:
        return _missing(run, "eval.json", "No evaluation")
    parts = []
    if ev is None:
        ev = run.evals[-1]
        parts.append(
            _missing(
                run, "eval.json", f"Showing the last evaluation during training (iteration {ev['iter']})"
            )
        )
    rows: list[list[Any]] = [
        ["mIoU", _bold(run.pct(ev.get("mIoU")))],
        ["pixel accuracy", run.pct(ev.get("pixel_acc"))],
        ["mean accuracy", run.pct(ev.get("mean_acc"))],
    ]
    for key, label in (
        ("num_images", "images"),
        ("mode", "mode"),
        ("ms_flip", "multi-scale + flip"),
        ("iter", "iteration"),
    ):
        if key in ev:
            rows.append([label, ev[key]])
    parts.insert(0, _table(rows, ["metric", "value"], 'id="miou-table"'))
    ious = ev.get("per_class_iou")
    if not ious:
        return "".join(parts)
    accs = ev.get("per_class_acc") or [None] * len(ious)
    absent = ev.get("absent_classes") or [run.name_of(i) for i, v in enumerate(ious) if v is None]
    if absent:
        parts.append(
            _note(
                "Absent from both ground truth and prediction, left out of the means: "
                + ", ".join(map(str, absent))
            )
        )
    colors = run.colors(len(ious))
    if _have_matplotlib():
        parts.append(_img(_png(_iou_chart(run, ious, colors)), "per-class IoU", "chart"))
    else:
        parts.append(_note(_NO_MPL))
    table = [
        [
            (
                _swatch(colors[i]) + _esc(run.name_of(i)),
                "",
            ),
            _num(i),
            (run.pct(v), "num"),
            (run.pct(a), "num"),
        ]
        for i, (v, a) in enumerate(zip(ious, accs, strict=False))
    ]
    parts.append(
        f"<details><summary>per-class table ({len(ious)} classes)</summary>"
        f"{_table(table, ['class', 'id', 'IoU', 'accuracy'])}</details>"
    )
    return "".join(parts)


def _swatch(rgb) -> str:
    return f"<span class='sw' style='background:rgb{tuple(int(v) for v in rgb)}'></span>"


def _bold(text: str) -> tuple[str, str]:
    return (f"<b>{_esc(text)}</b>", "num")


def _iou_chart(run: _Run, ious: list, colors: np.ndarray):
    present = sorted(
        ((v * run.scale, i) for i, v in enumerate(ious) if isinstance(v, int | float)), reverse=True
    )
    fig = _fig((8.5, 0.8 + 0.24 * max(len(present), 3)))
    ax = fig.subplots()
    y = np.arange(len(present))
    vals = [v for v, _ in present]
    ax.barh(y, vals, color=[colors[i] / 255.0 for _, i in present], edgecolor="#333", lw=0.5)
    ax.set_yticks(y, [run.name_of(i) for _, i in present], fontsize=8)
    ax.invert_yaxis()
    for yy, v in zip(y, vals, strict=True):
        ax.text(v + 0.5, yy, f"{v:.1f}", va="center", fontsize=7)
    ax.set(xlim=(0, 105), xlabel="IoU (%)", title="per-class IoU, sorted")
    ax.grid(axis="x", alpha=0.3)
    return fig


def _section_confusion(run: _Run) -> str:
    cm = (run.eval or {}).get("confusion_matrix")
    if cm is None:
        return (
            _missing(run, "eval.json", "No confusion matrix")
            if run.eval is None
            else _note("eval.json has no confusion_matrix. " + PRODUCERS["eval.json"])
        )
    if not _have_matplotlib():
        return _note(_NO_MPL)
    cm = np.asarray(cm, dtype=np.float64)
    n = len(cm)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.ma.masked_invalid(np.divide(cm, rows, out=np.full_like(cm, np.nan), where=rows > 0))
    size = min(max(4.5, 0.42 * n + 2.0), 22.0)
    fig = _fig((size + 1.2, size))
    ax = fig.subplots()
    cmap = _cmap_with_bad("Blues")
    im = ax.imshow(norm, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    names = [run.name_of(i) for i in range(n)]
    fs = 8 if n <= 30 else 5
    ax.set_xticks(range(n), names, rotation=60, ha="right", fontsize=fs)
    ax.set_yticks(range(n), names, fontsize=fs)
    ax.set(xlabel="prediction", ylabel="ground truth", title="confusion matrix (row-normalised)")
    if n <= 25:
        for (r, c), v in np.ndenumerate(norm.filled(np.nan)):
            if np.isfinite(v) and v >= 0.005:
                ax.text(
                    c,
                    r,
                    f"{v:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if v > 0.55 else "black",
                )
    fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of the ground-truth row")
    note = "Rows with no ground-truth pixels are grey." if (rows == 0).any() else ""
    return _img(_png(fig), "confusion matrix", "chart") + (f"<p class='sub'>{note}</p>" if note else "")


def _cmap_with_bad(name: str):
    import matplotlib

    return matplotlib.colormaps[name].with_extremes(bad="#d0d0d0")


def _section_samples(run: _Run) -> str:
    if not run.samples:
        return (
            _missing(run, "samples", "No validation samples")
            if not (run.dir / "samples").is_dir()
            else _note("samples/ has no .npz files. " + PRODUCERS["samples"])
        )
    parts = []
    for path in run.samples:
        try:
            parts.append(_sample_html(run, path))
        except Exception as e:  # one bad file should not hide the others
            parts.append(_note(f"could not show {path.name}: {type(e).__name__}: {e}", "error"))
    return "".join(parts)


def _sample_html(run: _Run, path: Path) -> str:
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    ignore = run.ignore_index
    image, pred = viz._as_rgb_image(data["image"]), data["pred"].astype(np.int64)
    label = data["label"].astype(np.int64) if "label" in data else None
    name = data["name"].item() if "name" in data else path.stem
    name = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
    present = np.unique(np.concatenate([pred.ravel(), label.ravel() if label is not None else []])).astype(
        int
    )
    ids = [int(i) for i in present if 0 <= i != ignore]
    pal = run.colors(max(ids + [0]) + 1)
    panels = [(image, "image")]
    stats = ""
    if label is not None:
        panels.append((viz.colorize(label, pal, ignore), "ground truth"))
        valid = label != ignore
        if valid.any():
            stats = f" — pixel accuracy {100 * float((pred[valid] == label[valid]).mean()):.1f} %"
    panels += [
        (viz.colorize(pred, pal, ignore), "prediction"),
        (viz.overlay(image, pred, pal, ignore_index=ignore), "overlay"),
    ]
    if label is not None:
        err = np.where((pred != label)[..., None], np.array([220, 30, 30], np.uint8), image // 3 + 150)
        err[label == ignore] = 255
        panels.append((err.astype(np.uint8), "errors (red)"))
    att_note = ""
    if "attention" in data:
        att = data["attention"].astype(np.float32)
        up = max(1, math.ceil(48 / max(att.shape[1:])))
        cmap = "viridis" if _have_matplotlib() else "gray"
        owner = viz.argmax_basis_map(att)
        panels += [
            (viz.attention_grid(att, upscale=up, cmap=cmap), f"responsibilities, K={att.shape[0]}"),
            (viz.argmax_basis_map(att, upscale=up), "argmax basis"),
            (viz.overlay(image, owner, alpha=0.55), "argmax basis over image"),
        ]
    else:
        att_note = "<p class='sub'>No attention maps in this sample (only EMA models save them).</p>"
    figs = "".join(
        f"<figure{' class=wide' if c.startswith('resp') else ''}>{_img(a, c)}"
        f"<figcaption>{_esc(c)}</figcaption></figure>"
        for a, c in panels
    )
    legend = "".join(_swatch(pal[i]) + _esc(run.name_of(i)) for i in ids)
    return (
        f"<h3>{_esc(name)}<span class='sub'>{_esc(stats)}</span></h3><div class='panels'>{figs}</div>"
        f"<p>{legend}</p>{att_note}"
    )


def _section_bench(run: _Run) -> str:
    if run.bench is None:
        return _missing(run, "bench.json", "No benchmark")
    rows = run.bench.get("rows") or []
    if not rows:
        return _note("bench.json has no rows. " + PRODUCERS["bench.json"])
    cols = list(dict.fromkeys(k for r in rows for k in r))
    title = f"<p class='sub'>{_esc(run.bench['title'])}</p>" if run.bench.get("title") else ""
    if isinstance(run.bench.get("machine"), dict):
        machine = ", ".join(f"{k}: {v}" for k, v in run.bench["machine"].items())
        title += f"<p class='sub'>{_esc(machine)}</p>"
    return title + _table([[_num(r.get(c)) for c in cols] for r in rows], cols, 'id="bench-table"')


_SECTIONS = [
    ("overview", "Overview", _section_overview),
    ("curves", "Training curves", _section_curves),
    ("evaluation", "Evaluation", _section_eval),
    ("confusion", "Confusion matrix", _section_confusion),
    ("samples", "Validation samples", _section_samples),
    ("bench", "Benchmark", _section_bench),
    ("run", "Config and environment", _section_run),
]
