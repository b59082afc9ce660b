"""`emanet report`: the HTML page of a run directory, complete or interrupted.

`make_run_dir` writes a realistic run directory in the trainer's format (the browser test
uses it too).
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emanet.cli import main
from emanet.report import read_metrics, render_report, write_report

CLASS_NAMES = ["background", "disc", "box", "ring", "cross", "stripe"]
CONFIG_YAML = """\
model:
  name: emanet_r18
  num_classes: 6
  num_bases: 16
data:
  name: synthetic
  crop_size: [97, 129]
train:
  iters: 2000
  batch_size: 8
  lr: 0.009
eval:
  mode: whole
"""


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def make_run_dir(root: Path, num_train: int = 200, num_samples: int = 3, k: int = 16) -> Path:
    """A finished run: config, env, metrics (num_train train + 3 eval lines), eval.json for 6
    classes (one absent), num_samples samples with (k, h, w) attention, and bench.json."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(CONFIG_YAML)
    env = {
        "python": "3.11.2",
        "torch": "2.13.0",
        "emanet": "0.1.0",
        "device": "cpu",
        "world_size": 1,
        "hostname": "test",
        "started": "2026-11-22T04:00:00+00:00",
    }
    (root / "env.json").write_text(json.dumps(env))
    lines = []
    for n in range(num_train):
        it = 10 * (n + 1)
        loss = 2.0 * np.exp(-it / 600) + 0.2 + 0.05 * rng.standard_normal()
        lr = 0.009 * (1 - it / 2001) ** 0.9
        lines.append(
            {
                "type": "train",
                "iter": it,
                "loss": float(loss),
                "aux_loss": float(0.4 * loss),
                "lr": lr,
                "time": it * 0.05,
            }
        )
        if it % 700 == 0 or it == 10 * num_train:
            miou = 0.8 - 0.5 * np.exp(-it / 700)
            lines.append(
                {"type": "eval", "iter": it, "mIoU": miou, "pixel_acc": miou + 0.1, "mean_acc": miou + 0.05}
            )
    (root / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))

    cm = rng.integers(0, 40, (6, 6)) + np.diag([5000, 900, 700, 600, 0, 300])
    cm[4, :] = 0
    cm[:, 4] = 0  # class "cross" absent from ground truth and prediction
    inter, union = np.diag(cm), cm.sum(0) + cm.sum(1) - np.diag(cm)
    iou = [float(i / u) if u else None for i, u in zip(inter, union, strict=True)]
    acc = [float(i / r) if r else None for i, r in zip(inter, cm.sum(1), strict=True)]
    ev = {
        "mIoU": float(np.mean([v for v in iou if v is not None])),
        "pixel_acc": float(inter.sum() / cm.sum()),
        "mean_acc": float(np.mean([v for v in acc if v is not None])),
        "class_names": CLASS_NAMES,
        "per_class_iou": iou,
        "per_class_acc": acc,
        "confusion_matrix": cm.tolist(),
        "absent_classes": ["cross"],
        "num_images": 50,
        "mode": "whole",
        "ms_flip": False,
    }
    (root / "eval.json").write_text(json.dumps(ev))

    (root / "samples").mkdir(exist_ok=True)
    h, w = 97, 129
    yy, xx = np.mgrid[:h, :w]
    for s in range(num_samples):
        label = np.zeros((h, w), np.int64)
        label[(yy - 40 - 5 * s) ** 2 + (xx - 50) ** 2 < 400] = 1
        label[60:85, 80 + 5 * s : 115] = 2
        label[:, :6] = 255
        pred = label.copy()
        pred[pred == 255] = 0
        pred[70:80, 20:40] = 5
        image = (
            (rng.uniform(60, 120, (h, w, 3)) + 100 * (label[..., None] == 1)).clip(0, 255).astype(np.uint8)
        )
        fh, fw = (h - 1) // 8 + 1, (w - 1) // 8 + 1
        # bases that each prefer one class, plus smooth noise: responsibilities follow the objects
        small = label[::8, ::8][:fh, :fw]
        noise = np.cumsum(np.cumsum(rng.standard_normal((k, fh, fw)), axis=1), axis=2) / 4
        logits = 4.0 * (small[None] == (np.arange(k) % 3)[:, None, None]) + noise
        attention = _softmax(logits, axis=0).astype(np.float32)
        np.savez(
            root / "samples" / f"{s:03d}.npz",
            image=image,
            label=label,
            pred=pred,
            attention=attention,
            name=np.array(f"val_{s:04d}"),
        )
    bench = {
        "title": "CPU, batch 1, 129x129",
        "rows": [
            {"model": "emanet_r18", "mIoU": 0.71, "params (M)": 11.9, "GMACs": 7.25, "ms / image": 41.3},
            {"model": "fcn_r18", "mIoU": 0.52, "params (M)": 12.4, "GMACs": 8.10, "ms / image": 38.0},
        ],
    }
    (root / "bench.json").write_text(json.dumps(bench))
    return root


