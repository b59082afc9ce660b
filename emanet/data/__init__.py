"""Datasets, paired transforms and loaders for semantic segmentation (docs/method.md §5, §7)."""

from .base import SegmentationDataset, read_image, read_mask
from .datasets import (
    ADE20KDataset,
    CityscapesDataset,
    COCOStuffDataset,
    FolderDataset,
    PascalContextDataset,
    VOCAugDataset,
    build_dataset,
    list_datasets,
)
from .errors import DataError
from .loader import InfiniteSampler, SkipBadSamples, build_loader, collate_skip, sample_seed
from .palette import voc_palette
from .transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Compose,
    Normalize,
    PadBottomRight,
    PadToMultiple,
    RandomCrop,
    RandomHorizontalFlip,
    RandomScale,
    eval_transforms,
    train_transforms,
)

__all__ = [
    "DataError",
    "SegmentationDataset",
    "VOCAugDataset",
    "CityscapesDataset",
    "ADE20KDataset",
    "PascalContextDataset",
    "COCOStuffDataset",
    "FolderDataset",
    "build_dataset",
    "list_datasets",
    "read_image",
    "read_mask",
    "voc_palette",
    "Compose",
    "RandomScale",
    "PadBottomRight",
    "RandomCrop",
    "RandomHorizontalFlip",
    "PadToMultiple",
    "Normalize",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "train_transforms",
    "eval_transforms",
    "InfiniteSampler",
    "SkipBadSamples",
    "collate_skip",
    "build_loader",
    "sample_seed",
]
