"""Mask conventions: value maps, colour masks, reduce-zero-label, and the tell-tale signs of a wrong one.

A mask file stores numbers; a dataset needs class ids 0..num_classes-1 and the ignore label.
Common ways the two disagree (each with its fix, used by the folder dataset, `preflight` and
`emanet data check`):
- binary masks saved as 0/255 with classes [background, object]: 255 is the ignore label, so
  the object is silently ignored (mmsegmentation #1304) -> `label_map: {255: 1}`;
- masks scaled for display (0, 85, 170, 255 for 4 classes) -> `label_map: {85: 1, ...}`;
- colour masks (RGB, one colour per class) -> mapped through the palette of classes.yaml;
- 0 = "unlabelled", classes 1..N -> `reduce_zero_label: true`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from .errors import DataError
from .palette import voc_palette

__all__ = [
    "parse_label_map",
    "apply_label_map",
    "reduce_zero_label",
    "colour_to_index",
    "convention_hints",
]


def parse_label_map(
    label_map: Mapping | None, num_classes: int, ignore_index: int, source: str
) -> dict[int, int] | None:
    """Validate a `{raw value: class id or ignore}` mapping (YAML may give keys as strings).

    Raises:
        DataError: one line naming `source`, the bad entry and the accepted values.
    """
    if label_map is None:
        return None
    if not isinstance(label_map, Mapping) or not label_map:
        raise DataError(
            f"{source}: label_map={label_map!r} must be a non-empty mapping of mask value -> class id, "
            f"e.g. {{255: 1}}"
        )
    out = {}
    for k, v in label_map.items():
        try:
            key, value = int(k), int(v)
        except (TypeError, ValueError):
            raise DataError(
                f"{source}: label_map entry {k!r}: {v!r} is not an integer pair, e.g. 255: 1"
            ) from None
        if not 0 <= key <= 65535:
            raise DataError(f"{source}: label_map key {key} is not a mask value 0..65535")
        if not (0 <= value < num_classes or value == ignore_index):
            raise DataError(
                f"{source}: label_map maps {key} to {value}, which is neither a class id "
                f"0..{num_classes - 1} nor the ignore label {ignore_index}"
            )
        out[key] = value
    return out


def apply_label_map(raw: np.ndarray, label_map: Mapping[int, int] | None) -> np.ndarray:
    """Replace each listed raw value by its class id; other values are kept.

    Args:
        raw: (H, W) int64 mask values as stored.
        label_map: {raw value: class id}; None: identity.
    """
    if not label_map:
        return raw
    out = raw.copy()
    for key, value in label_map.items():
        out[raw == key] = value
    return out


def reduce_zero_label(label: np.ndarray, ignore_index: int) -> np.ndarray:
    """0 (unlabelled) -> ignore, v -> v - 1; the ignore label stays (ADE20K's convention)."""
    return np.where((label == 0) | (label == ignore_index), ignore_index, label - 1)


def colour_to_index(
    rgb: np.ndarray, palette: Sequence[Sequence[int]], ignore_index: int, path: str | os.PathLike
) -> np.ndarray:
    """Map a colour mask through a palette: palette[i] -> i; the VOC colour of the ignore label
    (224, 224, 192 for 255) -> ignore.

    Args:
        rgb: (H, W, 3) uint8.
        palette: one (r, g, b) per class.

    Returns:
        (H, W) int64 class ids.

    Raises:
        DataError: colours that are in neither the palette nor the ignore colour, with the fix.
    """
    codes = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    table = {}
    if 0 <= ignore_index < 256:
        r, g, b = voc_palette(256)[ignore_index]
        table[(r << 16) | (g << 8) | b] = ignore_index
    for i, (r, g, b) in enumerate(palette):
        table[(int(r) << 16) | (int(g) << 8) | int(b)] = i
    values, inverse = np.unique(codes, return_inverse=True)
    unknown = [int(v) for v in values if int(v) not in table]
    if unknown:
        shown = [((v >> 16) & 255, (v >> 8) & 255, v & 255) for v in unknown[:5]]
        raise DataError(
            f"{path}: colour mask has colours {shown} that are not in the class palette; list each class "
            f"colour under 'palette:' in classes.yaml (one [r, g, b] per class) or save index masks",
            path,
        )
    lut = np.array([table[int(v)] for v in values], dtype=np.int64)
    return lut[inverse.reshape(codes.shape)]


def convention_hints(
    histogram: Mapping[int, int], num_classes: int, ignore_index: int, class_names: Sequence[str]
) -> list[str]:
    """The likely mask conventions that differ from "value = class id", each with its fix.

    Args:
        histogram: {mask value as stored (after any label_map): pixel count} over many masks.
        num_classes: classes of the dataset.
        ignore_index: the ignore label.
        class_names: names of the classes (for the messages).

    Returns:
        One line per suspected problem (empty when the values look like class ids).
    """
    values = sorted(v for v, n in histogram.items() if n > 0)
    if not values:
        return []
    hints = []
    labelled = [v for v in values if v != ignore_index]
    if num_classes >= 2 and labelled and set(labelled) <= {0} and ignore_index in values:
        missing = ", ".join(repr(c) for c in class_names[1:4])
        hints.append(
            f"masks hold only 0 and {ignore_index} (the ignore label), so {missing} never appear: if "
            f"{ignore_index} marks {class_names[1]!r} (a 0/{ignore_index} binary mask), set "
            f"data.options.label_map={{{ignore_index}: 1}}"
        )
        return hints
    nonzero = [v for v in labelled if v > 0]
    if nonzero and max(nonzero) >= num_classes:
        scaled = [v for v in values if v > 0]  # the ignore value too: 255 may be the top class
        if len(scaled) > num_classes:
            hints.append(
                f"masks hold {len(values)} distinct values for {num_classes} classes: were they saved as "
                f"JPEG or resized with interpolation? save masks as PNG, resized with nearest neighbour"
            )
        elif len(scaled) <= num_classes - 1 and len(scaled) > 1:
            fix = ", ".join(f"{v}: {i + 1}" for i, v in enumerate(scaled))
            hints.append(
                f"mask values {values} look scaled for display (one grey level per class); if so, set "
                f"data.options.label_map={{{fix}}}"
            )
        elif max(nonzero) == num_classes and 0 in values:
            hints.append(
                f"mask values go up to {num_classes} = the number of classes: if 0 marks unlabelled "
                f"pixels and 1..{num_classes} the classes, set data.options.reduce_zero_label=true"
            )
    return hints
