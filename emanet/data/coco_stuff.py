"""COCO-Stuff 164k: 80 thing + 91 stuff classes = 171, from the 182 raw ids (11 of them unused)."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from .base import SegmentationDataset, apply_lut
from .palette import voc_palette

__all__ = ["COCOStuffDataset", "COCO_STUFF_CLASSES", "COCO_STUFF_UNUSED_IDS"]

COCO_STUFF_CLASSES = (
    # 80 things
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
    # 91 stuff
    "banner", "blanket", "branch", "bridge", "building-other", "bush", "cabinet", "cage", "cardboard",
    "carpet", "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds", "counter", "cupboard",
    "curtain", "desk-stuff", "dirt", "door-stuff", "fence", "floor-marble", "floor-other", "floor-stone",
    "floor-tile", "floor-wood", "flower", "fog", "food-other", "fruit", "furniture-other", "grass",
    "gravel", "ground-other", "hill", "house", "leaves", "light", "mat", "metal", "mirror-stuff", "moss",
    "mountain", "mud", "napkin", "net", "paper", "pavement", "pillow", "plant-other", "plastic",
    "platform", "playingfield", "railing", "railroad", "river", "road", "rock", "roof", "rug", "salad",
    "sand", "sea", "shelf", "sky-other", "skyscraper", "snow", "solid-other", "stairs", "stone", "straw",
    "structural-other", "table", "tent", "textile-other", "towel", "tree", "vegetable", "wall-brick",
    "wall-concrete", "wall-other", "wall-panel", "wall-stone", "wall-tile", "wall-wood", "water-other",
    "waterdrops", "window-blind", "window-other", "wood",
)  # fmt: skip

# Raw PNG values are COCO category ids - 1 (0..181). These 11 thing ids have no annotations
# (street sign, hat, shoe, eye glasses, plate, mirror, window, desk, door, blender, hair brush).
COCO_STUFF_UNUSED_IDS = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)


def _raw_lut(ignore_index: int) -> np.ndarray:
    """Raw id (0..181) -> contiguous class (0..170); unused ids -> ignore. 255 is handled apart."""
    lut = np.full(182, ignore_index, dtype=np.int64)
    used = [i for i in range(182) if i not in COCO_STUFF_UNUSED_IDS]
    lut[used] = np.arange(len(used))
    return lut


class COCOStuffDataset(SegmentationDataset):
    """COCO-Stuff 164k (train2017 118k / val2017 5k images), 171 classes.

    Reads `annotations/<split>2017/<name>_labelTrainIds.png` (0..170, 255; mmseg's conversion) when
    that folder has any, else the raw `<name>.png` stuffthingmaps (0..181, 255) and maps them.

    Args:
        root: the folder holding images/ and annotations/.
        split: train or val (also train2017 / val2017).
        transform: paired transform.
    """

    CLASSES = COCO_STUFF_CLASSES
    PALETTE = voc_palette(172)[1:]
    SPLITS = ("train", "val", "train2017", "val2017")
    LAYOUT = """
ROOT/
  images/train2017/<name>.jpg        images/val2017/<name>.jpg
  annotations/train2017/<name>_labelTrainIds.png   (0..170, 255; or the raw <name>.png with ids 0..181)
  annotations/val2017/...
"""

    def __init__(self, root: str | os.PathLike, split: str = "train", transform: Callable | None = None):
        super().__init__(root, split, transform)
        self.check_split(self.SPLITS)
        self.root = self.require_root()
        folder = split if split.endswith("2017") else f"{split}2017"
        image_dir = self.require_dir(self.root / "images" / folder, f"images/{folder}")
        label_dir = self.require_dir(self.root / "annotations" / folder, f"annotations/{folder}")
        self.train_ids = next(label_dir.glob("*_labelTrainIds.png"), None) is not None
        self._lut = _raw_lut(self.ignore_index)
        images = sorted(image_dir.glob("*.jpg"))
        if not images:
            raise self.layout_error(f"{image_dir}: no *.jpg images found", image_dir)
        suffix = "_labelTrainIds.png" if self.train_ids else ".png"
        self.files = [(str(p), str(label_dir / f"{p.stem}{suffix}")) for p in images]

    def map_label(self, raw: np.ndarray, path: str) -> np.ndarray:
        if self.train_ids:
            return raw
        unlabeled = raw == 255
        # 255 -> 0 only to pass the lookup; any other value past 181 is reported by apply_lut
        mapped = apply_lut(np.where(unlabeled, 0, raw), self._lut, path)
        mapped[unlabeled] = self.ignore_index
        return mapped
