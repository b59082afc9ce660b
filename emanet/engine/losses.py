"""The training loss a config asks for: cross-entropy with class weights and OHEM, main + aux head.

    loss_fn = build_loss(cfg)                       # once, after the datasets are built
    out = loss_fn(logits, label, aux_logits)        # out.total to backward; out.main, out.aux to log

Normalisation (`train.loss_normalize`), as OpenMMLab's cross_entropy (mmseg/models/losses/
cross_entropy_loss.py): the per-pixel loss is F.cross_entropy(weight=class_weight,
reduction="none") (ignored pixels 0) times the OHEM weight, then
"all_pixels": per image the mean over all H·W positions, then over the batch — OpenMMLab's
    default avg_non_ignore=False (a mean over every element) for equal-size crops, and the authors';
"valid_pixels": the sum over the count of non-ignored pixels — avg_non_ignore=True.
The denominators do not change with the weights (unlike PyTorch's weighted "mean", which divides
by the summed class weights). Without weights and OHEM it is `segmentation_loss`, the authors' loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from .class_weights import resolve_class_weights
from .ohem import ohem_weights

__all__ = ["LossOutput", "segmentation_loss", "weighted_cross_entropy", "build_loss"]


class LossOutput(NamedTuple):
    """total = main + aux_weight · aux (what to back-propagate); main and aux to log."""

    total: torch.Tensor
    main: torch.Tensor
    aux: torch.Tensor


def weighted_cross_entropy(
    logits: torch.Tensor,
    label: torch.Tensor,
    ignore_index: int = 255,
    normalize: str = "all_pixels",
    class_weight: torch.Tensor | None = None,
    pixel_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy on (B, C, H, W) logits and (B, H, W) labels, optionally weighted.

    Args:
        class_weight: (C,) weight of each pixel's true class.
        pixel_weight: (B, H, W) weight of each pixel (OHEM's 0/1 selection).
        normalize: "all_pixels" or "valid_pixels" (module docstring).

    Returns:
        A scalar float32 tensor.
    """
    weight = None if class_weight is None else class_weight.to(logits.device, torch.float32)
    per_pixel = F.cross_entropy(
        logits.float(), label, weight=weight, ignore_index=ignore_index, reduction="none"
    )
    if pixel_weight is not None:
        per_pixel = per_pixel * pixel_weight.float()
    if normalize == "valid_pixels":
        # sum / count: a batch without a valid pixel gives 0, not NaN
        return per_pixel.sum() / (label != ignore_index).sum().clamp_min(1)
    if normalize == "all_pixels":
        return per_pixel.mean(dim=(1, 2)).mean()
    raise ValueError(f"train.loss_normalize={normalize!r} is not valid; choose all_pixels or valid_pixels")


def segmentation_loss(
    logits: torch.Tensor, label: torch.Tensor, ignore_index: int = 255, normalize: str = "all_pixels"
) -> torch.Tensor:
    """Plain cross-entropy on (B, C, H, W) logits and (B, H, W) labels: "all_pixels" (authors):
    per image the mean over all H·W positions, ignored ones counting 0, then the mean over the
    batch; "valid_pixels": the mean over non-ignored pixels."""
    return weighted_cross_entropy(logits, label, ignore_index, normalize)


def _train_labels(dataset):
    """Label maps of every training sample, untransformed (datasets expose `load(i) -> (image, label)`)."""
    base = dataset if hasattr(dataset, "load") else getattr(dataset, "dataset", dataset)
    for i in range(len(base)):
        yield base.load(i)[1]


def build_loss(cfg: Any, dataset: Any = None) -> Callable[..., LossOutput]:
    """The loss of `cfg.train`: class weights (`train.class_weights`: null, a list, or "auto"),
    OHEM (`train.ohem`, `ohem_thresh`, `ohem_min_kept`, `ohem_aux`), `aux_weight`, `loss_normalize`.

    Args:
        cfg: an `emanet.engine.config.Config`.
        dataset: the training dataset (for the number of classes and, for "auto", its labels);
            None builds `cfg.data`'s training split without transforms when it is needed.

    Returns:
        `loss_fn(logits, label, aux_logits=None) -> LossOutput`; logits (B, C, H, W) at the
        label's size, label (B, H, W). With `aux_logits` None the aux term is 0.
    """
    t, ignore = cfg.train, cfg.data.ignore_index
    class_weight = None
    if t.class_weights is not None:
        if dataset is None:
            from ..data import build_dataset  # only here: the plain loss needs no data

            d = cfg.data
            dataset = build_dataset(d.name, d.root, d.train_split, **d.options)
        num_classes = dataset.num_classes
        labels = _train_labels(dataset) if t.class_weights == "auto" else None
        class_weight = resolve_class_weights(t.class_weights, num_classes, labels, ignore)

    def head_loss(logits: torch.Tensor, label: torch.Tensor, ohem: bool) -> torch.Tensor:
        if class_weight is None and not ohem:
            return segmentation_loss(logits, label, ignore, t.loss_normalize)
        pixel_weight = None
        if ohem:
            pixel_weight = ohem_weights(
                logits, label, ignore, t.ohem_thresh, t.ohem_min_kept, class_weight=class_weight
            )
        return weighted_cross_entropy(logits, label, ignore, t.loss_normalize, class_weight, pixel_weight)

    def loss_fn(
        logits: torch.Tensor, label: torch.Tensor, aux_logits: torch.Tensor | None = None
    ) -> LossOutput:
        main = head_loss(logits, label, t.ohem)
        if aux_logits is None:
            aux = torch.zeros((), device=main.device)
        else:
            aux = head_loss(aux_logits, label, t.ohem and t.ohem_aux)
        return LossOutput(main + t.aux_weight * aux, main, aux)

    return loss_fn
