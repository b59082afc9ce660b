"""ADE20K (SceneParsing / ADEChallengeData2016): 150 classes, label 0 ("other") ignored."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from .base import SegmentationDataset
from .palette import voc_palette

__all__ = ["ADE20KDataset", "ADE20K_CLASSES"]

ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence",
    "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column",
    "signboard", "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator",
    "grandstand", "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway",
    "river", "bridge", "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench",
    "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar",
    "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier", "awning",
    "streetlight", "booth", "television receiver", "airplane", "dirt track", "apparel", "pole", "land",
    "bannister", "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain",
    "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel", "basket",
    "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank", "trade name",
    "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood",
    "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)  # fmt: skip


class ADE20KDataset(SegmentationDataset):
    """ADE20K scene parsing, 150 classes, with reduce-zero-label (0 -> 255, v -> v-1, 255 stays).

    Args:
        root: ADEChallengeData2016/ or its parent.
        split: train or val (the folders training/ and validation/).
        transform: paired transform.
    """

    CLASSES = ADE20K_CLASSES
    PALETTE = voc_palette(151)[1:]
    SPLITS = {"train": "training", "val": "validation"}
    LAYOUT = """
ROOT/                               (ADEChallengeData2016/ or the folder that contains it)
  images/training/<name>.jpg        images/validation/<name>.jpg
  annotations/training/<name>.png   annotations/validation/<name>.png   (0 = other, 1..150 = classes)
"""

    def __init__(self, root: str | os.PathLike, split: str = "train", transform: Callable | None = None):
        super().__init__(root, split, transform)
        self.check_split(tuple(self.SPLITS))
        self.root = self.require_root()
        if (self.root / "ADEChallengeData2016").is_dir():
            self.root = self.root / "ADEChallengeData2016"
        folder = self.SPLITS[split]
        image_dir = self.require_dir(self.root / "images" / folder, f"images/{folder}")
        label_dir = self.require_dir(self.root / "annotations" / folder, f"annotations/{folder}")
        images = sorted(image_dir.glob("*.jpg"))
        if not images:
            raise self.layout_error(f"{image_dir}: no *.jpg images found", image_dir)
        self.files = [(str(p), str(label_dir / f"{p.stem}.png")) for p in images]

    def map_label(self, raw: np.ndarray, path: str) -> np.ndarray:
        return np.where((raw == 0) | (raw == 255), self.ignore_index, raw - 1)
