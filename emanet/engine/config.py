"""Run configuration: dataclasses, YAML recipes shipped in the package, `key=value` overrides.

    cfg = load_config("voc_aug_r101_os8_paper", ["train.iters=100", "data.root=/data/VOC2012"])

A recipe is a YAML mapping with the sections below; anything not given keeps its default.
Unknown keys are errors that suggest the closest valid key.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
from .config_checks import config_problems

__all__ = [
    "Config",
    "ModelConfig",
    "DataConfig",
    "TrainConfig",
    "EvalConfig",
    "ConfigError",
    "load_config",
    "list_recipes",
    "config_to_dict",
]


class ConfigError(ValueError):
    """A recipe or override that cannot be applied; the message names the key and the fix."""


@dataclass
class ModelConfig:
    name: str = "emanet_r101"
    # create_model overrides, e.g. {ema_channels: 256, aux_head: true}
    options: dict[str, Any] = field(default_factory=dict)
    # ImageNet backbone weights (torchvision / timm / OpenMMLab / PyTorch-Encoding layout)
    backbone_weights: str | None = None
    # BatchNorm momentum, PyTorch convention (authors: 3e-4); null keeps 0.1
    bn_momentum: float | None = None
    # Convert BN to synchronised BN when a process group exists (authors: 4 GPUs, SyncBN)
    sync_bn: bool = True


@dataclass
class DataConfig:
    name: str = "voc_aug"
    root: str = "data/VOCdevkit/VOC2012"
    train_split: str | None = "trainaug"  # None: every file (folder datasets without split lists)
    val_split: str | None = "val"
    # dataset-specific keyword arguments (e.g. synthetic size/length)
    options: dict[str, Any] = field(default_factory=dict)
    crop_size: list[int] = field(default_factory=lambda: [513, 513])
    # random scale: a list of choices, or {range: [lo, hi]} for a uniform range
    scales: Any = field(default_factory=lambda: [0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0])
    flip: bool = True
    # "authors": scale, pad, crop, flip; "openmmlab": scale, crop, flip, photometric, pad
    pipeline: str = "authors"
    # OpenMMLab's RandomResize target (w, h): the ratio multiplies this (keep_ratio) instead of the
    # image's own size; null: the authors' scaling of the image itself
    resize_base: list[int] | None = None
    # OpenMMLab's RandomCrop: re-draw (up to 10 times) a crop that one class fills >= this share of
    cat_max_ratio: float = 1.0
    # OpenMMLab's PhotoMetricDistortion (brightness, contrast, saturation, hue) after the flip
    photometric: bool = False
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    ignore_index: int = 255
    num_workers: int = 4
    skip_bad_samples: bool = False


@dataclass
class TrainConfig:
    iters: int = 30000
    batch_size: int = 16  # global batch, over all processes and accumulation steps
    accumulate: int = 1  # gradient accumulation steps per iteration
    lr: float = 0.009
    # "sgd" (momentum; every reference recipe) | "adamw" (torch AdamW, betas 0.9/0.999)
    optimizer: str = "sgd"
    momentum: float = 0.9  # SGD only
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    lr_update_every: int = 10  # authors recompute the poly lr every 10 iterations
    bias_lr_mult: float = 2.0  # biases (conv and BN): 2× lr, no decay
    decay_all: bool = False  # weight decay on BN weights and biases too (OpenMMLab's plain SGD)
    # "authors": step from 1, recomputed every lr_update_every; "mmengine": PolyLR with eta_min
    lr_schedule: str = "authors"
    poly_eta_min: float = 0.0
    # OHEM (OpenMMLab's OHEMPixelSampler) on the main head; ohem_aux: on the aux head too
    ohem: bool = False
    ohem_thresh: float | None = 0.7
    ohem_min_kept: int = 100000
    ohem_aux: bool = False
    # per-class loss weights: null, a list (one per class), or "auto" (median frequency)
    class_weights: Any = None
    # "all_pixels": per image, mean over all H·W positions, ignored ones counting 0 (authors);
    # "valid_pixels": mean over non-ignored pixels (PyTorch's default)
    loss_normalize: str = "all_pixels"
    aux_weight: float = 0.4
    amp: str = "auto"  # auto (bf16 where native, else fp32 on CPU) | none | bf16 | fp16
    seed: int = 66
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    log_every: int = 10
    eval_every: int = 0  # 0: evaluate once at the end
    # RUN/best.pt follows this metric: "mIoU" (the raw weights) or "ema_mIoU" (needs ema_decay)
    best_metric: str = "mIoU"
    # stop after this many evaluations in a row without a new best (> best + min_delta); 0: off
    early_stop_patience: int = 0
    early_stop_min_delta: float = 0.0
    # moving average of the weights (timm's ModelEma), evaluated and exported beside them; null: off
    ema_decay: float | None = None
    # deterministic algorithms, cuDNN benchmark off, CUBLAS_WORKSPACE_CONFIG (slower on CUDA)
    deterministic: bool = False
    tensorboard: bool = False
    device: str = "auto"  # auto | cpu | cuda


@dataclass
class EvalConfig:
    mode: str = "whole"  # whole | slide
    crop_size: list[int] = field(default_factory=lambda: [513, 513])  # slide window
    stride: list[int] = field(default_factory=lambda: [341, 341])
    scales: list[float] = field(default_factory=lambda: [1.0])
    flip: bool = False
    ms_flip_scales: list[float] = field(default_factory=lambda: [0.5, 0.75, 1.0, 1.25, 1.5, 1.75])
    pad_mod: int | None = 8  # pad bottom/right so H, W ≡ 1 (mod 8), as the authors
    num_samples: int = 4  # validation samples saved for the report
    batch_size: int = 1


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output_dir: str = "runs/default"
    recipe: str = ""


_CHOICES = {
    "train.amp": ("auto", "none", "bf16", "fp16"),
    "train.lr_schedule": ("authors", "mmengine"),
    "train.optimizer": ("sgd", "adamw"),
    "data.pipeline": ("authors", "openmmlab"),
    "train.loss_normalize": ("all_pixels", "valid_pixels"),
    "train.best_metric": ("mIoU", "ema_mIoU"),
    "train.device": ("auto", "cpu", "cuda"),
    "eval.mode": ("whole", "slide"),
}


def config_to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


_SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig, "eval": EvalConfig}
ALL_KEYS = [f"{s}.{f.name}" for s, c in _SECTIONS.items() for f in dataclasses.fields(c)] + [
    "output_dir",
    "recipe",
]


def _unknown(key: str, source: str) -> ConfigError:
    close = difflib.get_close_matches(key, ALL_KEYS, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(ALL_KEYS)}"
    return ConfigError(f"unknown config key {key!r} in {source}{hint}")


def _set(cfg: Config, key: str, value: Any, source: str) -> None:
    parts = key.split(".")
    obj = cfg
    # options are free-form mappings: model.options.ema_channels=256
    for i, part in enumerate(parts):
        if isinstance(obj, dict):
            rest = ".".join(parts[i:])
            obj[rest] = value
            return
        if not hasattr(obj, part) or part.startswith("_"):
            raise _unknown(key, source)
        if i == len(parts) - 1:
            if dataclasses.is_dataclass(getattr(obj, part)):
                raise ConfigError(f"{key!r} in {source} is a section; set its keys, e.g. {key}.<name>=...")
            setattr(obj, part, value)
            return
        obj = getattr(obj, part)


def _flatten(mapping: dict, prefix: str = "") -> list[tuple[str, Any]]:
    items = []
    for k, v in mapping.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and not key.endswith("options") and key not in ("data.scales",):
            items += _flatten(v, key + ".")
        else:
            items.append((key, v))
    return items


def _validate(cfg: Config, source: str) -> None:
    for key, choices in _CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value not in choices:
            raise ConfigError(f"{key}={value!r} in {source} is not valid; choose one of {', '.join(choices)}")
    problems = config_problems(cfg)
    if problems:
        raise ConfigError(f"invalid config ({source} and the command line): " + " | ".join(problems))


def list_recipes() -> list[str]:
    """Names of the YAML recipes shipped in emanet/configs/."""
    folder = resources.files("emanet") / "configs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read_recipe(name_or_path: str) -> tuple[dict, str]:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file {path} not found")
        text, source = path.read_text(), str(path)
    else:
        resource = resources.files("emanet") / "configs" / f"{name_or_path}.yaml"
        if not resource.is_file():
            close = difflib.get_close_matches(name_or_path, list_recipes(), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"no recipe or file named {name_or_path!r}.{hint} "
                f"Shipped recipes: {', '.join(list_recipes())}"
            )
        text, source = resource.read_text(), f"recipe {name_or_path}"
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{source} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must be a YAML mapping of sections (model, data, train, eval)")
    return data, source


def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not key=value (e.g. train.iters=100)")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def load_config(name_or_path: str, overrides: list[str] | None = None) -> Config:
    """Load a shipped recipe (by name) or a YAML file, then apply `key=value` overrides."""
    data, source = _read_recipe(name_or_path)
    cfg = Config()
    for key, value in _flatten(data):
        _set(cfg, key, value, source)
    recipe_dataset = cfg.data.name
    option_overrides: list[tuple[str, Any]] = []
    for text in overrides or []:
        key, value = parse_override(text)
        _set(cfg, key, value, "the command line")
        if key == "data.options" or key.startswith("data.options."):
            option_overrides.append((key, value))
    if cfg.data.name != recipe_dataset:
        # the recipe's data.options belong to its dataset: keep only those given with the new name
        cfg.data.options = {}
        for key, value in option_overrides:
            _set(cfg, key, value, "the command line")
    if not cfg.recipe:
        cfg.recipe = Path(name_or_path).stem
    _validate(cfg, source)
    return cfg