def make_interrupted_run(root: Path) -> Path:
    """A run killed early: only a partial metrics.jsonl whose last line is cut short."""
    root.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps(
            {"type": "train", "iter": 10 * (i + 1), "loss": 2.0 - 0.01 * i, "lr": 0.01, "time": 0.5 * i}
        )
        for i in range(30)
    ]
    (root / "metrics.jsonl").write_text("\n".join(lines) + '\n{"type": "train", "iter": 310, "lo')
    return root


def _images(page: str) -> list[Image.Image]:
    srcs = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    return [Image.open(io.BytesIO(base64.b64decode(s))) for s in srcs]


def test_read_metrics_tolerates_truncated_line(tmp_path):
    run = make_interrupted_run(tmp_path / "run")
    train, evals, bad = read_metrics(run / "metrics.jsonl")
    assert len(train) == 30 and evals == [] and bad == 1
    assert train[-1]["iter"] == 300


@pytest.mark.slow
def test_report_complete_run(tmp_path):
    run = make_run_dir(tmp_path / "run")
    path = write_report(run)
    assert path == run / "report.html"
    page = path.read_text()
    # self-contained: no external resource, no script at all
    assert "<script" not in page.lower()
    assert not re.search(r'(src|href)="(?!data:|#)', page)
    assert 'id="miou-table"' in page and 'id="bench-table"' in page
    assert 'class="note error"' not in page  # no section failed
    # every part is there: curves, per-class chart, confusion, 3 samples x 8 panels, bench, config, env
    images = _images(page)
    assert len(images) == 3 + 3 * 8
    assert all(im.width > 0 and im.height > 0 for im in images)
    for text in (
        "Training curves",
        "per-class IoU",
        "confusion matrix",
        "val_0002",
        "emanet_r18",
        "fcn_r18",
        "world_size",
        "crop_size",
        "responsibilities, K=16",
        "argmax basis",
    ):
        assert text in page, text
    # mIoU shown as a percentage, absent class named
    miou = json.loads((run / "eval.json").read_text())["mIoU"]
    assert f"{100 * miou:.2f} %" in page
    assert re.search(r"left out of the means: cross", page)
    assert "is missing" not in page


@pytest.mark.slow
def test_report_interrupted_run_says_what_is_missing(tmp_path):
    run = make_interrupted_run(tmp_path / "run")
    page = write_report(run, out=tmp_path / "out" / "r.html").read_text()
    assert "1 line(s) of metrics.jsonl could not be read" in page
    assert 'class="note error"' not in page
    for part, command in (
        ("config.yaml", "emanet train CONFIG"),
        ("env.json", "emanet train CONFIG"),
        ("eval.json", "emanet eval CONFIG --checkpoint PATH"),
        ("samples", "emanet predict"),
        ("bench.json", "emanet bench"),
    ):
        assert f"{part + '/' if part == 'samples' else part} is missing" in page, part
        assert command in page, command
    assert len(_images(page)) == 1  # the training curves from the partial metrics


def test_report_eval_lines_without_eval_json(tmp_path):
    run = make_run_dir(tmp_path / "run")
    (run / "eval.json").unlink()
    page = render_report(run)
    assert 'id="miou-table"' in page
    assert "Showing the last evaluation during training (iteration 2000)" in page
    assert "No confusion matrix: eval.json is missing" in page


@pytest.mark.slow
def test_report_empty_dir_and_bad_file(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    page = render_report(run)
    assert "metrics.jsonl is missing" in page
    make_run_dir(run, num_samples=1)
    (run / "samples" / "bad.npz").write_bytes(b"not a zip")
    page = render_report(run)
    assert "could not show bad.npz" in page and "val_0000" in page


def test_report_missing_dir_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_report(tmp_path / "nope")


@pytest.mark.slow
def test_report_percent_scale(tmp_path):
    """A trainer that logs percentages (78.3) instead of fractions (0.783) reads the same."""
    run = make_run_dir(tmp_path / "run", num_samples=0)
    ev = json.loads((run / "eval.json").read_text())
    for key in ("mIoU", "pixel_acc", "mean_acc"):
        ev[key] *= 100
    ev["per_class_iou"] = [None if v is None else 100 * v for v in ev["per_class_iou"]]
    (run / "eval.json").write_text(json.dumps(ev))
    assert f"{ev['mIoU']:.2f} %" in render_report(run)


def test_cli_report(tmp_path, capsys):
    run = make_interrupted_run(tmp_path / "run")
    assert main(["report", str(run), "--out", str(tmp_path / "x.html")]) == 0
    assert (tmp_path / "x.html").is_file() and "wrote" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_report_unreadable_files_are_noted(tmp_path):
    run = make_run_dir(tmp_path / "run", num_samples=1)
    (run / "eval.json").write_text('{"mIoU": 0.5, "pix')  # cut short
    (run / "config.yaml").write_text("model: [unclosed")
    page = render_report(run)
    assert "eval.json could not be read and is left out: JSONDecodeError" in page
    assert "config.yaml could not be read" in page
    assert "No confusion matrix: eval.json could not be read" in page
    assert 'id="miou-table"' in page  # falls back to the last evaluation in metrics.jsonl
