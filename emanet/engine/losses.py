"""Training losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["segmentation_loss"]


def segmentation_loss(
    logits: torch.Tensor, label: torch.Tensor, ignore_index: int, normalize: str
) -> torch.Tensor:
    """Cross-entropy on (B, C, H, W) logits and (B, H, W) labels.

    "all_pixels" (authors): per image the mean over all H·W positions, ignored ones counting
    0, then the mean over the batch. "valid_pixels": the mean over non-ignored pixels.
    """
    if normalize == "valid_pixels":
        # sum / count rather than reduction="mean": a batch without a valid pixel gives 0, not NaN
        total = F.cross_entropy(logits.float(), label, ignore_index=ignore_index, reduction="sum")
        return total / (label != ignore_index).sum().clamp_min(1)
    per_pixel = F.cross_entropy(logits.float(), label, ignore_index=ignore_index, reduction="none")
    return per_pixel.mean(dim=(1, 2)).mean()
