"""Base dataset and the checked readers of images, masks and split lists.

Every reader turns a bad file into a `DataError` naming the file, the problem and the fix, so a
training run either stops with one clear line or (with `SkipBadSamples`) skips and reports it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import DataError
from .masks import colour_to_index
from .transforms import Normalize

__all__ = [
    "SegmentationDataset",
    "read_image",
    "read_mask",
    "read_split",
    "check_label",
    "apply_lut",
    "IMAGE_EXTS",
]


def _readable_extensions() -> tuple[str, ...]:
    """Every file extension Pillow can open (.jpg, .png, .webp, .tif, .bmp, ...), common ones first."""
    Image.init()
    found = {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    common = [e for e in (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff") if e in found]
    return tuple(common + sorted(found - set(common)))


IMAGE_EXTS = _readable_extensions()
_SKIP_HINT = "or set data.skip_bad_samples=true to skip it"


def _open_loaded(path: Path, what: str) -> Image.Image:
    """Open and fully decode `path`; truncation raises because LOAD_TRUNCATED_IMAGES is False."""
    if not path.is_file():
        raise DataError(
            f"{path}: {what} file is missing; add it or remove its entry from the split list", path
        )
    try:
        img = Image.open(path)
        img.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        reason = "not a recognised image format" if isinstance(e, UnidentifiedImageError) else str(e)
        raise DataError(
            f"{path}: cannot decode {what} ({reason}); the file is truncated or corrupt: re-download or "
            f"replace it, {_SKIP_HINT}",
            path,
        ) from None
    return img


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit / 32-bit grey and float images scaled (not clipped) to 8 bits; others unchanged."""
    if img.mode.startswith("I;16") or img.mode == "I":
        arr = np.asarray(img).astype(np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max(initial=0) <= 65535 else float(arr.max())
    elif img.mode == "F":
        arr = np.asarray(img).astype(np.float64)
        top = 1.0 if arr.max(initial=0) <= 1.0 else float(arr.max())
    else:
        return img
    return Image.fromarray(np.clip(np.round(arr * (255.0 / top)), 0, 255).astype(np.uint8), mode="L")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as RGB, as it is displayed.

    The EXIF orientation tag is applied (a phone photo stored sideways comes out upright, as in
    the viewer the mask was drawn in), and 16-bit images are scaled to 8 bits (65535 -> 255).

    Returns:
        (H, W, 3) uint8 array.
    """
    path = Path(path)
    img = _open_loaded(path, "image")
    with contextlib.suppress(OSError, ValueError, SyntaxError):  # a damaged EXIF block: keep as stored
        img = ImageOps.exif_transpose(img)
    return np.asarray(_to_8bit(img).convert("RGB"), dtype=np.uint8)


def read_mask(
    path: str | os.PathLike,
    image_size: tuple[int, int] | None = None,
    palette: Sequence[Sequence[int]] | None = None,
    ignore_index: int = 255,
) -> np.ndarray:
    """Read an index mask (PNG mode P, L, I or I;16) of class ids, unmapped.

    An RGB mask is accepted if its three channels are equal (a grey mask saved as RGB), or, when
    `palette` is given, as a colour mask mapped through it (see `masks.colour_to_index`);
    otherwise a colour-coded mask is an error, since its colours are not class ids.

    Args:
        path: the mask file.
        image_size: (H, W) of the image it belongs to, checked when given.
        palette: one (r, g, b) per class, to read colour masks.
        ignore_index: the class id of the ignore colour (colour masks only).

    Returns:
        (H, W) int64 array.
    """
    path = Path(path)
    img = _open_loaded(path, "mask")
    mode = img.mode
    if mode in ("P", "L", "I", "I;16", "I;16B", "I;16L", "1"):
        mask = np.asarray(img)
    elif mode in ("RGB", "RGBA", "LA"):
        arr = np.asarray(img)
        grey = np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])
        if mode == "LA" or grey:
            mask = arr[..., 0]
        elif palette is not None:
            mask = colour_to_index(arr[..., :3], palette, ignore_index, path)
        else:
            raise DataError(
                f"{path}: mask is a colour (mode {mode}) image, but an index mask is expected; save it as "
                f"a single-channel PNG (mode P or L) whose pixel values are class ids, {_SKIP_HINT}",
                path,
            )
    else:
        raise DataError(
            f"{path}: mask has image mode {mode}, but an index mask is expected; save it as a single-channel "
            f"PNG (mode P or L) whose pixel values are class ids",
            path,
        )
    mask = mask.astype(np.int64)
    if image_size is not None and tuple(mask.shape) != tuple(image_size):
        mh, mw = mask.shape
        ih, iw = image_size
        raise DataError(
            f"{path}: mask is {mw}x{mh} (WxH) but its image is {iw}x{ih}; they must have the same size: "
            f"fix or regenerate the mask, {_SKIP_HINT}",
            path,
        )
    return mask


def apply_lut(mask: np.ndarray, lut: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """Map raw mask values through a lookup table; values past the table are an error.

    Args:
        mask: (H, W) int64 raw values.
        lut: (V,) int64, lut[raw] = class id or ignore.
    """
    if mask.size and (mask.min() < 0 or mask.max() >= len(lut)):
        bad = np.unique(mask[(mask < 0) | (mask >= len(lut))])[:5].tolist()
        raise DataError(
            f"{path}: mask has raw values {bad} outside the dataset's id range 0..{len(lut) - 1}; this is "
            f"not a mask of this dataset: check the file, {_SKIP_HINT}",
            path,
        )
    return lut[mask]


def check_label(label: np.ndarray, num_classes: int, ignore_index: int, path: str | os.PathLike) -> None:
    """Raise if a mapped label has values outside 0..num_classes-1 other than the ignore label."""
    bad_mask = ((label < 0) | (label >= num_classes)) & (label != ignore_index)
    if bad_mask.any():
        bad = np.unique(label[bad_mask])[:5].tolist()
        raise DataError(
            f"{path}: mask has class values {bad} (after the dataset's mapping) that are >= "
            f"num_classes={num_classes} and not the ignore label {ignore_index}; fix the mask or the "
            f"class list, {_SKIP_HINT}",
            path,
        )


def _split_line_name(line: str) -> str:
    """The sample name of one split-list line (see `read_split`)."""
    tokens = line.split()
    if len(tokens) == 2 and all(Path(t).suffix.lower() in IMAGE_EXTS for t in tokens):
        line = tokens[0]  # 'image_path mask_path'
    name = Path(line).name if "/" in line else line
    return Path(name).stem if Path(name).suffix.lower() in IMAGE_EXTS else name


def read_split(path: str | os.PathLike) -> list[str]:
    """Read a split list: one sample per line, as a name or as 'image_path [mask_path]'.

    A line is one name, spaces included ('cat 01' is the sample 'cat 01'); an image extension and
    folders are dropped. Lines like '/JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png'
    (the DeepLab train_aug.txt style: exactly two paths with image extensions) give the stem of the
    first path. Blank lines and '#' comments are skipped.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read split file ({e}); check the file", path) from None
    stems = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        stems.append(_split_line_name(line))
    if not stems:
        raise DataError(f"{path}: split file is empty; list one sample name per line", path)
    return stems


class SegmentationDataset(torch.utils.data.Dataset):
    """Base class: a list of (image, mask) files, a class mapping and a transform.

    Subclasses set `CLASSES`, `PALETTE`, `LAYOUT`, fill `self.files` and may override
    `map_label` (raw mask values -> class ids, `ignore_index` elsewhere).

    Indexing: `ds[i]` or `ds[(i, seed)]`; the random transform uses
    `numpy.random.default_rng(seed)` (seed = i for a plain int), so a sample depends only on the
    file and the seed. Returns a dict:
        "image": (3, H, W) float32 tensor (normalised),
        "label": (H, W) int64 tensor (class ids, `ignore_index` elsewhere),
        "name": str, the image file stem,
        "orig_size": (H, W) of the image as loaded, before any padding (crop predictions back to it).

    Attributes:
        CLASSES: class names, index = class id.
        PALETTE: (r, g, b) per class.
        num_classes: len(CLASSES).
        ignore_index: label of unlabelled pixels (255).
        files: list of (image_path, label_path or None); None gives an all-ignore label.
        transform: `t(image, label, rng) -> (image, label)`; None: only `Normalize()` (ImageNet).
    """

    CLASSES: tuple[str, ...] = ()
    PALETTE: list[tuple[int, int, int]] = []
    LAYOUT: str = ""
    ignore_index: int = 255

    def __init__(self, root: str | os.PathLike | None, split: str | None, transform: Callable | None = None):
        self.root = None if root is None else Path(root)
        self.split = split
        self.transform = transform
        self.files: list[tuple[str, str | None]] = []

    # ---- layout -------------------------------------------------------------------------------
    def layout_error(self, problem: str, path: str | os.PathLike | None = None) -> DataError:
        """A DataError whose message is `problem` followed by the expected on-disk layout."""
        root = self.root if self.root is not None else "ROOT"
        tree = self.LAYOUT.strip("\n").replace("ROOT", str(root))
        return DataError(f"{problem}\nExpected layout of {type(self).__name__}:\n{tree}", path)

    def require_dir(self, path: Path, what: str) -> Path:
        if not path.is_dir():
            raise self.layout_error(f"{path}: {what} folder not found; check data.root", path)
        return path

    def require_root(self) -> Path:
        if self.root is None or not self.root.is_dir():
            raise self.layout_error(f"{self.root}: dataset root does not exist; check data.root", self.root)
        return self.root

    def check_split(self, splits: Sequence[str]) -> None:
        if self.split not in splits:
            raise DataError(
                f"split={self.split!r} is not valid for {type(self).__name__}; "
                f"choose one of {', '.join(splits)}"
            )

    # ---- samples ------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.CLASSES)

    def __len__(self) -> int:
        return len(self.files)

    def sample_name(self, i: int) -> str:
        return Path(self.files[i][0]).stem

    def read_raw_mask(self, path: str, image_size: tuple[int, int]) -> np.ndarray:
        """The (H, W) int64 mask values as stored (before `map_label`); see `read_mask`."""
        return read_mask(path, image_size)

    def map_label(self, raw: np.ndarray, path: str) -> np.ndarray:
        """Raw mask values (H, W) -> class ids; identity by default."""
        return raw

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Read sample i, untransformed.

        Returns:
            image (H, W, 3) uint8 RGB, label (H, W) int64 class ids with the mapping applied.
        """
        image_path, label_path = self.files[i]
        image = read_image(image_path)
        if label_path is None:
            return image, np.full(image.shape[:2], self.ignore_index, dtype=np.int64)
        label = self.map_label(self.read_raw_mask(label_path, image.shape[:2]), label_path)
        check_label(label, self.num_classes, self.ignore_index, label_path)
        return image, label

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        if isinstance(key, tuple):
            index, seed = int(key[0]), int(key[1])
        else:
            index = seed = int(key)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} samples")
        index %= len(self)
        rng = np.random.default_rng(seed)
        image: np.ndarray | torch.Tensor
        label: np.ndarray | torch.Tensor
        image, label = self.load(index)
        orig_size = (int(label.shape[0]), int(label.shape[1]))
        transform = self.transform if self.transform is not None else Normalize()
        image, label = transform(image, label, rng)
        if not isinstance(image, torch.Tensor):  # a user transform without Normalize: convert only
            image = torch.from_numpy(
                np.ascontiguousarray(np.asarray(image, dtype=np.float32).transpose(2, 0, 1))
            )
            label = torch.from_numpy(np.ascontiguousarray(label, dtype=np.int64))
        return {"image": image, "label": label, "name": self.sample_name(index), "orig_size": orig_size}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, samples={len(self)}, "
            f"classes={self.num_classes})"
        )
