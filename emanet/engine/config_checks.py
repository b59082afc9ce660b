"""The whole configuration checked before any work: types, ranges, paths, exclusive options.

Each problem is one line naming the key, the value and what is valid; all problems of a
config are reported together (`check_config` raises once, joining them with " | ").
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

__all__ = ["config_problems", "RANGES"]

# key -> (low, high, low inclusive, high inclusive); None: unbounded on that side
RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "train.lr": (0, None, False, True),
    "train.iters": (1, None, True, True),
    "train.batch_size": (1, None, True, True),
    "train.accumulate": (1, None, True, True),
    "train.lr_update_every": (1, None, True, True),
    "train.log_every": (1, None, True, True),
    "train.checkpoint_every": (0, None, True, True),
    "train.keep_checkpoints": (0, None, True, True),
    "train.eval_every": (0, None, True, True),
    "train.early_stop_patience": (0, None, True, True),
    "train.early_stop_min_delta": (0, None, True, True),
    "train.ema_decay": (0, 1, False, False),
    "train.momentum": (0, 1, True, True),
    "train.weight_decay": (0, None, True, True),
    "train.poly_power": (0, None, True, True),
    "train.poly_eta_min": (0, None, True, True),
    "train.bias_lr_mult": (0, None, True, True),
    "train.aux_weight": (0, None, True, True),
    "train.ohem_thresh": (0, 1, True, True),
    "train.ohem_min_kept": (0, None, True, True),
    "model.bn_momentum": (0, 1, True, True),
    "data.cat_max_ratio": (0, 1, False, True),
    "data.num_workers": (0, None, True, True),
    "eval.num_samples": (0, None, True, True),
    "eval.batch_size": (1, None, True, True),
}

_POSITIVE_LISTS = ("data.crop_size", "eval.crop_size", "eval.stride", "eval.scales", "eval.ms_flip_scales")


def _type_ok(value: Any, annotation: str) -> bool:
    """Whether `value` fits a dataclass field annotation written as a string (`int | None`)."""
    for option in (a.strip() for a in annotation.split("|")):
        if option == "Any":
            return True
        if option == "None" and value is None:
            return True
        if option == "bool" and isinstance(value, bool):
            return True
        if option == "int" and isinstance(value, int) and not isinstance(value, bool):
            return True
        if option == "float" and isinstance(value, int | float) and not isinstance(value, bool):
            return True
        if option == "str" and isinstance(value, str):
            return True
        if option.startswith("dict") and isinstance(value, dict):
            return True
        if option.startswith("list[") and isinstance(value, list):
            return all(_type_ok(v, option[5:-1]) for v in value)
    return False


def _range_text(low: float | None, high: float | None, low_in: bool, high_in: bool) -> str:
    if high is None:
        return f"{'>=' if low_in else '>'} {low}"
    return f"in {'[' if low_in else '('}{low}, {high}{']' if high_in else ')'}"


def config_problems(cfg: Any) -> list[str]:
    """Every problem of `cfg` (a `Config`), one line each; empty when it is valid."""
    problems: list[str] = []
    values: dict[str, Any] = {}
    for section in ("model", "data", "train", "eval"):
        obj = getattr(cfg, section)
        for f in dataclasses.fields(obj):
            key, value = f"{section}.{f.name}", getattr(obj, f.name)
            values[key] = value
            if not _type_ok(value, str(f.type)):
                kind = str(f.type).replace("dict[str, Any]", "mapping")
                problems.append(f"{key}={value!r} has the wrong type; it must be {kind}")
    typed_wrong = {p.split("=", 1)[0] for p in problems}
    for key, (low, high, low_in, high_in) in RANGES.items():
        value = values[key]
        if key in typed_wrong or value is None:
            continue
        below = value < low if low_in else value <= low
        above = high is not None and (value > high if high_in else value >= high)
        if below or above:
            problems.append(
                f"{key}={value!r} is out of range; it must be {_range_text(low, high, low_in, high_in)}"
            )
    for key in _POSITIVE_LISTS:
        value = values[key]
        if key not in typed_wrong and (not value or any(v <= 0 for v in value)):
            problems.append(f"{key}={value!r} must be a non-empty list of numbers > 0")
    if "data.std" not in typed_wrong and any(v == 0 for v in values["data.std"]):
        problems.append(f"data.std={values['data.std']!r} has a 0; every std must be non-zero")
    out = cfg.output_dir
    if not isinstance(out, str) or not out.strip():
        problems.append(f"output_dir={out!r} must be a directory path; e.g. output_dir=runs/my_run")
    elif Path(out).exists() and not Path(out).is_dir():
        problems.append(f"output_dir={out!r} is a file; choose a directory path")
    t = cfg.train
    counts_ok = not typed_wrong & {"train.batch_size", "train.accumulate"} and t.accumulate >= 1
    if counts_ok and t.batch_size % t.accumulate:
        problems.append(
            f"train.batch_size={t.batch_size} must be divisible by train.accumulate={t.accumulate}"
        )
    if t.ohem_aux is True and t.ohem is False:
        problems.append("train.ohem_aux=true needs train.ohem=true (OHEM on the main head too)")
    if t.best_metric == "ema_mIoU" and t.ema_decay is None:
        problems.append("train.best_metric='ema_mIoU' needs train.ema_decay (e.g. 0.999)")
    patience_ok = not typed_wrong & {"train.early_stop_patience", "train.eval_every"}
    if patience_ok and t.early_stop_patience > 0 and t.eval_every <= 0:
        problems.append(
            f"train.early_stop_patience={t.early_stop_patience} needs train.eval_every > 0 "
            "(it counts the evaluations during training)"
        )
    return problems
