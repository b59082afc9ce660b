"""Write small folder datasets (images/, masks/, classes.yaml, split lists) for the data tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["write_folder", "blocks_image", "two_region_mask"]


def blocks_image(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """(h, w, 3) uint8 image of flat 16x16 colour blocks (survives JPEG; no symmetry)."""
    rng = np.random.default_rng(seed)
    grid = rng.integers(0, 256, (-(-h // 16), -(-w // 16), 3), dtype=np.uint8)
    return np.repeat(np.repeat(grid, 16, 0), 16, 1)[:h, :w]


def two_region_mask(h: int = 48, w: int = 64, value: int = 1, background: int = 0) -> np.ndarray:
    """(h, w) uint8: `value` in the top-left quarter-ish block, `background` elsewhere."""
    mask = np.full((h, w), background, dtype=np.uint8)
    mask[: h // 2, : w // 3] = value
    return mask


def write_folder(
    root: Path,
    masks: dict[str, np.ndarray | None],
    classes: tuple[str, ...] = ("background", "object"),
    splits: dict[str, list[str]] | None = None,
    image_ext: str = ".png",
    extra_yaml: str = "",
) -> Path:
    """A folder dataset: one blocks image per mask (same size), masks as PNG (None: no mask file).

    Args:
        masks: {name: (h, w) uint8/uint16 index mask or (h, w, 3) colour mask, or None}.
        splits: {split: names} written as <split>.txt; default train and val = all names.
    """
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    (root / "classes.yaml").write_text(f"classes: [{', '.join(classes)}]\n{extra_yaml}")
    for i, (name, mask) in enumerate(masks.items()):
        h, w = (48, 64) if mask is None else mask.shape[:2]
        Image.fromarray(blocks_image(h, w, seed=i)).save(root / "images" / f"{name}{image_ext}")
        if mask is not None:
            Image.fromarray(mask).save(root / "masks" / f"{name}.png")
    names = list(masks)
    for split, listed in (splits or {"train": names, "val": names}).items():
        (root / f"{split}.txt").write_text("".join(f"{n}\n" for n in listed))
    return root
