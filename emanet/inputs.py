"""What `emanet predict` and `Predictor.predict` accept: files, folders, globs and in-memory
images, turned into a flat list of files (with their place in a mirrored output tree) or into
(H, W, 3) uint8 RGB arrays.

    files, missing = expand_inputs(["photos/", "extra/*.jpg", "one.png"])
    files[0].path, files[0].rel        # photos/2024/a.jpg, 2024/a.jpg (relative to the common root)
    output_name(files[0].rel, "_mask.png")   # 2024/a.jpg_mask.png: the extension stays in the name
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .data.base import IMAGE_EXTS

__all__ = [
    "InputFile",
    "VIDEO_EXTS",
    "IMAGE_EXTS",
    "expand_inputs",
    "output_name",
    "is_video",
    "to_rgb",
]

VIDEO_EXTS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg")
_GLOB_MAGIC = ("*", "?", "[")


@dataclass(frozen=True)
class InputFile:
    """One file to predict: where it is and where it sits in the output tree.

    Attributes:
        path: the file as found.
        rel: its path relative to the common root of all inputs (the output tree mirrors it).
    """

    path: Path
    rel: Path


def is_video(path: str | os.PathLike) -> bool:
    """True for the video extensions `emanet predict` decodes (with the `video` extra)."""
    return Path(path).suffix.lower() in VIDEO_EXTS


def _wanted(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTS or is_video(path)


def _glob_base(pattern: str) -> Path:
    """The folder part of a glob before its first wildcard: 'a/b/**/*.jpg' -> 'a/b'."""
    parts = Path(pattern).parts
    keep = []
    for part in parts:
        if any(m in part for m in _GLOB_MAGIC):
            break
        keep.append(part)
    return Path(*keep) if keep else Path(".")


def expand_inputs(specs: Sequence[str | os.PathLike]) -> tuple[list[InputFile], list[str]]:
    """Files, folders (searched recursively) and globs -> the files to predict.

    A folder contributes its image and video files (by extension; other files are left alone);
    a file or glob match is taken whatever its extension, so an unreadable one is reported when
    it is read. Each file appears once. `rel` is relative to the common root of the given
    folders, glob prefixes and file parents, so `a/x.png b/x.png` keep apart.

    Returns:
        (files in a stable order, specs that matched nothing).
    """
    found: list[tuple[Path, Path]] = []  # (file, base folder)
    missing: list[str] = []
    for spec in specs:
        text = str(spec)
        path = Path(text)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and _wanted(p))
            found += [(p, path) for p in files]
            if not files:
                missing.append(f"{text} (a folder with no image or video file)")
        elif path.is_file():
            found.append((path, path.parent))
        elif any(m in text for m in _GLOB_MAGIC):
            files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            found += [(p, _glob_base(text)) for p in files]
            if not files:
                missing.append(f"{text} (the pattern matches no file)")
        else:
            missing.append(f"{text} (no such file or folder)")
    if not found:
        return [], missing
    root = Path(os.path.commonpath([str(base.resolve()) for _, base in found]))
    out, seen = [], set()
    for path, _ in found:
        resolved = path.resolve()
        if resolved in seen:
            continue
        seen.add(resolved)
        out.append(InputFile(path, resolved.relative_to(root)))
    return out, missing


def output_name(rel: str | os.PathLike, suffix: str) -> Path:
    """The output path of `rel` for one kind of output: the whole file name, extension included,
    plus `suffix`, so 'a.jpg' and 'a.png' give 'a.jpg_mask.png' and 'a.png_mask.png'."""
    rel = Path(rel)
    return rel.with_name(rel.name + suffix)


def to_rgb(image) -> np.ndarray:
    """A PIL image, a NumPy array or a tensor -> (H, W, 3) uint8 RGB.

    PIL images are turned upright by their EXIF orientation (as `read_image` does for files).
    Arrays: (H, W) grey, (H, W, 1|3|4) uint8, or float in [0, 1]. Tensors: (3, H, W) or
    (1, 3, H, W), uint8 or float in [0, 1] (torchvision's convention); (H, W, 3) is accepted too.
    """
    if isinstance(image, Image.Image):
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    if hasattr(image, "detach"):  # a torch tensor: channels first
        t = image.detach().cpu()
        if t.dim() == 4 and t.shape[0] == 1:
            t = t[0]
        if t.dim() == 3 and t.shape[0] in (1, 3, 4) and t.shape[-1] not in (1, 3, 4):
            t = t.permute(1, 2, 0)
        image = t.numpy()
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"predict expects an (H, W, 3) RGB array or a (3, H, W) tensor, got shape {arr.shape}; "
            "give one image at a time or a list"
        )
    if arr.dtype != np.uint8:
        if arr.dtype.kind == "f" and arr.size and float(np.nanmax(arr)) > 1.0:
            raise ValueError(
                f"float image with values up to {float(np.nanmax(arr)):.1f}: predict expects float "
                "images in [0, 1] or uint8 in [0, 255]; divide by 255 or cast to uint8"
            )
        scale = 255.0 if arr.dtype.kind == "f" else 1.0
        arr = np.clip(np.round(arr.astype(np.float64) * scale), 0, 255).astype(np.uint8)
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(arr[..., :3])
