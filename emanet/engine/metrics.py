"""Segmentation metrics from a confusion matrix built with bincount (as torchvision's
references, detectron2 and OpenMMLab), all-reduced across ranks."""

from __future__ import annotations

from typing import Any

import torch

from .distributed import all_reduce_sum

__all__ = ["ConfusionMatrix"]


class ConfusionMatrix:
    """Accumulates a (num_classes, num_classes) matrix: rows = ground truth, cols = prediction.

    Pixels whose label is `ignore_index` (or outside [0, num_classes)) are not counted.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """pred, target: integer tensors of the same shape, e.g. (B, H, W)."""
        if pred.shape != target.shape:
            raise ValueError(
                f"prediction {tuple(pred.shape)} and label {tuple(target.shape)} differ in shape"
            )
        pred, target = pred.flatten().cpu().long(), target.flatten().cpu().long()
        keep = (target != self.ignore_index) & (target >= 0) & (target < self.num_classes)
        n = self.num_classes
        self.matrix += torch.bincount(target[keep] * n + pred[keep], minlength=n * n).view(n, n)

    def all_reduce(self) -> None:
        """Sum over ranks (no-op without a process group)."""
        self.matrix = all_reduce_sum(self.matrix.clone())

    def compute(self, class_names: list[str] | None = None) -> dict[str, Any]:
        """mIoU, per-class IoU, pixel accuracy, mean accuracy.

        A class absent from both prediction and ground truth has no IoU (None) and is left
        out of the means; `absent_classes` lists them.
        """
        m = self.matrix.double()
        tp = m.diag()
        gt = m.sum(1)
        pred = m.sum(0)
        union = gt + pred - tp
        iou = [float(t / u) if u > 0 else None for t, u in zip(tp, union, strict=True)]
        acc = [float(t / g) if g > 0 else None for t, g in zip(tp, gt, strict=True)]
        names = class_names or [str(i) for i in range(self.num_classes)]
        valid_iou = [v for v in iou if v is not None]
        valid_acc = [v for v in acc if v is not None]
        total = float(m.sum())
        return {
            "mIoU": sum(valid_iou) / len(valid_iou) if valid_iou else 0.0,
            "pixel_acc": float(tp.sum() / total) if total > 0 else 0.0,
            "mean_acc": sum(valid_acc) / len(valid_acc) if valid_acc else 0.0,
            "class_names": list(names),
            "per_class_iou": iou,
            "per_class_acc": acc,
            "absent_classes": [n for n, v in zip(names, iou, strict=True) if v is None],
            "confusion_matrix": self.matrix.tolist(),
            "num_pixels": int(total),
        }
