"""Dataset registry: `build_dataset(name, root, split, transform)` over every supported layout."""

from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Callable

from .ade20k import ADE20KDataset
from .base import SegmentationDataset
from .cityscapes import CityscapesDataset
from .coco_stuff import COCOStuffDataset
from .errors import DataError
from .folder import FolderDataset
from .voc import PascalContextDataset, VOCAugDataset

__all__ = [
    "SegmentationDataset",
    "VOCAugDataset",
    "CityscapesDataset",
    "ADE20KDataset",
    "PascalContextDataset",
    "COCOStuffDataset",
    "FolderDataset",
    "DATASETS",
    "build_dataset",
    "list_datasets",
    "dataset_options",
]

DATASETS: dict[str, type[SegmentationDataset] | None] = {
    "voc_aug": VOCAugDataset,
    "cityscapes": CityscapesDataset,
    "ade20k": ADE20KDataset,
    "pascal_context": PascalContextDataset,
    "coco_stuff": COCOStuffDataset,
    "folder": FolderDataset,
    "synthetic": None,  # imported on use: emanet.data.synthetic.SyntheticDataset
}


def list_datasets() -> list[str]:
    """Names accepted by `build_dataset`."""
    return list(DATASETS)


def _dataset_class(name: str):
    if name == "synthetic":
        from .synthetic import SyntheticDataset

        return SyntheticDataset
    return DATASETS[name]


def dataset_options(name: str) -> list[str]:
    """The keyword options (`data.options`) that dataset `name` accepts."""
    params = inspect.signature(_dataset_class(name).__init__).parameters
    return [p for p in params if p not in ("self", "root", "split", "transform")]


def _check_options(name: str, options: dict) -> None:
    accepted = dataset_options(name)
    unknown = [k for k in options if k not in accepted]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), accepted, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise DataError(
            f"dataset {name!r} has no option {unknown[0]!r} (data.options.{unknown[0]}); {hint}its options "
            f"are: {', '.join(accepted) or 'none'}"
        )


def build_dataset(
    name: str, root: str | os.PathLike | None, split: str | None, transform: Callable | None = None, **kwargs
):
    """Build a dataset by registry name.

    Args:
        name: one of `list_datasets()`.
        root: the dataset folder (ignored by "synthetic").
        split: the split name (see each dataset).
        transform: paired transform `t(image, label, rng) -> (image, label)`.
        **kwargs: dataset options (e.g. include_background for pascal_context, classes_yaml for folder).
    """
    if name not in DATASETS:
        close = difflib.get_close_matches(str(name), DATASETS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DataError(f"dataset {name!r} is not known{hint}; choose one of {', '.join(DATASETS)}")
    _check_options(name, kwargs)
    if name == "synthetic":
        return _dataset_class(name)(split=split, transform=transform, **kwargs)
    if root is None:
        raise DataError(f"dataset {name!r} needs a root folder; set data.root")
    return _dataset_class(name)(root, split, transform=transform, **kwargs)
