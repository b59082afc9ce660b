"""Any folder of images + index-PNG masks with matching stems; classes and palette from a small YAML."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

from .base import IMAGE_EXTS, SegmentationDataset, read_mask, read_split
from .errors import DataError
from .masks import apply_label_map, parse_label_map, reduce_zero_label
from .palette import voc_palette

__all__ = ["FolderDataset", "load_classes_yaml"]


def load_classes_yaml(path: str | os.PathLike) -> tuple[tuple[str, ...], list[tuple[int, int, int]], int]:
    """Read `classes: [..]`, optional `palette: [[r, g, b], ..]` and `ignore_index` from a YAML file.

    Returns:
        (class names, palette with one colour per class, ignore_index).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{path}: class file not found; create it with 'classes: [background, cat, ...]' "
            f"(optional 'palette: [[r, g, b], ...]', 'ignore_index: 255') or pass classes_yaml",
            path,
        )
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        reason = str(e).replace("\n", " ")
        raise DataError(f"{path}: cannot parse YAML ({reason}); fix the syntax", path) from None
    if not isinstance(spec, dict):
        raise DataError(f"{path}: expected a mapping with a 'classes' key, got {type(spec).__name__}", path)
    unknown = set(spec) - {"classes", "palette", "ignore_index"}
    if unknown:
        raise DataError(
            f"{path}: unknown keys {sorted(unknown)}; allowed: classes, palette, ignore_index", path
        )
    classes = spec.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, (str, int)) for c in classes):
        raise DataError(f"{path}: 'classes' must be a non-empty list of names, got {classes!r}", path)
    classes = tuple(str(c) for c in classes)
    ignore_index = spec.get("ignore_index", 255)
    if not isinstance(ignore_index, int) or 0 <= ignore_index < len(classes):
        raise DataError(
            f"{path}: ignore_index={ignore_index!r} must be an int outside the class ids "
            f"0..{len(classes) - 1}",
            path,
        )
    palette = spec.get("palette")
    if palette is None:
        palette = voc_palette(max(len(classes), 256))[: len(classes)]
    else:
        ok = isinstance(palette, list) and all(
            isinstance(c, (list, tuple))
            and len(c) == 3
            and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
            for c in palette
        )
        if not ok or len(palette) < len(classes):
            raise DataError(
                f"{path}: 'palette' must list one [r, g, b] (ints 0..255) per class ({len(classes)} classes)",
                path,
            )
        palette = [tuple(c) for c in palette[: len(classes)]]
    return classes, palette, ignore_index


def _files_by_stem(folder: Path) -> dict[str, Path]:
    """{stem: file} of the readable images in `folder`; two files of one stem are an error."""
    by_stem: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if not (p.is_file() and p.suffix.lower() in IMAGE_EXTS):
            continue
        if p.stem in by_stem:
            raise DataError(
                f"{folder}: {by_stem[p.stem].name} and {p.name} have the same name {p.stem!r}; keep one file "
                f"per sample (rename or remove the other)",
                p,
            )
        by_stem[p.stem] = p
    return by_stem


class FolderDataset(SegmentationDataset):
    """`images/` + `masks/` with matching stems.

    Images: any format Pillow reads (.jpg, .png, .webp, .tif, .bmp, ...), read as displayed (EXIF
    orientation applied) and 16-bit scaled to 8 bits. Masks: index images whose values are class
    ids, or colour masks (RGB) mapped through the palette of classes.yaml; `label_map` and
    `reduce_zero_label` fix other conventions (see `emanet.data.masks`).

    Sample lists, in order of preference: `<root>/<split>.txt` (one name per line, spaces
    allowed); sub-folders `images/<split>/` + `masks/<split>/`; with split=None every image in
    `images/`. Without a `masks/` folder the labels are all ignore (for prediction).

    Args:
        root: the dataset folder.
        split: None, or a name with a list file or sub-folders as above.
        classes_yaml: the class file; default `<root>/classes.yaml`.
        transform: paired transform.
        label_map: {mask value: class id or ignore}, applied first, e.g. {255: 1} for 0/255 masks.
        reduce_zero_label: 0 -> ignore and v -> v-1 (masks where 0 means unlabelled).
    """

    LAYOUT = """
ROOT/
  classes.yaml            classes: [background, cat, ...]
                          (optional: palette: [[r, g, b], ...], ignore_index: 255)
  images/<name>.jpg       any format Pillow reads: .jpg .png .webp .tif .bmp ...
  masks/<name>.png        pixel value = class id (or a colour of the palette)
  <split>.txt             optional: one <name> per line (or images/<split>/ + masks/<split>/ sub-folders)
"""

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        classes_yaml: str | os.PathLike | None = None,
        transform: Callable | None = None,
        label_map: dict | None = None,
        reduce_zero_label: bool = False,
    ):
        super().__init__(root, split, transform)
        self.root = self.require_root()
        self.classes_yaml = Path(classes_yaml) if classes_yaml is not None else self.root / "classes.yaml"
        self.CLASSES, self.PALETTE, self.ignore_index = load_classes_yaml(self.classes_yaml)
        self.label_map = parse_label_map(
            label_map, len(self.CLASSES), self.ignore_index, "folder dataset option label_map"
        )
        if not isinstance(reduce_zero_label, bool):
            raise DataError(
                f"folder dataset option reduce_zero_label={reduce_zero_label!r} must be true or false"
            )
        if reduce_zero_label and self.label_map:
            raise DataError(
                "folder dataset options label_map and reduce_zero_label are both set; use one (label_map "
                "can express reduce_zero_label, e.g. {0: 255, 1: 0, 2: 1})"
            )
        self.reduce_zero_label = reduce_zero_label
        image_dir = self.require_dir(self.root / "images", "images")
        mask_dir = self.root / "masks"
        stems = None
        if split is not None:
            split_file = self.root / f"{split}.txt"
            if split_file.is_file():
                stems = read_split(split_file)
            elif (image_dir / split).is_dir():
                image_dir, mask_dir = image_dir / split, mask_dir / split
            else:
                raise self.layout_error(
                    f"{split_file}: split list for split={split!r} not found (nor {image_dir / split}/)",
                    split_file,
                )
        by_stem = _files_by_stem(image_dir)
        if stems is None:
            stems = list(by_stem)
            if not stems:
                raise self.layout_error(
                    f"{image_dir}: no images found (any format Pillow reads: "
                    f"{', '.join(IMAGE_EXTS[:7])}, ...)",
                    image_dir,
                )
        missing = [s for s in stems if s not in by_stem]
        if missing:
            raise DataError(
                f"{self.root / f'{split}.txt'}: {len(missing)} listed names have no image in {image_dir} "
                f"(first: {missing[0]!r}); fix the list or add the images",
                self.root / f"{split}.txt",
            )
        masks = _files_by_stem(mask_dir) if mask_dir.is_dir() else None
        self.files = [
            (str(by_stem[s]), None if masks is None else str(masks.get(s, mask_dir / f"{s}.png")))
            for s in stems
        ]

    def read_raw_mask(self, path: str, image_size: tuple[int, int]) -> np.ndarray:
        return read_mask(path, image_size, palette=self.PALETTE, ignore_index=self.ignore_index)

    def map_label(self, raw: np.ndarray, path: str) -> np.ndarray:
        label = apply_label_map(raw, self.label_map)
        return reduce_zero_label(label, self.ignore_index) if self.reduce_zero_label else label
