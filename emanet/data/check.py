"""`emanet data check`: read every sample of the train and val splits and say what is wrong.

    report = check_dataset(load_config("folder", ["data.root=my_data"]))
    print("\\n".join(report.lines())); report.ok  # False when a problem is an error

The report holds counts, image sizes and modes, EXIF orientation tags, the class histogram
(mask values after the dataset's mapping) against the classes, classes never seen, the ignore
fraction, the suspected mask conventions (`masks.convention_hints`) and one problem line per
bad file, naming the file and the fix. `emanet.report.data_page` renders it as HTML.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
from PIL import Image
from tqdm import tqdm

from .base import check_label, read_image
from .datasets import build_dataset
from .errors import DataError
from .masks import apply_label_map, convention_hints

__all__ = ["Problem", "SplitReport", "Report", "check_dataset"]

_ORIENTATION = 0x0112  # the EXIF orientation tag
_PREVIEW = 256  # longest side of the overlay previews


@dataclass
class Problem:
    """One finding: `level` is "error" (training would be wrong or fail) or "warning"."""

    level: str
    where: str
    message: str

    def line(self) -> str:
        return f"{self.level}: {self.where}: {self.message}"


@dataclass
class SplitReport:
    """What one split holds.

    Attributes:
        class_pixels: {class id or ignore: pixels} of the labels as the model sees them.
        raw_values: {mask value after label_map, before reduce/checks: pixels}.
        previews: up to a few (name, image (h, w, 3) uint8, label (h, w) int64), downscaled.
    """

    split: str
    num_samples: int = 0
    num_read: int = 0
    num_unlabelled_files: int = 0
    sizes: Counter = field(default_factory=Counter)
    image_modes: Counter = field(default_factory=Counter)
    mask_modes: Counter = field(default_factory=Counter)
    orientations: Counter = field(default_factory=Counter)
    class_pixels: dict[int, int] = field(default_factory=dict)
    raw_values: dict[int, int] = field(default_factory=dict)
    previews: list[tuple[str, np.ndarray, np.ndarray]] = field(default_factory=list)


@dataclass
class Report:
    """The result of `check_dataset`; `ok` is False when any problem is an error."""

    dataset: str
    root: str
    class_names: list[str] = field(default_factory=list)
    palette: list[tuple[int, int, int]] = field(default_factory=list)
    ignore_index: int = 255
    splits: list[SplitReport] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(p.level == "error" for p in self.problems)

    def add(self, level: str, where: Any, message: str) -> None:
        self.problems.append(Problem(level, str(where), message))

    def ignore_fraction(self, split: SplitReport) -> float:
        total = sum(split.class_pixels.values())
        return split.class_pixels.get(self.ignore_index, 0) / total if total else 0.0

    def lines(self, max_problems: int = 50) -> list[str]:
        """A plain-text summary: one line per split, then one line per problem."""
        head = f"{self.dataset} at {self.root}: {len(self.class_names)} classes"
        out = [f"{head}, ignore label {self.ignore_index}"]
        for s in self.splits:
            sizes = ", ".join(f"{w}x{h} ({n})" for (w, h), n in s.sizes.most_common(3))
            modes = ", ".join(f"{m} ({n})" for m, n in s.image_modes.most_common())
            rotated = sum(n for o, n in s.orientations.items() if o not in (None, 1))
            out.append(
                f"  {s.split}: {s.num_samples} samples, {s.num_read} read; sizes {sizes or '-'}; image modes "
                f"{modes or '-'}; {rotated} with an EXIF rotation; ignore fraction "
                f"{100 * self.ignore_fraction(s):.1f}%"
            )
        shown = self.problems[:max_problems]
        out += [p.line() for p in shown]
        if len(self.problems) > len(shown):
            out.append(f"... and {len(self.problems) - len(shown)} more problems (see the HTML page)")
        errors = sum(p.level == "error" for p in self.problems)
        warnings = len(self.problems) - errors
        out.append(f"{errors} errors, {warnings} warnings")
        return out


def _add_counts(target: dict[int, int], array: np.ndarray) -> None:
    values, freq = np.unique(array, return_counts=True)
    for v, c in zip(values.tolist(), freq.tolist(), strict=True):
        target[int(v)] = target.get(int(v), 0) + int(c)


def _preview(image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = label.shape
    step = max(1, -(-max(h, w) // _PREVIEW))
    return image[::step, ::step].copy(), label[::step, ::step].copy()


def _inspect(dataset, i: int) -> dict[str, Any]:
    """Read sample i like the dataset does, keeping what the report needs; errors are returned."""
    image_path, mask_path = dataset.files[i] if hasattr(dataset, "files") else (f"sample {i}", None)
    out: dict[str, Any] = {"index": i, "image_path": str(image_path), "mask_path": mask_path}
    try:
        if not hasattr(dataset, "read_raw_mask"):  # e.g. the synthetic dataset
            image, label = dataset.load(i)
            out.update(image_mode="RGB", orientation=None, raw=label)
        else:
            image = read_image(image_path)  # first: a bad file is a DataError naming it and the fix
            with Image.open(image_path) as im:
                out.update(image_mode=im.mode, orientation=im.getexif().get(_ORIENTATION))
            if mask_path is None:
                label = np.full(image.shape[:2], dataset.ignore_index, dtype=np.int64)
                out["raw"] = label
            else:
                raw = dataset.read_raw_mask(mask_path, image.shape[:2])
                with Image.open(mask_path) as m:
                    out["mask_mode"] = m.mode
                label = dataset.map_label(raw, mask_path)
                label_map = getattr(dataset, "label_map", None)
                if label_map:
                    raw = apply_label_map(raw, label_map)
                out["raw"] = raw
                check_label(label, dataset.num_classes, dataset.ignore_index, mask_path)
        out.update(image=image, label=label, size=(image.shape[1], image.shape[0]))
    except (DataError, OSError) as e:
        out["error"] = (getattr(e, "path", None) or image_path, str(e))
    return out


def _check_split(report: Report, dataset, split: str, workers: int, progress: bool, previews: int) -> None:
    s = SplitReport(split, num_samples=len(dataset))
    report.splits.append(s)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = pool.map(lambda i: _inspect(dataset, i), range(len(dataset)))
        for r in tqdm(results, total=len(dataset), desc=f"check {split}", disable=not progress, leave=False):
            if "raw" in r:
                _add_counts(s.raw_values, r["raw"])
            if "mask_mode" in r:
                s.mask_modes[r["mask_mode"]] += 1
            if "error" in r:
                report.add("error", *r["error"])
                continue
            s.num_read += 1
            s.sizes[r["size"]] += 1
            s.image_modes[r["image_mode"]] += 1
            s.orientations[r["orientation"]] += 1
            _add_counts(s.class_pixels, r["label"])
            if r["mask_path"] is None:
                s.num_unlabelled_files += 1
            if r["orientation"] not in (None, 1):
                report.add(
                    "warning",
                    r["image_path"],
                    f"stored rotated/flipped (EXIF orientation {r['orientation']}); it is read upright, as "
                    f"displayed: its mask must match the displayed image",
                )
            if r["image_mode"].startswith("I") or r["image_mode"] == "F":
                report.add(
                    "warning", r["image_path"], f"{r['image_mode']} (16/32-bit) image, scaled to 8 bits"
                )
            if len(s.previews) < previews and (r["label"] != report.ignore_index).any():
                s.previews.append((r["image_path"], *_preview(r["image"], r["label"])))
    _summarise_split(report, s, dataset)


def _summarise_split(report: Report, s: SplitReport, dataset) -> None:
    where = f"split {s.split!r}"
    labelled = {v for v, n in s.class_pixels.items() if v != report.ignore_index and n > 0}
    if s.num_read and not labelled:
        report.add(
            "error",
            where,
            f"no labelled pixel in {s.num_read} samples (all {report.ignore_index}, the ignore label); "
            f"add masks (masks/<name>.png) or fix their values",
        )
    for hint in convention_hints(
        s.raw_values, len(report.class_names), report.ignore_index, report.class_names
    ):
        report.add("error", where, hint)
    if s.split == "train" or s is report.splits[0]:
        never = [n for i, n in enumerate(report.class_names) if i not in labelled]
        if never and labelled:
            report.add(
                "warning",
                where,
                f"classes never seen: {', '.join(never)}; add samples of them or drop them from the classes",
            )
    modes = {m for m in s.mask_modes if m in ("RGB", "RGBA")}
    if modes and getattr(dataset, "PALETTE", None):
        report.add(
            "warning", where, "colour masks: mapped through the class palette (classes.yaml 'palette')"
        )


def check_dataset(cfg: Any, workers: int = 8, progress: bool = True, previews: int = 4) -> Report:
    """Read every sample of `cfg.data.train_split` and `cfg.data.val_split` and report on them.

    Args:
        cfg: an `emanet.engine.config.Config` (only `cfg.data` is read).
        workers: threads reading files.
        progress: show a tqdm bar per split.
        previews: overlays kept per split for the HTML page.

    Returns:
        A `Report`; a split that cannot be built (missing folder, unknown option, duplicate
        names, ...) is one error whose message names the file and the fix.
    """
    data = cfg.data
    report = Report(dataset=data.name, root=str(data.root), ignore_index=data.ignore_index)
    seen = set()
    for role, split in (("train", data.train_split), ("val", data.val_split)):
        if split in seen:
            continue
        seen.add(split)
        try:
            dataset = build_dataset(data.name, data.root, split, **dict(data.options))
        except (DataError, ValueError) as e:
            report.add("error", f"data.{role}_split={split}", str(e).splitlines()[0])
            continue
        report.class_names = list(dataset.CLASSES)
        report.palette = [cast(tuple[int, int, int], tuple(int(v) for v in c)) for c in dataset.PALETTE]
        report.ignore_index = getattr(dataset, "ignore_index", data.ignore_index)
        _check_split(report, dataset, split, workers, progress, previews)
    return report
