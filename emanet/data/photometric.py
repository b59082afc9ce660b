"""OpenMMLab's PhotoMetricDistortion on uint8 RGB images, with OpenCV's 8-bit HSV conversion.

Reference: open-mmlab/mmsegmentation mmseg/datasets/transforms/transforms.py, class
PhotoMetricDistortion (brightness_delta=32, contrast_range=(0.5, 1.5), saturation_range=(0.5, 1.5),
hue_delta=18). Draws, in this order (each "coin" is randint(2), 1 = apply):
    brightness coin [, beta ~ U(-32, 32)]; mode = randint(2);
    if mode == 1: contrast coin [, alpha ~ U(0.5, 1.5)];
    saturation coin [, alpha ~ U(0.5, 1.5)]; hue coin [, delta = randint(-18, 18), high exclusive];
    if mode == 0: contrast coin [, alpha].
Every step is `uint8(clip(float32(x) * alpha + beta, 0, 255))` (truncation, not rounding); hue is
(H + delta) mod 180 on OpenCV's 0..179 scale. OpenMMLab works on BGR images, this on RGB: the HSV
values and so the results are the same.
"""

from __future__ import annotations

from typing import cast

import numpy as np

__all__ = ["PhotoMetricDistortion", "rgb_to_hsv_u8", "hsv_to_rgb_u8"]


def rgb_to_hsv_u8(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> uint8 HSV as cv2.COLOR_RGB2HSV: H in 0..180 (degrees / 2), S, V 0..255."""
    x = rgb.astype(np.float64)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    v = x.max(axis=-1)
    diff = v - x.min(axis=-1)
    s = np.where(v > 0, 255.0 * diff / np.where(v > 0, v, 1), 0.0)
    d = np.where(diff > 0, diff, 1)
    h = np.where(
        v == r, 60.0 * (g - b) / d, np.where(v == g, 120.0 + 60.0 * (b - r) / d, 240.0 + 60.0 * (r - g) / d)
    )
    h = np.where(diff > 0, h, 0.0)
    h = np.where(h < 0, h + 360.0, h)
    out = np.stack([np.rint(h / 2.0), np.rint(s), v], axis=-1)
    return np.clip(out, 0, 255).astype(np.uint8)


# OpenCV's HSV2RGB_f: which of (v, p, q, t) is (b, g, r) in each 60° sector
_SECTOR_BGR = np.array([[1, 3, 0], [1, 0, 2], [3, 0, 1], [0, 2, 1], [0, 1, 3], [2, 1, 0]])


def hsv_to_rgb_u8(hsv: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 HSV (OpenCV 8-bit ranges) -> uint8 RGB as cv2.COLOR_HSV2RGB."""
    x = hsv.astype(np.float32)
    h = x[..., 0] * np.float32(6.0 / 180.0)
    s = x[..., 1] / np.float32(255.0)
    v = x[..., 2] / np.float32(255.0)
    sector = np.floor(h)
    f = h - sector
    sector = sector.astype(np.int64) % 6
    tab = np.stack([v, v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))], axis=-1)
    idx = _SECTOR_BGR[sector]  # (H, W, 3) indices of b, g, r
    bgr = np.take_along_axis(tab, idx, axis=-1)
    bgr = np.where((s == 0)[..., None], v[..., None], bgr)
    rgb = bgr[..., ::-1] * np.float32(255.0)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _convert(img: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    return np.clip(img.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


class PhotoMetricDistortion:
    """Brightness, contrast, saturation, hue, each with probability 1/2 (module docstring).

    The image is rounded to uint8 first (OpenMMLab's resize already returns uint8); the label is
    unchanged.
    """

    def __init__(
        self,
        brightness_delta: int = 32,
        contrast_range: tuple[float, float] = (0.5, 1.5),
        saturation_range: tuple[float, float] = (0.5, 1.5),
        hue_delta: int = 18,
    ):
        self.brightness_delta = brightness_delta
        self.contrast_range = cast(tuple[float, float], tuple(contrast_range))
        self.saturation_range = cast(tuple[float, float], tuple(saturation_range))
        self.hue_delta = hue_delta

    def _contrast(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.integers(2):
            return _convert(img, alpha=rng.uniform(*self.contrast_range))
        return img

    def __call__(self, image, label, rng: np.random.Generator):
        img = np.asarray(image)
        if img.dtype != np.uint8:
            img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        if rng.integers(2):
            img = _convert(img, beta=rng.uniform(-self.brightness_delta, self.brightness_delta))
        mode = rng.integers(2)
        if mode == 1:
            img = self._contrast(img, rng)
        if rng.integers(2):
            hsv = rgb_to_hsv_u8(img)
            hsv[..., 1] = _convert(hsv[..., 1], alpha=rng.uniform(*self.saturation_range))
            img = hsv_to_rgb_u8(hsv)
        if rng.integers(2):
            hsv = rgb_to_hsv_u8(img)
            delta = int(rng.integers(-self.hue_delta, self.hue_delta))
            hsv[..., 0] = (hsv[..., 0].astype(int) + delta) % 180
            img = hsv_to_rgb_u8(hsv)
        if mode == 0:
            img = self._contrast(img, rng)
        return img, label

    def __repr__(self) -> str:
        return (
            f"PhotoMetricDistortion(brightness_delta={self.brightness_delta}, contrast_range="
            f"{self.contrast_range}, saturation_range={self.saturation_range}, hue_delta={self.hue_delta})"
        )
