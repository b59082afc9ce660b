"""Builders: the device, the model (SyncBN, DDP) and the data loaders of a run, from a Config.

The trainer and the commands build through these, so `emanet train` and `emanet eval` see
the same validation data and the same device rules.
"""

from __future__ import annotations

from collections.abc import Sized
from typing import cast

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Subset

from ..data import (
    InfiniteSampler,
    SegmentationDataset,
    SkipBadSamples,
    build_dataset,
    collate_skip,
    eval_transforms,
    train_transforms,
)
from ..models import Segmentor, create_model
from .config import Config
from .distributed import convert_sync_batchnorm
from .stop import ignore_stop_signals

__all__ = [
    "resolve_device",
    "micro_batch_size",
    "build_train_set",
    "build_model",
    "wrap_ddp",
    "build_train_loader",
    "build_val_loader",
]


def resolve_device(name: str) -> torch.device:
    """The device for `train.device`: "auto" is cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device=cuda but no CUDA device is available; use train.device=cpu or auto")
    return torch.device(name)


def micro_batch_size(cfg: Config, world_size: int) -> int:
    """Images per process and forward pass: the global batch over ranks × accumulation steps."""
    t = cfg.train
    per_step = world_size * t.accumulate
    if t.batch_size % per_step:
        raise ValueError(
            f"train.batch_size={t.batch_size} must be divisible by world size × train.accumulate "
            f"= {world_size} × {t.accumulate}; change one of them"
        )
    return t.batch_size // per_step


def build_train_set(cfg: Config) -> SegmentationDataset | SkipBadSamples:
    """The training split with the recipe's augmentation (wrapped in `SkipBadSamples` when
    `data.skip_bad_samples`; the wrapper passes num_classes, CLASSES and PALETTE through)."""
    data = cfg.data
    dataset = build_dataset(
        data.name,
        data.root,
        data.train_split,
        transform=train_transforms(
            data.crop_size,
            data.scales,
            data.mean,
            data.std,
            ignore_index=data.ignore_index,
            flip=data.flip,
            pipeline=data.pipeline,
            resize_base=data.resize_base,
            cat_max_ratio=data.cat_max_ratio,
            photometric=data.photometric,
        ),
        **data.options,
    )
    dataset_ignore = getattr(dataset, "ignore_index", data.ignore_index)
    if dataset_ignore != data.ignore_index:
        raise ValueError(
            f"the {data.name} dataset marks ignored pixels with {dataset_ignore} but data.ignore_index "
            f"is {data.ignore_index}; set data.ignore_index={dataset_ignore}"
        )
    return SkipBadSamples(dataset) if data.skip_bad_samples else dataset


def build_model(cfg: Config, num_classes: int, device: torch.device) -> Segmentor:
    """`create_model` with the recipe's options, BN momentum and SyncBN, on `device`."""
    options = dict(cfg.model.options)
    if cfg.model.backbone_weights:
        options["backbone_weights"] = cfg.model.backbone_weights
    model = create_model(cfg.model.name, num_classes=num_classes, **options)
    if cfg.model.bn_momentum is not None:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = cfg.model.bn_momentum
    if model.aux_head is not None and cfg.train.aux_weight == 0:
        model.aux_head.requires_grad_(False)  # no loss reaches it; DDP would report it unused
    out = convert_sync_batchnorm(model, device) if cfg.model.sync_bn else model
    return cast(Segmentor, out.to(device))  # SyncBN conversion swaps layers inside, not the Segmentor


def wrap_ddp(model: nn.Module, device: torch.device, world_size: int) -> nn.Module:
    """DistributedDataParallel over `model` when there are several processes, else `model`."""
    if world_size == 1:
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def build_train_loader(
    dataset: Dataset, cfg: Config, micro_batch: int, rank: int, world_size: int, start_iter: int
) -> DataLoader:
    """An endless, seeded loader over this rank's share; from `start_iter` it yields what an
    uninterrupted run would have yielded next (bit-identical resume)."""
    sampler = InfiniteSampler(
        len(cast(Sized, dataset)),  # a map-style dataset: torch's Dataset type does not declare __len__
        seed=cfg.train.seed,
        shuffle=True,
        rank=rank,
        world_size=world_size,
        start=start_iter * cfg.train.batch_size,
    )
    return DataLoader(
        dataset,
        batch_size=micro_batch,
        sampler=sampler,
        num_workers=cfg.data.num_workers,
        worker_init_fn=ignore_stop_signals,  # a stop signal is the main process's to handle
        collate_fn=collate_skip,
        persistent_workers=cfg.data.num_workers > 0,
        generator=torch.Generator().manual_seed(0),  # keeps the global RNG untouched
    )


def build_val_loader(
    cfg: Config, rank: int = 0, world_size: int = 1
) -> tuple[SegmentationDataset | SkipBadSamples, DataLoader]:
    """The validation dataset and a loader over this rank's share of it."""
    data = cfg.data
    dataset = build_dataset(
        data.name,
        data.root,
        data.val_split,
        transform=eval_transforms(
            data.mean, data.std, pad_mod=cfg.eval.pad_mod, ignore_index=data.ignore_index
        ),
        **data.options,
    )
    if data.skip_bad_samples:
        dataset = SkipBadSamples(dataset)
    indices = list(range(rank, len(dataset), world_size))
    loader = DataLoader(
        Subset(dataset, indices),
        batch_size=cfg.eval.batch_size,
        num_workers=min(data.num_workers, 2),
        worker_init_fn=ignore_stop_signals,
        collate_fn=collate_skip,
    )
    return dataset, loader
