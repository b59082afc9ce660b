"""Evaluation: whole-image or sliding-window inference, optional multi-scale + flip, and the
confusion-matrix metrics (all-reduced under DDP)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..capability import amp_dtype, resolve_amp
from .distributed import all_reduce_sum
from .metrics import ConfusionMatrix

__all__ = ["infer_logits", "infer_probs", "evaluate", "autocast_context"]


def autocast_context(device: torch.device, amp: str):
    """torch.autocast for "bf16"/"fp16", a null context for "none"; "auto" as
    `emanet.capability.resolve_amp` decides for `device` (bf16 only where it is native)."""
    dtype = amp_dtype(resolve_amp(amp, device))
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


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
    total = None
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
    return total / (len(scales) * (2 if flip else 1))


def _denormalize(image: torch.Tensor, mean, std) -> np.ndarray:
    """(3, H, W) normalised -> uint8 (H, W, 3)."""
    m = torch.tensor(mean).view(3, 1, 1)
    s = torch.tensor(std).view(3, 1, 1)
    img = (image.float().cpu() * s + m).clamp(0, 1)
    return (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


@torch.no_grad()
def evaluate(
    model,
    batches: Iterable[dict[str, Any]],
    num_classes: int,
    device: torch.device,
    ignore_index: int = 255,
    class_names: list[str] | None = None,
    mode: str = "whole",
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    crop=None,
    stride=None,
    amp: str = "none",
    sample_dir: str | Path | None = None,
    num_samples: int = 0,
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    progress: bool = True,
    total: int | None = None,
) -> dict[str, Any]:
    """Run the model over `batches` ({"image", "label", "name", "orig_size"}) and return the
    metrics of `ConfusionMatrix.compute`, plus "num_images", "mode" and "ms_flip".

    The first `num_samples` images (rank 0) are saved to `sample_dir/NAME.npz` with image,
    label, prediction and, for EMA models, the attention maps: the report shows them.
    """
    was_training = model.training
    model.eval()
    cm = ConfusionMatrix(num_classes, ignore_index)
    core = getattr(model, "module", model)  # a DDP wrapper's module
    align = getattr(core, "align_corners", True)
    saved, num_images = 0, 0
    for batch in tqdm(batches, desc="eval", total=total, disable=not progress, leave=False):
        if batch.get("image") is None:
            continue  # a batch of skipped samples only
        image = batch["image"].to(device)
        label = batch["label"].to(device)
        with autocast_context(device, amp):
            probs = infer_probs(model, image, num_classes, mode, scales, flip, crop, stride, align)
        pred = probs.argmax(1)
        cm.update(pred, label)
        num_images += image.shape[0]
        if sample_dir is not None and saved < num_samples:
            attention = None
            with contextlib.suppress(ValueError), autocast_context(device, amp):
                attention = core(image[:1], return_attention=True)["attention"][0].float().cpu()
            h, w = (int(v) for v in batch["orig_size"][0])
            Path(sample_dir).mkdir(parents=True, exist_ok=True)
            arrays = {
                "image": _denormalize(image[0], mean, std)[:h, :w],
                "label": label[0, :h, :w].cpu().numpy().astype(np.int64),
                "pred": pred[0, :h, :w].cpu().numpy().astype(np.int64),
                "name": np.array(str(batch["name"][0])),
            }
            if attention is not None:
                arrays["attention"] = attention.numpy().astype(np.float32)
            np.savez_compressed(Path(sample_dir) / f"{batch['name'][0]}.npz", **arrays)
            saved += 1
    cm.all_reduce()
    result = cm.compute(class_names)
    num_images = int(all_reduce_sum(torch.tensor([num_images]))[0])
    result.update({"num_images": num_images, "mode": mode, "ms_flip": bool(flip or len(scales) > 1)})
    model.train(was_training)
    return result
