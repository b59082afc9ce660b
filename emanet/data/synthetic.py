"""The built-in dataset: scenes generated on the fly, deterministic per seed, no files.

Each scene holds one to three large objects that all look alike: a grey, striped texture
that is the same for every class. What class they are is written far away from them: the
background's tint (one hue per class), which only appears at least `halo` pixels away from
any object — around each object lies a neutral grey halo. A pixel deep inside an object sees
stripes and grey; its class depends on context outside its neighbourhood. A head that
gathers global context (EMA) can read it; a local FCN head of the same backbone has to grow
a very large effective receptive field to do so.

Classes: 0 background, 1..5 the object classes. The halo and a 1-pixel band around each
object's border are labelled 255 (ignore).
"""

from __future__ import annotations

import colorsys

import numpy as np
import torch

__all__ = ["SyntheticDataset"]

_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class SyntheticDataset(torch.utils.data.Dataset):
    """Scenes where a pixel's class depends on a cue far outside its neighbourhood.

    Args:
        split: "train" or "val" (disjoint seeds).
        transform: optional paired transform `(image, label, rng) -> (image, label)`; by
            default the image is normalised with the ImageNet mean/std.
        length: number of scenes in the split.
        size: image side (square), up to 128.
        seed: base seed; the scene at index i is the same on every call and machine.
        num_object_classes: classes besides background (>= 5 gives >= 6 classes).
        halo: width in pixels of the neutral ring around each object.

    Samples: {"image": float32 (3, size, size), "label": int64 (size, size), "name": str,
    "orig_size": (size, size)}.
    """

    ignore_index = 255

    def __init__(
        self,
        split: str = "train",
        transform=None,
        length: int | None = None,
        size: int = 96,
        seed: int = 0,
        num_object_classes: int = 5,
        halo: int | None = None,
    ) -> None:
        if split not in ("train", "val"):
            raise ValueError(f"synthetic split={split!r} is not valid; choose 'train' or 'val'")
        if not 32 <= size <= 128:
            raise ValueError(f"synthetic size={size!r} is not valid; use 32..128")
        self.split = split
        self.transform = transform
        self.length = length if length is not None else (2000 if split == "train" else 100)
        self.size = size
        self.seed = seed + (0 if split == "train" else 1_000_003)
        self.halo = halo if halo is not None else max(size // 12, 3)
        self.num_classes = num_object_classes + 1
        self.CLASSES = ("background",) + tuple(f"object{i}" for i in range(1, self.num_classes))
        self.PALETTE = [(0, 0, 0)] + [
            tuple(int(255 * c) for c in colorsys.hsv_to_rgb(i / num_object_classes, 0.8, 0.9))
            for i in range(num_object_classes)
        ]
        self.hues = [i / num_object_classes for i in range(num_object_classes)]
        self.files = [(f"synthetic://{split}/{i}", None) for i in range(self.length)]

    def __len__(self) -> int:
        return self.length

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Scene `index`: image uint8 (H, W, 3), label int64 (H, W)."""
        if not 0 <= index < self.length:
            raise IndexError(f"synthetic index {index} out of range 0..{self.length - 1}")
        rng = np.random.default_rng([self.seed, index])
        s = self.size
        yy, xx = np.mgrid[:s, :s].astype(np.float32)
        cls = int(rng.integers(1, self.num_classes))
        inside = np.zeros((s, s), dtype=bool)
        for _ in range(int(rng.integers(1, 4))):
            cy, cx = rng.uniform(0.2 * s, 0.8 * s, 2)
            if rng.random() < 0.5:
                r = rng.uniform(0.15 * s, 0.3 * s)
                inside |= (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
            else:
                hy, hx = rng.uniform(0.12 * s, 0.28 * s, 2)
                inside |= (np.abs(yy - cy) < hy) & (np.abs(xx - cx) < hx)
        halo = _dilate(inside, self.halo) & ~inside

        # Background: the class's hue with random saturation/value, plus noise.
        hue = (self.hues[cls - 1] + rng.uniform(-0.03, 0.03)) % 1.0
        sat, val = rng.uniform(0.45, 0.9), rng.uniform(0.45, 0.9)
        image = np.empty((s, s, 3), dtype=np.float32)
        image[:] = colorsys.hsv_to_rgb(hue, sat, val)
        # Halo: neutral grey. Objects: grey stripes with a random phase and angle.
        image[halo] = rng.uniform(0.45, 0.6)
        angle = rng.uniform(0, np.pi)
        stripes = 0.5 + 0.2 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 0.6 + rng.uniform(0, 6.3))
        image[inside] = stripes[inside, None]
        image += rng.normal(0.0, 0.04, image.shape).astype(np.float32)
        image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)

        label = np.zeros((s, s), dtype=np.int64)
        label[inside] = cls
        label[halo] = self.ignore_index
        border = inside & _dilate(~inside, 1)
        label[border] = self.ignore_index
        return image, label

    def __getitem__(self, key):
        index, seed = key if isinstance(key, tuple) else (key, key)
        image, label = self.load(index)
        if self.transform is not None:
            image, label = self.transform(image, label, np.random.default_rng(seed))
        else:
            image = torch.from_numpy(((image / 255.0 - _MEAN) / _STD).astype(np.float32).transpose(2, 0, 1))
            label = torch.from_numpy(label)
        return {
            "image": image,
            "label": label,
            "name": f"synthetic_{self.split}_{index:05d}",
            "orig_size": (self.size, self.size),
        }


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within Chebyshev distance `radius` of a True pixel of `mask` (H, W)."""
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    return torch.nn.functional.max_pool2d(t, 2 * radius + 1, 1, radius)[0, 0].numpy() > 0
