"""PASCAL VOC 2012 + SBD aug (21 classes) and PASCAL Context (59 or 60 classes): JPEGImages + split lists."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .base import SegmentationDataset, read_split
from .palette import voc_palette

__all__ = ["VOCAugDataset", "PascalContextDataset", "VOC_CLASSES", "CONTEXT_CLASSES"]

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)  # fmt: skip

# The order of the label values written by the Detail-API conversion (mmseg, PaddleSeg): 0 is background.
CONTEXT_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "table", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
    "bag", "bed", "bench", "book", "building", "cabinet", "ceiling", "cloth", "computer", "cup", "door",
    "fence", "floor", "flower", "food", "grass", "ground", "keyboard", "light", "mountain", "mouse",
    "curtain", "platform", "sign", "plate", "road", "rock", "shelves", "sidewalk", "sky", "snow",
    "bedclothes", "track", "tree", "truck", "wall", "water", "window", "wood",
)  # fmt: skip


def _find_root(root: Path, subdirs: tuple[str, ...]) -> Path:
    """The first of root, root/<subdir>... that holds JPEGImages/ (users point at VOCdevkit or VOC2012)."""
    for cand in (root, *(root / s for s in subdirs)):
        if (cand / "JPEGImages").is_dir():
            return cand
    return root


class VOCAugDataset(SegmentationDataset):
    """PASCAL VOC 2012 with the SBD augmented masks ("trainaug", 10,582 images; val 1,449).

    Masks are index PNGs (0..20, 255 = boundary/ignore) from `SegmentationClassAug/`, or from
    `SegmentationClass/` (plain VOC) when the aug folder is absent. Splits: train, trainaug (alias
    train_aug, aug), val, trainval; the list is looked up in `ImageSets/Segmentation/` then in root.

    Args:
        root: the VOC2012 folder (or VOCdevkit / its parent).
        split: train, trainaug, val or trainval.
        transform: paired transform (see `emanet.data.transforms`).
    """

    CLASSES = VOC_CLASSES
    PALETTE = voc_palette(21)
    SPLITS = ("train", "trainaug", "train_aug", "aug", "val", "trainval")
    LAYOUT = """
ROOT/                               (the VOC2012 folder; VOCdevkit/VOC2012 also found)
  JPEGImages/<name>.jpg
  SegmentationClassAug/<name>.png   index PNGs 0..20, 255 ignore (or SegmentationClass/ for plain VOC)
  ImageSets/Segmentation/<split>.txt   one <name> per line (or ROOT/<split>.txt);
                                       trainaug may be named train_aug.txt / trainaug.txt / aug.txt
"""

    def __init__(self, root: str | os.PathLike, split: str = "trainaug", transform: Callable | None = None):
        super().__init__(root, split, transform)
        self.check_split(self.SPLITS)
        self.root = self.require_root()
        self.root = _find_root(self.root, ("VOC2012", "VOCdevkit/VOC2012"))
        image_dir = self.require_dir(self.root / "JPEGImages", "JPEGImages")
        label_dir = self.root / "SegmentationClassAug"
        if not label_dir.is_dir():
            label_dir = self.require_dir(
                self.root / "SegmentationClass", "SegmentationClassAug (or SegmentationClass)"
            )
        self.label_dir = label_dir
        stems = read_split(self._split_file())
        self.files = [(str(image_dir / f"{s}.jpg"), str(label_dir / f"{s}.png")) for s in stems]

    def _split_file(self) -> Path:
        root = self.require_root()  # checked in __init__; narrows the type
        names = (
            ("trainaug", "train_aug", "aug")
            if self.split in ("trainaug", "train_aug", "aug")
            else (self.split,)
        )
        candidates = [d / f"{n}.txt" for n in names for d in (root / "ImageSets" / "Segmentation", root)]
        for c in candidates:
            if c.is_file():
                return c
        raise self.layout_error(
            f"{candidates[0]}: split file for split={self.split!r} not found (also looked for "
            f"{', '.join(str(c) for c in candidates[1:]) or 'nothing else'})",
            candidates[0],
        )


class PascalContextDataset(SegmentationDataset):
    """PASCAL Context in the common PNG layout (mmseg / PaddleSeg conversion of the Detail API).

    Masks hold 0..59 with 0 = background. By default the 59 object classes are kept and background
    is ignored (reduce-zero-label: 0 -> 255, v -> v-1); `include_background=True` keeps 60 classes.

    Args:
        root: the VOC2010 folder (or VOCdevkit / its parent).
        split: train or val.
        transform: paired transform.
        include_background: 60 classes with background = 0 instead of 59.
    """

    SPLITS = ("train", "val")
    LAYOUT = """
ROOT/                                    (the VOC2010 folder; VOCdevkit/VOC2010 also found)
  JPEGImages/<name>.jpg
  SegmentationClassContext/<name>.png    index PNGs 0..59, 0 = background
  ImageSets/SegmentationContext/<split>.txt   train.txt / val.txt, one <name> per line
"""

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        transform: Callable | None = None,
        include_background: bool = False,
    ):
        super().__init__(root, split, transform)
        self.include_background = bool(include_background)
        self.CLASSES = CONTEXT_CLASSES if include_background else CONTEXT_CLASSES[1:]
        # VOC colours: the first 20 Context classes are the VOC object classes in VOC order.
        self.PALETTE = voc_palette(61)[0 if include_background else 1 :][: len(self.CLASSES)]
        self.check_split(self.SPLITS)
        self.root = self.require_root()
        self.root = _find_root(self.root, ("VOC2010", "VOCdevkit/VOC2010"))
        image_dir = self.require_dir(self.root / "JPEGImages", "JPEGImages")
        label_dir = self.require_dir(self.root / "SegmentationClassContext", "SegmentationClassContext")
        split_file = self.root / "ImageSets" / "SegmentationContext" / f"{split}.txt"
        if not split_file.is_file():
            raise self.layout_error(f"{split_file}: split file for split={split!r} not found", split_file)
        stems = read_split(split_file)
        self.files = [(str(image_dir / f"{s}.jpg"), str(label_dir / f"{s}.png")) for s in stems]

    def map_label(self, raw: np.ndarray, path: str) -> np.ndarray:
        if self.include_background:
            return raw
        # reduce-zero-label; 255 (if any) stays 255
        return np.where((raw == 0) | (raw == 255), self.ignore_index, raw - 1)
