"""Checks that run before the first training iteration, and the evaluator's "nothing labelled" note.

`preflight(cfg)` costs a few dozen file reads: it builds the train and val datasets (a mistyped
split fails now, not after the whole run) and reads a spread of their masks, so that masks whose
values are not the class ids (0/255 binary masks, masks without a labelled pixel) stop the run
with the fix in the message. `emanet data check` reads every sample and says more.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .datasets import build_dataset
from .errors import DataError
from .masks import convention_hints

__all__ = ["preflight", "sample_label_histogram", "unlabelled_split_message"]


def sample_label_histogram(
    dataset, max_samples: int = 16, skip_bad: bool = False
) -> tuple[dict[int, int], int]:
    """Class-id histogram of up to `max_samples` labels spread evenly over the dataset.

    Args:
        dataset: a SegmentationDataset (anything with `load(i) -> (image, label)` and len).
        max_samples: labels to read.
        skip_bad: skip samples that raise DataError (else the error propagates).

    Returns:
        ({class id or ignore: pixel count}, number of labels read).
    """
    n = len(dataset)
    if n == 0:
        return {}, 0
    indices = sorted({int(i) for i in np.linspace(0, n - 1, min(n, max_samples))})
    counts: dict[int, int] = {}
    read = 0
    for i in indices:
        try:
            _, label = dataset.load(i)
        except DataError:
            if skip_bad:
                continue
            raise
        values, freq = np.unique(np.asarray(label), return_counts=True)
        for v, c in zip(values.tolist(), freq.tolist(), strict=True):
            counts[int(v)] = counts.get(int(v), 0) + int(c)
        read += 1
    return counts, read


def _where(cfg: Any, split: str) -> str:
    return (
        f"data.root={cfg.data.root} split {split!r}" if cfg.data.name != "synthetic" else f"split {split!r}"
    )


def preflight(cfg: Any, max_samples: int = 16) -> None:
    """Validate the data of a training config before any expensive work.

    Checks: both splits (`data.train_split`, `data.val_split`) exist with the given
    `data.options`; a spread of `max_samples` masks of each reads and fits num_classes; the
    masks hold some labelled pixel and, with two or more classes, some class other than 0 (0/255
    binary masks with classes [background, object] would train the object as "ignore").

    Args:
        cfg: an `emanet.engine.config.Config` (only `cfg.data` is read).
        max_samples: masks read per split.

    Raises:
        DataError: one line naming the split or file and the fix.
    """
    data = cfg.data
    for role, split in (("train", data.train_split), ("val", data.val_split)):
        dataset = build_dataset(data.name, data.root, split, **dict(data.options))
        if len(dataset) == 0:
            raise DataError(f"{_where(cfg, split)} (data.{role}_split) has no samples; check the split")
        counts, read = sample_label_histogram(dataset, max_samples, skip_bad=data.skip_bad_samples)
        if read == 0:
            continue  # every sampled file is bad and skipped: SkipBadSamples reports them
        ignore = getattr(dataset, "ignore_index", data.ignore_index)
        labelled = {v for v, c in counts.items() if v != ignore and c > 0}
        if not labelled:
            effect = "nothing would be learnt" if role == "train" else "mIoU would be 0.00"
            raise DataError(
                f"{_where(cfg, split)} (data.{role}_split): the {read} masks read hold no labelled pixel "
                f"(all {ignore}, the ignore label), so {effect}: "
                f"check the masks/ folder and the mask values (`emanet data check CONFIG`)"
            )
        names = list(getattr(dataset, "CLASSES", ()))
        if len(names) >= 2 and labelled == {0}:
            hints = convention_hints(counts, len(names), ignore, names)
            fix = hints[0] if hints else f"check that the mask values are the class ids 0..{len(names) - 1}"
            raise DataError(f"{_where(cfg, split)} (data.{role}_split): the {read} masks read: {fix}")


def unlabelled_split_message(result: dict[str, Any], split: str | None) -> str | None:
    """A one-line explanation when an evaluation counted no labelled pixel, else None.

    Args:
        result: the metrics of `ConfusionMatrix.compute` / `evaluate` ("num_pixels", "num_images").
        split: the evaluated split's name (None: every file of a folder dataset).
    """
    if int(result.get("num_pixels", 0)) > 0:
        return None
    images = result.get("num_images")
    seen = f"{images} images evaluated, " if images is not None else ""
    return (
        f"split {split!r} has no labelled pixel ({seen}every mask pixel is the ignore label or no mask "
        f"was found), so its mIoU of 0.00 means nothing: check its masks with `emanet data check CONFIG`"
    )
