"""Cityscapes (fine annotations): label ids -> the official 19 train ids, everything else ignored."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from .base import SegmentationDataset, apply_lut

__all__ = ["CityscapesDataset", "CITYSCAPES_CLASSES", "CITYSCAPES_PALETTE", "CITYSCAPES_LABEL_TO_TRAIN"]

CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)  # fmt: skip

CITYSCAPES_PALETTE = [
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
]  # fmt: skip

# labelId -> trainId for the evaluated classes (cityscapesScripts labels.py); all other ids -> 255.
CITYSCAPES_LABEL_TO_TRAIN = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
    27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip


def _label_lut(ignore_index: int) -> np.ndarray:
    # 256 entries: labelIds PNGs are uint8; ids 0..6, 9, 10, 14..16, 18, 29, 30 and 34..255 are ignored.
    lut = np.full(256, ignore_index, dtype=np.int64)
    for label_id, train_id in CITYSCAPES_LABEL_TO_TRAIN.items():
        lut[label_id] = train_id
    return lut


class CityscapesDataset(SegmentationDataset):
    """Cityscapes fine: `leftImg8bit/<split>/<city>/*_leftImg8bit.png` + `gtFine/.../*_gtFine_labelIds.png`.

    Label ids are mapped to the 19 train ids (255 elsewhere). If no `*_labelIds.png` exist but
    `*_labelTrainIds.png` do (cityscapesScripts' createTrainIdLabelImgs), those are read as is.

    Args:
        root: the folder holding leftImg8bit/ and gtFine/.
        split: train, val or test.
        transform: paired transform.
        label_type: "auto", "labelIds" or "labelTrainIds".
    """

    CLASSES = CITYSCAPES_CLASSES
    PALETTE = CITYSCAPES_PALETTE
    SPLITS = ("train", "val", "test")
    LAYOUT = """
ROOT/
  leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
  gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png   (label ids 0..33)
"""

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        transform: Callable | None = None,
        label_type: str = "auto",
    ):
        super().__init__(root, split, transform)
        self.check_split(self.SPLITS)
        if label_type not in ("auto", "labelIds", "labelTrainIds"):
            raise ValueError(
                f"label_type={label_type!r} is not valid; choose auto, labelIds or labelTrainIds"
            )
        self.root = self.require_root()
        image_dir = self.require_dir(self.root / "leftImg8bit" / split, f"leftImg8bit/{split}")
        label_dir = self.require_dir(self.root / "gtFine" / split, f"gtFine/{split}")
        if label_type == "auto":
            has_ids = next(label_dir.glob("*/*_gtFine_labelIds.png"), None) is not None
            has_train = next(label_dir.glob("*/*_gtFine_labelTrainIds.png"), None) is not None
            label_type = "labelTrainIds" if (has_train and not has_ids) else "labelIds"
        self.label_type = label_type
        self._lut = _label_lut(self.ignore_index)
        images = sorted(image_dir.glob("*/*_leftImg8bit.png"))
        if not images:
            raise self.layout_error(f"{image_dir}: no */*_leftImg8bit.png images found", image_dir)
        self.files = []
        for img in images:
            prefix = img.name[: -len("_leftImg8bit.png")]
            label = label_dir / img.parent.name / f"{prefix}_gtFine_{label_type}.png"
            self.files.append((str(img), str(label)))

    def map_label(self, raw: np.ndarray, path: str) -> np.ndarray:
        if self.label_type == "labelTrainIds":
            return raw
        return apply_lut(raw, self._lut, path)
