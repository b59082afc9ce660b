"""Write tiny datasets in each real on-disk layout, for tests and for trying the tools without a download.

    root = write_fake_dataset("cityscapes", tmp_path / "cs")
    ds = build_dataset("cityscapes", root, "train")

Images are random RGB noise; masks are blocks of raw label values in the dataset's own encoding
(label ids for Cityscapes, 0 = other for ADE20K, raw COCO ids, ...), cycling through `RAW_VALUES`
so every listed value appears and the class mapping is exercised.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from .palette import voc_palette

__all__ = ["write_fake_dataset", "RAW_VALUES", "FAKE_LAYOUTS"]

# Raw mask values written per dataset (ignore/void values included on purpose).
RAW_VALUES = {
    "voc_aug": [0, 1, 15, 20, 255],
    "cityscapes": [0, 1, 7, 8, 11, 26, 33, 29],
    "ade20k": [0, 1, 2, 150],
    "pascal_context": [0, 1, 30, 59],
    "coco_stuff": [0, 10, 11, 12, 91, 181, 255],
    "coco_stuff_trainids": [0, 11, 80, 170, 255],
    "folder": [0, 1, 2, 255],
}
FAKE_LAYOUTS = ("voc_aug", "cityscapes", "ade20k", "pascal_context", "coco_stuff", "folder")


def _mask(values: list[int], size: tuple[int, int], rng: np.random.Generator, block: int = 4) -> np.ndarray:
    """(H, W) uint8 blocks of `values`, shuffled per image but each value present."""
    h, w = size
    gh, gw = -(-h // block), -(-w // block)
    cells = np.resize(np.asarray(values, dtype=np.uint8), gh * gw)
    grid = rng.permutation(cells).reshape(gh, gw)
    return np.kron(grid, np.ones((block, block), dtype=np.uint8))[:h, :w]


def _write(path: Path, array: np.ndarray, mode: str | None = None, palette: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if palette:  # index PNG with the VOC colours, as the VOC/SBD masks are distributed
        img = Image.frombytes("P", (array.shape[1], array.shape[0]), np.ascontiguousarray(array).tobytes())
        img.putpalette([c for rgb in voc_palette() for c in rgb])
    else:
        img = Image.fromarray(array)
        if mode is not None:
            img = img.convert(mode)
    if path.suffix == ".jpg":
        img.save(path, quality=95)
    else:
        img.save(path)


def write_fake_dataset(
    name: str,
    root: str | os.PathLike,
    num_images: int = 3,
    size: tuple[int, int] = (24, 32),
    seed: int = 0,
    train_ids: bool = False,
) -> Path:
    """Write a tiny dataset `name` (a `build_dataset` name) under `root`, splits "train" and "val".

    Args:
        name: voc_aug, cityscapes, ade20k, pascal_context, coco_stuff or folder.
        root: output folder (created).
        num_images: images per split.
        size: (H, W) of every image.
        seed: randomness of images and masks.
        train_ids: coco_stuff only: write `*_labelTrainIds.png` (0..170) instead of raw ids.

    Returns:
        The path to pass as `root` to `build_dataset(name, root, split)`.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    values = RAW_VALUES["coco_stuff_trainids" if (name == "coco_stuff" and train_ids) else name]

    def image() -> np.ndarray:
        return rng.integers(0, 256, (*size, 3), dtype=np.uint8)

    def mask() -> np.ndarray:
        return _mask(values, size, rng)

    for split in ("train", "val"):
        stems = [f"{2007 + i}_{split}_{i:06d}" for i in range(num_images)]
        if name == "voc_aug":
            for s in stems:
                _write(root / "JPEGImages" / f"{s}.jpg", image())
                _write(root / "SegmentationClassAug" / f"{s}.png", mask(), palette=True)
            lists = root / "ImageSets" / "Segmentation"
            lists.mkdir(parents=True, exist_ok=True)
            (lists / f"{split}.txt").write_text("\n".join(stems) + "\n")
            if split == "train":  # the SBD-aug distribution's list, with paths
                lines = [f"/JPEGImages/{s}.jpg /SegmentationClassAug/{s}.png" for s in stems]
                (root / "train_aug.txt").write_text("\n".join(lines) + "\n")
        elif name == "cityscapes":
            for i in range(num_images):
                city = "aachen" if i % 2 == 0 else "bochum"
                prefix = f"{city}_{i:06d}_000019"
                _write(root / "leftImg8bit" / split / city / f"{prefix}_leftImg8bit.png", image())
                _write(root / "gtFine" / split / city / f"{prefix}_gtFine_labelIds.png", mask(), mode="L")
        elif name == "ade20k":
            base = root / "ADEChallengeData2016"
            folder = {"train": "training", "val": "validation"}[split]
            for i in range(num_images):
                s = f"ADE_{folder[:5]}_{i + 1:08d}"
                _write(base / "images" / folder / f"{s}.jpg", image())
                _write(base / "annotations" / folder / f"{s}.png", mask(), mode="L")
        elif name == "pascal_context":
            for s in stems:
                _write(root / "JPEGImages" / f"{s}.jpg", image())
                _write(root / "SegmentationClassContext" / f"{s}.png", mask(), mode="L")
            lists = root / "ImageSets" / "SegmentationContext"
            lists.mkdir(parents=True, exist_ok=True)
            (lists / f"{split}.txt").write_text("\n".join(stems) + "\n")
        elif name == "coco_stuff":
            for i in range(num_images):
                s = f"{i + (0 if split == 'train' else 1000):012d}"
                _write(root / "images" / f"{split}2017" / f"{s}.jpg", image())
                suffix = "_labelTrainIds.png" if train_ids else ".png"
                _write(root / "annotations" / f"{split}2017" / f"{s}{suffix}", mask(), mode="L")
        elif name == "folder":
            for s in stems:
                _write(root / "images" / f"{s}.png", image())
                _write(root / "masks" / f"{s}.png", mask(), mode="L")
            (root / f"{split}.txt").write_text("\n".join(stems) + "\n")
            spec = {"classes": ["background", "cat", "dog"], "palette": [[0, 0, 0], [200, 0, 0], [0, 200, 0]]}
            (root / "classes.yaml").write_text(yaml.safe_dump(spec))
        else:
            raise ValueError(f"no fake layout for dataset {name!r}; choose one of {', '.join(FAKE_LAYOUTS)}")
    return root
