"""Paired image/label transforms of the authors' recipe (docs/method.md §5).

Every transform is a callable `t(image, label, rng) -> (image, label)`:
    image: (H, W, 3) RGB, uint8 or float32 in [0, 255] (RandomScale and float fills return float32,
        so no rounding happens between the steps, as in the authors' pipeline);
    label: (H, W) int64 class ids, `ignore_index` for unlabelled pixels;
    rng: a `numpy.random.Generator`, the only source of randomness, so a sample is a pure function
        of its file and its seed whatever the worker or process that builds it.
`Normalize` is the last step: it returns torch tensors, image (3, H, W) float32 and label (H, W) int64.

The authors normalise first and pad the normalised image with 0; here padding comes before
normalising, so the factories pad with the mean colour (mean * 255), which normalises to exactly 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F

from .errors import DataError
from .photometric import PhotoMetricDistortion

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Compose",
    "RandomScale",
    "PadBottomRight",
    "RandomCrop",
    "RandomHorizontalFlip",
    "PadToMultiple",
    "Normalize",
    "train_transforms",
    "eval_transforms",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Transform = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple]


def _pair(size: int | Sequence[int], what: str) -> tuple[int, int]:
    if isinstance(size, int):
        size = (size, size)
    if len(size) != 2 or any(int(s) != s or s < 1 for s in size):
        raise DataError(f"{what}={size!r} is not valid; give an int or (height, width) of positive ints")
    return int(size[0]), int(size[1])


def _pad(image: np.ndarray, label: np.ndarray, pad_h: int, pad_w: int, image_fill, label_fill: int):
    """Pad image (H, W, 3) and label (H, W) at the bottom and right by (pad_h, pad_w)."""
    if pad_h <= 0 and pad_w <= 0:
        return image, label
    pad_h, pad_w = max(pad_h, 0), max(pad_w, 0)
    h, w = label.shape
    fill = np.broadcast_to(np.asarray(image_fill, dtype=np.float64), (3,))
    # Keep uint8 only if the fill is an exact uint8 value; a mean-colour fill needs float32.
    keep_uint8 = (
        image.dtype == np.uint8 and np.all(fill == np.round(fill)) and np.all((fill >= 0) & (fill <= 255))
    )
    dtype = np.uint8 if keep_uint8 else np.float32
    out_image = np.empty((h + pad_h, w + pad_w, 3), dtype=dtype)
    out_image[...] = fill.astype(dtype)
    out_image[:h, :w] = image
    out_label = np.full((h + pad_h, w + pad_w), label_fill, dtype=label.dtype)
    out_label[:h, :w] = label
    return out_image, out_label


class Compose:
    """Apply transforms in order (None entries are skipped)."""

    def __init__(self, transforms: Sequence[Transform | None]):
        self.transforms = [t for t in transforms if t is not None]

    def __call__(self, image, label, rng: np.random.Generator):
        for t in self.transforms:
            image, label = t(image, label, rng)
        return image, label

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"


class RandomScale:
    """Rescale by a random factor: image bilinear (align_corners=True), label nearest.

    Output size is floor(H * s) x floor(W * s), computed by `F.interpolate(scale_factor=s)` exactly
    as the authors do. The image comes back float32 (no rounding to uint8).

    Args:
        scales: the factors to draw from. A list (or a tuple of length != 2) is a set of choices,
            e.g. [0.5, 0.75, ..., 2.0] (authors); a 2-tuple (lo, hi) or a dict {"range": [lo, hi]}
            is a uniform range (OpenMMLab's ratio_range). `is_range` overrides the guess.
        is_range: True for a range, False for choices, None to decide from the type as above.
        base: (w, h) of OpenMMLab's RandomResize(scale=base, ratio_range, keep_ratio=True): the
            drawn ratio r gives the target (int(w r), int(h r)); the image is rescaled by
            min(long target / long side, short target / short side) to (int(W f + 0.5),
            int(H f + 0.5)) (mmcv rescale_size), bilinear with half-pixel centres as cv2, rounded
            to uint8 as cv2 returns it; label nearest.
    """

    def __init__(self, scales, is_range: bool | None = None, base: Sequence[int] | None = None):
        if isinstance(scales, dict):
            if set(scales) != {"range"}:
                raise DataError(
                    f"scales={scales!r} is not valid; use a list of factors or {{'range': [lo, hi]}}"
                )
            scales, is_range = scales["range"], True if is_range is None else is_range
        if isinstance(scales, (int, float)):
            scales = [scales]
        if is_range is None:
            is_range = isinstance(scales, tuple) and len(scales) == 2
        scales = [float(s) for s in scales]
        if not scales or any(not math.isfinite(s) or s <= 0 for s in scales):
            raise DataError(f"scales={scales!r} is not valid; give positive factors such as [0.5, 1.0, 2.0]")
        if is_range and (len(scales) != 2 or scales[0] > scales[1]):
            raise DataError(f"scale range {scales!r} is not valid; give (lo, hi) with 0 < lo <= hi")
        self.scales = tuple(scales)
        self.is_range = bool(is_range)
        self.base = None if base is None else _pair(tuple(base), "resize base")

    def _base_size(self, s: float, h: int, w: int) -> tuple[int, int]:
        if self.base is None:
            raise ValueError("RandomScale._base_size needs a resize base")
        tw, th = int(self.base[0] * s), int(self.base[1] * s)
        f = min(max(tw, th) / max(h, w), min(tw, th) / min(h, w))
        return max(1, int(h * f + 0.5)), max(1, int(w * f + 0.5))

    def sample(self, rng: np.random.Generator) -> float:
        if self.is_range:
            return float(rng.uniform(self.scales[0], self.scales[1]))
        return self.scales[int(rng.integers(len(self.scales)))]

    def __call__(self, image, label, rng: np.random.Generator):
        s = self.sample(rng)
        h, w = label.shape
        img = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
        lab = torch.from_numpy(np.ascontiguousarray(label)).to(torch.float32)[None, None]
        if self.base is not None:
            size = self._base_size(s, h, w)
            img = F.interpolate(img, size=size, mode="bilinear", align_corners=False)
            lab = F.interpolate(lab, size=size, mode="nearest")
            out = np.clip(np.rint(img[0].permute(1, 2, 0).numpy()), 0, 255).astype(np.uint8)
            return out, lab[0, 0].numpy().astype(np.int64)
        kw: dict[str, Any]
        if math.floor(h * s) >= 1 and math.floor(w * s) >= 1:
            kw = {"scale_factor": s}
        else:  # a tiny image would collapse to 0 pixels; keep at least one
            kw = {"size": (max(1, math.floor(h * s)), max(1, math.floor(w * s)))}
        img = F.interpolate(img, mode="bilinear", align_corners=True, **kw)
        lab = F.interpolate(lab, mode="nearest", **kw)
        return img[0].permute(1, 2, 0).numpy(), lab[0, 0].numpy().astype(np.int64)

    def __repr__(self) -> str:
        kind = "range" if self.is_range else "choices"
        return f"RandomScale({kind}={list(self.scales)}, base={self.base})"


class PadBottomRight:
    """Pad at the bottom and right up to at least `size` (no-op where already large enough).

    Args:
        size: (h, w) or an int for a square.
        image_fill: a value or an (r, g, b) triple in the image's 0..255 scale.
        label_fill: label value of the padding, the ignore label.
    """

    def __init__(self, size: int | Sequence[int], image_fill=0, label_fill: int = 255):
        self.size = _pair(size, "pad size")
        self.image_fill = image_fill
        self.label_fill = int(label_fill)

    def __call__(self, image, label, rng: np.random.Generator):
        h, w = label.shape
        return _pad(image, label, self.size[0] - h, self.size[1] - w, self.image_fill, self.label_fill)

    def __repr__(self) -> str:
        return f"PadBottomRight(size={self.size}, image_fill={self.image_fill}, label_fill={self.label_fill})"


class RandomCrop:
    """Crop a random `size` window (the whole side where the image is smaller).

    With `cat_max_ratio` < 1, as OpenMMLab's RandomCrop (mmseg/datasets/transforms/transforms.py,
    `crop_bbox`): up to 10 times, a crop is kept if it holds more than one non-ignored class and
    none fills `cat_max_ratio` or more of its non-ignored pixels, else a new one is drawn; the
    crop drawn last is used if none passes (so at most 11 draws of (y, x)).
    """

    def __init__(self, size: int | Sequence[int], cat_max_ratio: float = 1.0, ignore_index: int = 255):
        self.size = _pair(size, "crop size")
        self.cat_max_ratio = float(cat_max_ratio)
        self.ignore_index = int(ignore_index)

    def _draw(self, h: int, w: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        ch, cw = min(self.size[0], h), min(self.size[1], w)
        return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw

    def __call__(self, image, label, rng: np.random.Generator):
        h, w = label.shape
        y, x, ch, cw = self._draw(h, w, rng)
        if self.cat_max_ratio < 1.0:
            for _ in range(10):
                ids, counts = np.unique(label[y : y + ch, x : x + cw], return_counts=True)
                counts = counts[ids != self.ignore_index]
                if len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio:
                    break
                y, x, ch, cw = self._draw(h, w, rng)
        return image[y : y + ch, x : x + cw], label[y : y + ch, x : x + cw]

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, cat_max_ratio={self.cat_max_ratio})"


class RandomHorizontalFlip:
    """Mirror image and label left-right together with probability p."""

    def __init__(self, p: float = 0.5):
        self.p = float(p)

    def __call__(self, image, label, rng: np.random.Generator):
        # Always draw, so the stream of random numbers does not depend on p.
        if rng.random() < self.p:
            return image[:, ::-1], label[:, ::-1]
        return image, label

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class PadToMultiple:
    """Evaluation padding at the bottom/right so that H % multiple == remainder (same for W).

    The authors pad to H, W ≡ 1 (mod 8): with output stride 8 and align_corners=True the feature
    grid then lands exactly on image pixels. The label is padded with the ignore label so metrics
    do not change; the dataset records the size before padding as "orig_size" to crop predictions.

    Args:
        multiple: the modulus, or None for no padding.
        remainder: wanted H % multiple.
        image_fill: value or (r, g, b) in the 0..255 scale.
        label_fill: the ignore label.
    """

    def __init__(self, multiple: int | None = 8, remainder: int = 1, image_fill=0, label_fill: int = 255):
        if multiple is not None and (int(multiple) != multiple or multiple < 1):
            raise DataError(f"pad multiple={multiple!r} is not valid; give a positive int or None")
        self.multiple = None if multiple is None else int(multiple)
        self.remainder = int(remainder)
        self.image_fill = image_fill
        self.label_fill = int(label_fill)

    def __call__(self, image, label, rng: np.random.Generator):
        if self.multiple is None:
            return image, label
        h, w = label.shape
        pad_h = (self.remainder - h) % self.multiple
        pad_w = (self.remainder - w) % self.multiple
        return _pad(image, label, pad_h, pad_w, self.image_fill, self.label_fill)

    def __repr__(self) -> str:
        return f"PadToMultiple(multiple={self.multiple}, remainder={self.remainder})"


class Normalize:
    """RGB/255, minus mean, over std; to tensors. The last transform of every pipeline.

    Returns:
        image: (3, H, W) float32 tensor; label: (H, W) int64 tensor.
    """

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        self.mean = np.asarray(mean, dtype=np.float32).reshape(1, 1, 3)
        self.std = np.asarray(std, dtype=np.float32).reshape(1, 1, 3)
        if self.mean.size != 3 or self.std.size != 3 or np.any(self.std <= 0):
            raise DataError(f"mean={mean!r}, std={std!r} are not valid; give 3 values each, std > 0")

    def __call__(self, image, label, rng: np.random.Generator | None = None):
        x = (np.asarray(image, dtype=np.float32) / 255.0 - self.mean) / self.std
        image_t = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))
        label_t = torch.from_numpy(np.ascontiguousarray(label, dtype=np.int64))
        return image_t, label_t

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.ravel().tolist()}, std={self.std.ravel().tolist()})"


def _mean_fill(mean: Sequence[float]) -> tuple[float, float, float]:
    """The 0..255 colour that normalises to 0: the authors' zero padding of the normalised image."""
    return cast(tuple[float, float, float], tuple(float(m) * 255.0 for m in mean))


