"""Evaluation: whole-image or sliding-window inference, optional multi-scale + flip, and the
confusion-matrix metrics (all-reduced under DDP).

    settings = EvalSettings.from_config(cfg, dataset.num_classes, dataset.CLASSES)
    result = evaluate(model, loader, settings, device)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
from .amp import autocast_context
from .config import Config
from .distributed import all_reduce_sum
from .metrics import ConfusionMatrix

__all__ = ["EvalSettings", "evaluate", "infer_logits", "infer_probs"]


@dataclass(frozen=True)
class EvalSettings:
    """How to evaluate: what `emanet train`, `emanet eval` and the demo share.

    Attributes:
        num_classes: classes the model predicts (the confusion matrix's size).
        class_names: one name per class for the per-class metrics (None: "0", "1", ...).
        ignore_index: label value left out of the metrics.
        mode: "whole" (one forward per image) or "slide" (overlapping `crop` windows).
        crop, stride: the slide window and its step, (h, w).
        scales, flip: image scales whose softmax is averaged, with horizontal flips if `flip`.
        amp: autocast setting, "auto" | "none" | "bf16" | "fp16".
        num_samples: validation images saved for the report (when a sample_dir is given).
        mean, std: the normalisation, undone for the saved images.
        progress: show a progress bar.
    """

    num_classes: int
    class_names: tuple[str, ...] | None = None
    ignore_index: int = 255
    mode: str = "whole"
    crop: tuple[int, ...] | None = None
    stride: tuple[int, ...] | None = None
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    amp: str = "none"
    num_samples: int = 0
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    progress: bool = True

    @classmethod
    def from_config(
        cls,
        cfg: Config,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        *,
        mode: str | None = None,
        ms_flip: bool = False,
        amp: str | None = None,
        progress: bool = True,
    ) -> EvalSettings:
        """The recipe's `eval` section (+ data.ignore_index/mean/std, train.amp).

        `mode` and `amp` replace the recipe's when given; `ms_flip` evaluates at
        `eval.ms_flip_scales` with flips (the paper's MS+flip rows)."""
        e = cfg.eval
        return cls(
            num_classes=num_classes,
            class_names=tuple(class_names) if class_names else None,
            ignore_index=cfg.data.ignore_index,
            mode=mode or e.mode,
            crop=tuple(e.crop_size),
            stride=tuple(e.stride),
            scales=tuple(e.ms_flip_scales if ms_flip else e.scales),
            flip=ms_flip or e.flip,
            amp=cfg.train.amp if amp is None else amp,
            num_samples=e.num_samples,
            mean=tuple(cfg.data.mean),
            std=tuple(cfg.data.std),
            progress=progress,
        )


def _slide(model, image: torch.Tensor, num_classes: int, crop: Sequence[int], stride: Sequence[int]):
    """Average logits over overlapping crops (OpenMMLab's slide inference).

    image: (B, 3, H, W) -> logits (B, num_classes, H, W)."""
    b, _, h, w = image.shape
    ch, cw = min(crop[0], h), min(crop[1], w)
    sh, sw = stride
    rows = max(-(-(h - ch) // sh), 0) + 1
    cols = max(-(-(w - cw) // sw), 0) + 1
    logits = image.new_zeros((b, num_classes, h, w), dtype=torch.float32)
    count = image.new_zeros((1, 1, h, w), dtype=torch.float32)
    for r in range(rows):
        for c in range(cols):
            y0, x0 = min(r * sh, h - ch), min(c * sw, w - cw)
            out = model(image[:, :, y0 : y0 + ch, x0 : x0 + cw])
            logits[:, :, y0 : y0 + ch, x0 : x0 + cw] += out.float()
            count[:, :, y0 : y0 + ch, x0 : x0 + cw] += 1
    return logits / count


def infer_logits(model, image: torch.Tensor, num_classes: int, mode: str = "whole", crop=None, stride=None):
    """Logits (B, num_classes, H, W) for normalised images (B, 3, H, W)."""
    if mode == "whole":
        return model(image).float()
    if mode == "slide":
        if crop is None or stride is None:
            raise ValueError("slide inference needs eval.crop_size and eval.stride")
        return _slide(model, image, num_classes, crop, stride)
    raise ValueError(f"eval mode={mode!r} is not valid; choose 'whole' or 'slide'")


def infer_probs(
    model,
    image: torch.Tensor,
    num_classes: int,
    mode: str = "whole",
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    crop=None,
    stride=None,
    align_corners: bool = True,
) -> torch.Tensor:
    """Softmax probabilities averaged over scales (and horizontal flips).

    image: (B, 3, H, W) -> (B, num_classes, H, W)."""
    h, w = image.shape[-2:]
    total: torch.Tensor | None = None
    for scale in scales:
        if scale == 1.0:
            scaled = image
        else:
            size = (max(int(h * scale + 0.5), 1), max(int(w * scale + 0.5), 1))
            scaled = F.interpolate(image, size=size, mode="bilinear", align_corners=align_corners)
        for flipped in (False, True) if flip else (False,):
            inp = scaled.flip(-1) if flipped else scaled
            logits = infer_logits(model, inp, num_classes, mode, crop, stride)
            if flipped:
                logits = logits.flip(-1)
            if logits.shape[-2:] != (h, w):
                logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=align_corners)
            probs = logits.softmax(1)
            total = probs if total is None else total + probs
    if total is None:
        raise ValueError("scales is empty; give at least one scale, e.g. [1.0]")
    return total / (len(scales) * (2 if flip else 1))


def _denormalize(image: torch.Tensor, mean, std) -> np.ndarray:
    """(3, H, W) normalised -> uint8 (H, W, 3)."""
    m = torch.tensor(mean).view(3, 1, 1)
    s = torch.tensor(std).view(3, 1, 1)
    img = (image.float().cpu() * s + m).clamp(0, 1)
    return (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    batches: Iterable[dict[str, Any]],
    settings: EvalSettings,
    device: torch.device,
    sample_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Run the model over `batches` and return the metrics of `ConfusionMatrix.compute`, plus
    "num_images", "mode" and "ms_flip".

    Args:
        model: a segmentor (or its DDP wrapper); (B, 3, H, W) -> (B, num_classes, H, W) logits.
        batches: {"image": (B, 3, H, W), "label": (B, H, W), "name", "orig_size"} dicts, e.g.
            from `build_val_loader`; a batch whose "image" is None (all skipped) is passed over.
        settings: how to infer and score (`EvalSettings`).
        device: where the images go.
        sample_dir: where the first `settings.num_samples` images are saved as NAME.npz with
            image, label, prediction and, for EMA models, the attention maps (the report
            shows them); None saves nothing.
    """
    was_training = model.training
    model.eval()
    s = settings
    num_classes = s.num_classes
    cm = ConfusionMatrix(num_classes, s.ignore_index)
    core = getattr(model, "module", model)  # a DDP wrapper's module
    align = getattr(core, "align_corners", True)
    saved, num_images = 0, 0
    # tqdm takes the total from len(batches) when there is one
    for batch in tqdm(batches, desc="eval", disable=not s.progress, leave=False):
        if batch.get("image") is None:
            continue  # a batch of skipped samples only
        image = batch["image"].to(device)
        label = batch["label"].to(device)
        with autocast_context(device, s.amp):
            probs = infer_probs(model, image, num_classes, s.mode, s.scales, s.flip, s.crop, s.stride, align)
        pred = probs.argmax(1)
        cm.update(pred, label)
        num_images += image.shape[0]
        if sample_dir is not None and saved < s.num_samples:
            attention = None
            with contextlib.suppress(ValueError), autocast_context(device, s.amp):
                attention = core(image[:1], return_attention=True)["attention"][0].float().cpu()
            h, w = (int(v) for v in batch["orig_size"][0])
            Path(sample_dir).mkdir(parents=True, exist_ok=True)
            arrays = {
                "image": _denormalize(image[0], s.mean, s.std)[:h, :w],
                "label": label[0, :h, :w].cpu().numpy().astype(np.int64),
                "pred": pred[0, :h, :w].cpu().numpy().astype(np.int64),
                "name": np.array(str(batch["name"][0])),
            }
            if attention is not None:
                arrays["attention"] = attention.numpy().astype(np.float32)
            np.savez_compressed(Path(sample_dir) / f"{batch['name'][0]}.npz", **arrays)
            saved += 1
    cm.all_reduce()
    result = cm.compute(list(s.class_names) if s.class_names else None)
    num_images = int(all_reduce_sum(torch.tensor([num_images]))[0])
    ms_flip = bool(s.flip or len(s.scales) > 1)
    result.update({"num_images": num_images, "mode": s.mode, "ms_flip": ms_flip})
    model.train(was_training)
    return result
