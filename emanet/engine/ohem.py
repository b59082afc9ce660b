"""Online hard example mining over pixels, as OpenMMLab's OHEMPixelSampler.

Reference: open-mmlab/mmsegmentation mmseg/structures/sampler/ohem_pixel_sampler.py (`sample`).
With a threshold: among the valid (non-ignored) pixels of the whole batch, sorted by the softmax
probability of their true class, the cut is `max(sorted[min(min_kept * B, n - 1)], thresh)` and the
pixels strictly below it are kept. So every pixel predicted with less than `thresh` confidence is
kept, and when fewer than about `min_kept` per image are, the cut rises until `min_kept * B` are
(fewer only where probabilities tie at the cut). Without a threshold: the `min_kept * B` pixels of
largest loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["ohem_weights"]


@torch.no_grad()
def ohem_weights(
    logits: torch.Tensor,
    label: torch.Tensor,
    ignore_index: int = 255,
    thresh: float | None = 0.7,
    min_kept: int = 100000,
    class_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """The 0/1 weight of each pixel: 1 where OHEM keeps it.

    Args:
        logits: (B, C, H, W) scores.
        label: (B, H, W) class ids, `ignore_index` for unlabelled pixels.
        ignore_index: never kept.
        thresh: keep pixels whose true-class probability is below this (OpenMMLab: 0.7);
            None ranks by loss instead.
        min_kept: per image; the batch keeps at least about `min_kept * B` (see module docstring).
        class_weight: (C,) weights of the loss used for ranking when `thresh` is None.

    Returns:
        (B, H, W) float weights, in the dtype of `logits`.
    """
    if min_kept <= 1:
        raise ValueError(
            f"train.ohem_min_kept={min_kept} is not valid; it must be > 1 (OpenMMLab asserts it)"
        )
    batch_kept = min_kept * label.shape[0]
    valid = label != ignore_index
    weight = logits.new_zeros(label.shape)
    valid_weight = weight[valid]
    if thresh is not None:
        safe = label.masked_fill(~valid, 0).unsqueeze(1)
        prob = F.softmax(logits.float(), dim=1).gather(1, safe).squeeze(1)[valid]
        sort_prob, _ = prob.sort()
        cut = float(sort_prob[min(batch_kept, sort_prob.numel() - 1)]) if sort_prob.numel() else 0.0
        valid_weight[prob < max(cut, thresh)] = 1.0
    else:
        losses = F.cross_entropy(
            logits.float(), label, weight=class_weight, ignore_index=ignore_index, reduction="none"
        )
        order = losses[valid].sort(descending=True).indices
        valid_weight[order[:batch_kept]] = 1.0
    weight[valid] = valid_weight
    return weight
