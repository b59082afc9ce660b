"""The built-in dataset: scenes generated on the fly, deterministic per seed, no files.

Each scene holds two or three discs far apart that all look alike: the same grey stripes on
a plain background. Exactly one of them carries a small coloured tag, and the tag's colour
says the class of every disc in the scene. A pixel of an untagged disc sees only stripes: its
class depends on a cue elsewhere in the image, on another object. EM attention groups
same-looking pixels under one basis, so what the pixels around the tag know reaches every
disc; a local FCN head of the same backbone has to learn to look across the image.

Classes: 0 background, 1..5 the object classes (tag colours). A 1-pixel band around each
disc's border is labelled 255 (ignore).
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
        length: number of scenes in the split (default 2000 train, 100 val).
        size: image side (square), 32..128.
        seed: base seed; scene i of a split is the same on every call and machine.
        num_object_classes: classes besides background (5 gives 6 classes).

    Samples: {"image": float32 (3, size, size), "label": int64 (size, size), "name": str,
    "orig_size": (size, size)}.
    """

    ignore_index = 255

    def __init__(
        self,
        split: str = "train",
        transform=None,
        length: int | None = None,
        size: int = 128,
        seed: int = 0,
        num_object_classes: int = 5,
    ) -> None:
        if split not in ("train", "val"):
            raise ValueError(f"synthetic split={split!r} is not valid; choose 'train' or 'val'")
        if not 32 <= size <= 128:
            raise ValueError(f"synthetic size={size!r} is not valid; use 32..128")
        if num_object_classes < 2:
            raise ValueError(f"synthetic num_object_classes={num_object_classes!r} is not valid; use >= 2")
        self.split = split
        self.transform = transform
        self.length = length if length is not None else (2000 if split == "train" else 100)
        self.size = size
        self.seed = seed + (0 if split == "train" else 1_000_003)
        self.num_classes = num_object_classes + 1
        self.tag_colors = [
            colorsys.hsv_to_rgb(i / num_object_classes, 0.9, 0.95) for i in range(num_object_classes)
        ]
        self.CLASSES = ("background",) + tuple(f"object{i}" for i in range(1, self.num_classes))
        self.PALETTE = [(0, 0, 0)] + [tuple(int(255 * c) for c in rgb) for rgb in self.tag_colors]
        self.files = [(f"synthetic://{split}/{i}", None) for i in range(self.length)]

    def __len__(self) -> int:
        return self.length

    def _centres(self, rng: np.random.Generator, count: int) -> list[np.ndarray]:
        """`count` disc centres, pairwise at least 0.45·size apart when room allows."""
        s = self.size
        centres: list[np.ndarray] = []
        for _ in range(200):
            c = rng.uniform(0.18 * s, 0.82 * s, 2)
            if all(np.hypot(*(c - d)) > 0.45 * s for d in centres):
                centres.append(c)
                if len(centres) == count:
                    break
        return centres

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Scene `index`: image uint8 (H, W, 3), label int64 (H, W)."""
        if not 0 <= index < self.length:
            raise IndexError(f"synthetic index {index} out of range 0..{self.length - 1}")
        rng = np.random.default_rng([self.seed, index])
        s = self.size
        yy, xx = np.mgrid[:s, :s].astype(np.float32)
        cls = int(rng.integers(1, self.num_classes))
        centres = self._centres(rng, int(rng.integers(2, 4)))
        tagged = int(rng.integers(len(centres)))

        image = np.empty((s, s, 3), dtype=np.float32)
        image[:] = rng.uniform(0.35, 0.65, 3)  # plain background of a random dull colour
        angle, phase = rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
        stripes = 0.5 + 0.25 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 0.7 + phase)
        label = np.zeros((s, s), dtype=np.int64)
        inside_any = np.zeros((s, s), dtype=bool)
        for i, (cy, cx) in enumerate(centres):
            r = rng.uniform(0.12 * s, 0.18 * s)
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
            image[inside] = stripes[inside, None]
            label[inside] = cls
            inside_any |= inside
            if i == tagged:
                half = max(s // 16, 2)
                tag = (np.abs(yy - cy) < half) & (np.abs(xx - cx) < half)
                image[tag] = self.tag_colors[cls - 1]
        image += rng.normal(0.0, 0.04, image.shape).astype(np.float32)
        image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
        label[inside_any & _dilate(~inside_any, 1)] = self.ignore_index  # border band
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
