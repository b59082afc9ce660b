"""Per-class loss weights: given as a list, or computed from the training split's pixel counts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

__all__ = ["class_pixel_counts", "median_frequency_weights", "resolve_class_weights"]


def class_pixel_counts(labels: Iterable[np.ndarray], num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """Pixels of each class over `labels` (each (H, W) ints); ignored and out-of-range ids skipped.

    Returns:
        (num_classes,) int64 counts.
    """
    counts = np.zeros(num_classes, dtype=np.int64)
    for label in labels:
        ids = np.asarray(label).ravel()
        ids = ids[(ids != ignore_index) & (ids >= 0) & (ids < num_classes)]
        counts += np.bincount(ids.astype(np.int64), minlength=num_classes)
    return counts


def median_frequency_weights(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """Median frequency balancing (Eigen & Fergus 2015): w_c = median(f) / f_c.

    f_c is class c's share of all labelled pixels; the median is over the classes that occur.
    A class that never occurs gets weight 0 (it contributes no pixel to the loss anyway).

    Returns:
        (C,) float64 weights; the median-frequency class has weight 1.
    """
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        raise ValueError("train.class_weights=auto: the training split has no labelled pixel")
    freq = counts / total
    present = freq > 0
    median = float(np.median(freq[present]))
    weights = np.zeros_like(freq)
    weights[present] = median / freq[present]
    return weights


def resolve_class_weights(
    spec, num_classes: int, labels: Iterable[np.ndarray] | None = None, ignore_index: int = 255
) -> torch.Tensor | None:
    """`train.class_weights` as a (C,) float32 tensor, or None.

    Args:
        spec: None (no weights), a list of `num_classes` numbers, or "auto" (median frequency
            over `labels`).
        num_classes: classes of the dataset.
        labels: the training split's label maps, needed for "auto".
        ignore_index: skipped when counting.
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec != "auto":
            raise ValueError(f"train.class_weights={spec!r} is not valid; give a list of numbers or 'auto'")
        if labels is None:
            raise ValueError("train.class_weights=auto needs the training labels to count pixels")
        weights = median_frequency_weights(class_pixel_counts(labels, num_classes, ignore_index))
        return torch.tensor(weights, dtype=torch.float32)
    values = [float(v) for v in spec]
    if len(values) != num_classes or any(not np.isfinite(v) or v < 0 for v in values):
        raise ValueError(
            f"train.class_weights has {len(values)} values; give {num_classes} finite numbers >= 0 "
            "(one per class, in class-id order) or 'auto'"
        )
    return torch.tensor(values, dtype=torch.float32)
