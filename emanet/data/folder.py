"""Any folder of images + index-PNG masks with matching stems; classes and palette from a small YAML."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import yaml

from .base import IMAGE_EXTS, SegmentationDataset, read_split
from .errors import DataError
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


class FolderDataset(SegmentationDataset):
    """`images/` + `masks/` with matching stems (masks: index PNGs of class ids).

    Sample lists, in order of preference: `<root>/<split>.txt` (stems, one per line); sub-folders
    `images/<split>/` + `masks/<split>/`; with split=None every image in `images/`. Without a
    `masks/` folder the labels are all ignore (for prediction).

    Args:
        root: the dataset folder.
        split: None, or a name with a list file or sub-folders as above.
        classes_yaml: the class file; default `<root>/classes.yaml`.
        transform: paired transform.
    """

    LAYOUT = """
ROOT/
  classes.yaml            classes: [background, cat, ...]
                          (optional: palette: [[r, g, b], ...], ignore_index: 255)
  images/<name>.jpg|.jpeg|.png|.bmp
  masks/<name>.png        index PNG (mode P or L), pixel value = class id
  <split>.txt             optional: one <name> per line (or images/<split>/ + masks/<split>/ sub-folders)
"""

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        classes_yaml: str | os.PathLike | None = None,
        transform: Callable | None = None,
    ):
        super().__init__(root, split, transform)
        self.require_root()
        self.classes_yaml = Path(classes_yaml) if classes_yaml is not None else self.root / "classes.yaml"
        self.CLASSES, self.PALETTE, self.ignore_index = load_classes_yaml(self.classes_yaml)
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
        by_stem = {}
        for p in sorted(image_dir.iterdir()):
            if p.is_file() and p.suffix.lower() in IMAGE_EXTS:
                by_stem.setdefault(p.stem, p)
        if stems is None:
            stems = list(by_stem)
            if not stems:
                raise self.layout_error(f"{image_dir}: no images ({', '.join(IMAGE_EXTS)}) found", image_dir)
        missing = [s for s in stems if s not in by_stem]
        if missing:
            raise DataError(
                f"{self.root / f'{split}.txt'}: {len(missing)} listed names have no image in {image_dir} "
                f"(first: {missing[0]!r}); fix the list or add the images",
                self.root / f"{split}.txt",
            )
        has_masks = mask_dir.is_dir()
        self.files = [(str(by_stem[s]), str(mask_dir / f"{s}.png") if has_masks else None) for s in stems]
