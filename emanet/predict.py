"""`Predictor`: masks for images of any size, from a model, a checkpoint, a run or a name.

    predictor = emanet.Predictor("runs/voc/emanet_r101", mode="slide", ms_flip=True)
    pred = predictor.predict("photo.jpg")              # one input -> one Prediction
    pred.mask                                          # (H, W) class ids at the photo's size
    preds = predictor.predict("folder/")               # folders, globs, lists -> a list
    pred = predictor.predict(pil_image, return_probs=True, return_attention=True)

Inference goes through `engine.evaluate.infer_probs`, the code `emanet eval` scores with, so
the masks are `eval`'s predictions in every mode (whole, slide, multi-scale + flip).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .data.base import read_image
from .data.errors import DataError
from .data.palette import voc_palette
from .data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transforms
from .engine.builders import resolve_device
from .engine.config import EvalConfig
from .engine.evaluate import infer_probs
from .engine.inference import load_model
from .inputs import expand_inputs, to_rgb
from .models import from_pretrained

__all__ = ["Predictor", "Prediction", "MS_FLIP_SCALES"]

MS_FLIP_SCALES = tuple(EvalConfig().ms_flip_scales)  # the paper's MS+flip scales, as `eval --ms-flip`


@dataclass
class Prediction:
    """What the Predictor made of one input.

    Attributes:
        source: the file path, or "<input N>" for an in-memory image.
        image: (H, W, 3) uint8 RGB as predicted (upright, original size); None on error.
        mask: (H, W) int64 class ids at the original size; None on error.
        probs: (C, H, W) float32 class probabilities, when asked for.
        attention: (K, h, w) float32 EM responsibilities at the feature size, when asked for.
        error: why the input could not be read (only with `skip_errors=True`).
    """

    source: str
    image: np.ndarray | None = None
    mask: np.ndarray | None = None
    probs: np.ndarray | None = None
    attention: np.ndarray | None = None
    error: str | None = None


def _is_single(inputs: Any) -> bool:
    """One image in, one Prediction out: a file path, a PIL image, an array, a 3-D tensor."""
    if isinstance(inputs, (str, os.PathLike)):
        return Path(inputs).is_file()
    if isinstance(inputs, (list, tuple, Iterator)):
        return False
    return not (hasattr(inputs, "dim") and inputs.dim() == 4 and inputs.shape[0] != 1)


class Predictor:
    """Predict masks with a segmentor.

    Args:
        model: a Segmentor; a checkpoint file, run directory or `save_pretrained` directory; or a
            published name / "hf-hub:ORG/NAME" (`emanet.from_pretrained`).
        mode: "whole" or "slide" (overlapping `crop` windows, averaged logits, as `eval`).
        crop, stride: slide window and step (h, w); default `eval`'s 513 and 341.
        scales, flip: scales whose softmax is averaged, with horizontal flips.
        ms_flip: shorthand for the paper's scales (`MS_FLIP_SCALES`) with flips.
        precision: None (the model as is), or "auto" | "fp32" | "bf16" | "fp16": run a copy made
            by `emanet.optimize_for_inference` (on CPUs without native bf16, "auto" is fp32).
        max_size: resize images whose long side is larger to this long side, predict, and
            resize the probabilities back (in row bands, so memory stays bounded); None: never.
        batch_size: same-size consecutive inputs share a forward pass.
        device: "auto", "cpu", "cuda" or a torch.device.
        mean, std: normalisation; default the checkpoint's, else ImageNet's.
        pad_mod: pad bottom/right to H, W ≡ 1 (mod pad_mod) with the mean colour before inference,
            as `eval.pad_mod` (the authors' 8); the padding is cropped off. None: no padding.
        eval_iters: EM iterations at inference (EMA models; loaded models only).
    """

    def __init__(
        self,
        model: Any,
        *,
        mode: str = "whole",
        crop: Sequence[int] = (513, 513),
        stride: Sequence[int] = (341, 341),
        scales: Sequence[float] = (1.0,),
        flip: bool = False,
        ms_flip: bool = False,
        precision: str | None = None,
        max_size: int | None = None,
        batch_size: int = 1,
        device: str | torch.device = "auto",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        pad_mod: int | None = None,
        eval_iters: int | None = None,
    ) -> None:
        if mode not in ("whole", "slide"):
            raise ValueError(f"Predictor mode={mode!r} is not valid; choose 'whole' or 'slide'")
        if batch_size < 1 or (max_size is not None and max_size < 32):
            raise ValueError(
                f"Predictor needs batch_size >= 1 and max_size >= 32 (or None), got {batch_size}, {max_size}"
            )
        meta: dict[str, Any] = {}
        overrides = {"eval_iters": eval_iters} if eval_iters else {}
        if isinstance(model, (str, os.PathLike)):
            if Path(model).exists():
                model, meta = load_model(Path(model), **overrides)
            else:
                model = from_pretrained(model, **overrides)
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.model = model.eval().to(self.device)
        self.num_classes = int(model.num_classes)
        self.align_corners = bool(getattr(model, "align_corners", True))
        self.class_names = list(meta.get("class_names") or getattr(model, "class_names", None) or [])
        palette = (
            meta.get("palette") or getattr(model, "palette", None) or voc_palette(max(256, self.num_classes))
        )
        self.palette = [tuple(int(v) for v in c) for c in palette]
        self.mean = tuple(mean or meta.get("mean") or IMAGENET_MEAN)
        self.std = tuple(std or meta.get("std") or IMAGENET_STD)
        self.mode, self.crop, self.stride = mode, tuple(crop), tuple(stride)
        self.scales = MS_FLIP_SCALES if ms_flip else tuple(scales)
        self.flip = bool(flip or ms_flip)
        self.max_size, self.batch_size = max_size, int(batch_size)
        self.transform = eval_transforms(self.mean, self.std, pad_mod=pad_mod)  # eval's, exactly
        self.runner = self.model
        if precision is not None:
            from .inference import optimize_for_inference

            self.runner = optimize_for_inference(self.model, precision=precision)

    # -- public ----------------------------------------------------------------------------
    def predict(
        self,
        inputs: Any,
        *,
        return_probs: bool = False,
        return_attention: bool = False,
        skip_errors: bool = False,
    ) -> Prediction | list[Prediction]:
        """Masks for `inputs`.

        Args:
            inputs: a file path, a folder (recursive), a glob, a PIL image, a NumPy array, a
                tensor (3, H, W) / (B, 3, H, W), or a list (or iterator) of any of these.
            return_probs: fill `Prediction.probs` (C, H, W) at the original size.
            return_attention: fill `Prediction.attention` (K, h, w) (EMA models).
            skip_errors: an unreadable file gives a Prediction with `error` set instead of raising.

        Returns:
            One `Prediction` for one image (a file, PIL image, array or 3-D tensor), else a list.
        """
        out = list(self.iter_predict(inputs, return_probs=return_probs,
                                     return_attention=return_attention, skip_errors=skip_errors))  # fmt: skip
        return out[0] if _is_single(inputs) and len(out) == 1 else out

    def iter_predict(
        self,
        inputs: Any,
        *,
        return_probs: bool = False,
        return_attention: bool = False,
        skip_errors: bool = False,
    ) -> Iterator[Prediction]:
        """Like `predict`, one Prediction at a time in input order; reads lazily, so a folder of
        any length needs the memory of one batch."""
        batch: list[Prediction] = []
        for pred in self._read(inputs, skip_errors):
            if (
                pred.error is None
                and batch
                and (len(batch) == self.batch_size or _shape(batch[0]) != _shape(pred))
            ):
                yield from self._run(batch, return_probs, return_attention)
                batch = []
            if pred.error is not None:
                yield from self._run(batch, return_probs, return_attention)
                batch = []
                yield pred
            else:
                batch.append(pred)
        yield from self._run(batch, return_probs, return_attention)

    def normalize(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """(H, W, 3) uint8 images of one size -> (B, 3, H', W') float32 through `eval`'s
        transform (padding to `pad_mod`, then normalisation)."""
        blank = np.zeros(images[0].shape[:2], dtype=np.int64)
        rng = np.random.default_rng(0)  # eval's transform draws nothing; the signature wants one
        return torch.stack([self.transform(im, blank, rng)[0] for im in images])

    # -- internals -------------------------------------------------------------------------
    def _read(self, inputs: Any, skip_errors: bool) -> Iterator[Prediction]:
        items: Iterable[Any] = [inputs]
        if isinstance(inputs, (list, tuple, Iterator)) or (hasattr(inputs, "dim") and inputs.dim() == 4):
            items = inputs  # lists, generators (read lazily, e.g. video frames), (B, 3, H, W) tensors
        for n, item in enumerate(items):
            if isinstance(item, (str, os.PathLike)):
                files, missing = expand_inputs([item])
                if missing and not skip_errors:
                    raise FileNotFoundError(f"predict: {missing[0]}; give an image file, a folder or a glob")
                for text in missing:
                    yield Prediction(source=str(item), error=text)
                for f in files:
                    try:
                        yield Prediction(source=str(f.path), image=read_image(f.path))
                    except DataError as e:
                        if not skip_errors:
                            raise
                        yield Prediction(source=str(f.path), error=str(e).split(": ", 1)[-1])
            else:
                yield Prediction(source=f"<input {n}>", image=to_rgb(item))

    @torch.inference_mode()
    def _run(self, batch: list[Prediction], return_probs: bool, return_attention: bool) -> list[Prediction]:
        if not batch:
            return []
        images = [_image(p) for p in batch]
        h, w = images[0].shape[:2]
        size = self._working_size(h, w)
        if size != (h, w):  # Pillow's bilinear filter widens with the scale: antialiased
            images = [
                np.asarray(Image.fromarray(im).resize(size[::-1], Image.Resampling.BILINEAR)) for im in images
            ]
        x = self.normalize(images).to(self.device)
        attention = None
        if self.mode == "whole" and self.scales == (1.0,) and not self.flip and return_attention:
            out = self.runner(x, return_attention=True)  # one forward for both
            probs, attention = out["out"].float().softmax(1), out["attention"]
        else:
            probs = infer_probs(self.runner, x, self.num_classes, self.mode, self.scales, self.flip,
                                self.crop, self.stride, self.align_corners)  # fmt: skip
            if return_attention:
                attention = self.runner(x, return_attention=True)["attention"]
        probs = probs[:, :, : size[0], : size[1]]  # the pad_mod padding off
        for i, pred in enumerate(batch):
            pred.mask, full = _resize_argmax(probs[i], (h, w), keep=return_probs)
            if full is not None:
                pred.probs = full.cpu().numpy()
            if attention is not None:
                pred.attention = attention[i].float().cpu().numpy()
        return batch

    def _working_size(self, h: int, w: int) -> tuple[int, int]:
        if self.max_size is None or max(h, w) <= self.max_size:
            return h, w
        scale = self.max_size / max(h, w)
        return max(1, round(h * scale)), max(1, round(w * scale))


def _image(pred: Prediction) -> np.ndarray:
    if pred.image is None:
        raise ValueError(f"{pred.source}: no image to predict ({pred.error})")
    return pred.image


def _shape(pred: Prediction) -> tuple[int, ...]:
    return _image(pred).shape


def _resize_argmax(
    probs: torch.Tensor, size: tuple[int, int], keep: bool, band: int = 256
) -> tuple[np.ndarray, torch.Tensor | None]:
    """Class ids (and, if `keep`, probabilities) of (C, h, w) `probs` resized to `size` (H, W).

    Bilinear (half-pixel centres), in bands of `band` output rows, so the (C, H, W) tensor of a
    large photo exists only when it is asked for. Returns ((H, W) int64, (C, H, W) or None)."""
    c, h, w = probs.shape
    H, W = size
    if (h, w) == (H, W):
        return probs.argmax(0).cpu().numpy(), (probs if keep else None)
    mask = np.empty((H, W), dtype=np.int64)
    full = probs.new_empty((c, H, W)) if keep else None
    ys = ((torch.arange(H, dtype=torch.float64) + 0.5) * (h / H) - 0.5).clamp(0, h - 1)
    y0 = ys.floor().long()
    y1 = (y0 + 1).clamp(max=h - 1)
    wy = (ys - y0).to(probs.dtype).to(probs.device)
    for top in range(0, H, band):
        rows = slice(top, min(top + band, H))
        t = wy[rows].view(1, -1, 1)
        part = probs[:, y0[rows]] * (1 - t) + probs[:, y1[rows]] * t  # (C, n, w)
        part = F.interpolate(part[None], size=(part.shape[1], W), mode="bilinear", align_corners=False)[0]
        mask[rows] = part.argmax(0).cpu().numpy()
        if full is not None:
            full[:, rows] = part
    return mask, full