def train_transforms(
    crop_size: int | Sequence[int],
    scales=(0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0),
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    ignore_index: int = 255,
    flip: bool = True,
    image_fill=None,
    pipeline: str = "authors",
    resize_base: Sequence[int] | None = None,
    cat_max_ratio: float = 1.0,
    photometric: bool = False,
) -> Compose:
    """The training pipeline: "authors" scale, pad bottom/right, random crop, flip, normalise;
    "openmmlab" scale, crop, flip, photometric distortion, pad bottom/right, normalise (OpenMMLab
    pads the normalised batch with 0 after the image transforms, so padding is never flipped or
    distorted).

    Args:
        crop_size: int or (h, w), e.g. 513 (VOC) or (512, 1024) (Cityscapes).
        scales: see `RandomScale`; the default is the authors' set {0.5, 0.75, ..., 2.0} (a tuple
            of 7, so choices). Pass {"range": [lo, hi]} for a uniform range; None or [] for none.
        mean, std: normalisation (RGB, 0..1 scale).
        ignore_index: label of padded pixels.
        flip: random horizontal flip with p = 0.5.
        image_fill: padding colour in 0..255; None pads with the mean colour, which is 0 after
            normalisation, as the authors (who pad the normalised image with 0).
        pipeline: "authors" or "openmmlab" (the order above).
        resize_base: see `RandomScale` (OpenMMLab's RandomResize scale, (w, h)).
        cat_max_ratio: see `RandomCrop` (OpenMMLab: 0.75).
        photometric: OpenMMLab's PhotoMetricDistortion after the flip.
    """
    if pipeline not in ("authors", "openmmlab"):
        raise DataError(f"data.pipeline={pipeline!r} is not valid; choose authors or openmmlab")
    fill = _mean_fill(mean) if image_fill is None else image_fill
    if isinstance(scales, tuple) and len(scales) != 2:
        scales = list(scales)
    pad = PadBottomRight(crop_size, image_fill=fill, label_fill=ignore_index)
    authors = pipeline == "authors"
    return Compose(
        [
            RandomScale(scales, base=resize_base) if scales else None,
            pad if authors else None,
            RandomCrop(crop_size, cat_max_ratio, ignore_index),
            RandomHorizontalFlip(0.5) if flip else None,
            PhotoMetricDistortion() if photometric else None,
            None if authors else pad,
            Normalize(mean, std),
        ]
    )


def eval_transforms(
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    pad_mod: int | None = 8,
    ignore_index: int = 255,
    image_fill=None,
) -> Compose:
    """Whole-image evaluation: pad to H, W ≡ 1 (mod pad_mod) (authors; None: no padding), normalise.

    Args:
        mean, std: normalisation (RGB, 0..1 scale).
        pad_mod: 8 as the authors, or None.
        ignore_index: label of padded pixels, so metrics are unchanged by padding.
        image_fill: padding colour in 0..255; None: the mean colour (0 after normalisation).
    """
    fill = _mean_fill(mean) if image_fill is None else image_fill
    return Compose(
        [
            PadToMultiple(pad_mod, 1, image_fill=fill, label_fill=ignore_index) if pad_mod else None,
            Normalize(mean, std),
        ]
    )
