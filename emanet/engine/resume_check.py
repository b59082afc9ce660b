"""Before resuming: is the file a training checkpoint, and does it fit this configuration?

One line naming the checkpoint and each difference (model, classes, tensor shapes) replaces
`load_state_dict`'s kilobyte of key names; a weights-only file says what it is and what to
use instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = ["check_resumable", "ResumeMismatch"]

_TRAINING_KEYS = ("model", "optimizer", "iteration")


class ResumeMismatch(ValueError):
    """The checkpoint cannot continue this run; the message names the file and the differences."""


def _kind(ckpt: Any) -> str:
    if not isinstance(ckpt, Mapping):
        return f"a {type(ckpt).__name__}, not a mapping"
    if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return f"a plain state dict of {len(ckpt)} tensors (weights only)"
    if "state_dict" in ckpt:
        return "a weights file with a 'state_dict' (a published, converted or exported model)"
    return f"a mapping with keys {', '.join(map(str, list(ckpt)[:6]))}"


def _shape_differences(saved: Mapping[str, Any], current: Mapping[str, torch.Tensor]) -> list[str]:
    out = []
    missing = [k for k in current if k not in saved]
    extra = [k for k in saved if k not in current]
    if missing:
        out.append(f"{len(missing)} tensors missing from the checkpoint (e.g. {missing[0]})")
    if extra:
        out.append(f"{len(extra)} tensors the model does not have (e.g. {extra[0]})")
    shapes = [
        f"{k} {list(saved[k].shape)} vs {list(v.shape)}"
        for k, v in current.items()
        if k in saved and isinstance(saved[k], torch.Tensor) and saved[k].shape != v.shape
    ]
    if shapes:
        more = f" and {len(shapes) - 2} more" if len(shapes) > 2 else ""
        out.append(f"{len(shapes)} shapes differ ({'; '.join(shapes[:2])}{more})")
    return out


def check_resumable(
    ckpt: Any,
    path: str | Path,
    model_config: Mapping[str, Any],
    class_names: list[str],
    state: Mapping[str, torch.Tensor],
    optimizer: str | None = None,
) -> None:
    """Raise `ResumeMismatch` unless `ckpt` (loaded from `path`) can continue this run.

    Args:
        ckpt: the loaded file.
        path: where it came from (for the message).
        model_config: the configured model's `config` (name, num_classes, options).
        class_names: the configured dataset's classes.
        state: the configured model's state dict.
        optimizer: the configured `train.optimizer` ("sgd" | "adamw"); None: not checked.
    """
    if not (isinstance(ckpt, Mapping) and all(k in ckpt for k in _TRAINING_KEYS)):
        raise ResumeMismatch(
            f"--resume {path}: this is {_kind(ckpt)}, not a training checkpoint; --resume takes a run's "
            "checkpoints/iter_*.pt (or no value: the latest in output_dir). Use weights with "
            "`emanet eval`/`emanet predict`, or start a new run without --resume"
        )
    diffs = []
    saved_cfg = dict(ckpt.get("model_config") or {})
    for key in ("name", "num_classes"):
        if key in saved_cfg and saved_cfg[key] != model_config.get(key):
            diffs.append(f"model {key} {saved_cfg[key]!r} in the checkpoint, {model_config.get(key)!r} now")
    saved_classes = ckpt.get("class_names")
    if saved_classes is not None and list(saved_classes) != list(class_names):
        changed = [f"{a}->{b}" for a, b in zip(saved_classes, class_names, strict=False) if a != b][:3]
        detail = f" ({', '.join(changed)})" if changed else ""
        diffs.append(f"classes: {len(saved_classes)} in the checkpoint, {len(class_names)} now{detail}")
    if isinstance(ckpt["model"], Mapping):
        diffs += _shape_differences(ckpt["model"], state)
    saved_optimizer = _optimizer_kind(ckpt["optimizer"])
    if optimizer is not None and saved_optimizer not in (None, optimizer):
        diffs.append(f"train.optimizer {saved_optimizer!r} in the checkpoint, {optimizer!r} now")
    if diffs:
        raise ResumeMismatch(
            f"cannot resume from {path}: it does not match the configuration: {'; '.join(diffs)}. "
            "Resume with the run's own settings (its config.yaml), or start a new output_dir"
        )


def _optimizer_kind(optimizer_state: Any) -> str | None:
    """The optimiser ("sgd" or "adamw") a saved state's buffers belong to; None before a step."""
    state = optimizer_state.get("state", {}) if isinstance(optimizer_state, Mapping) else {}
    buffers = {key for entry in state.values() if isinstance(entry, Mapping) for key in entry}
    if "exp_avg" in buffers:
        return "adamw"
    if "momentum_buffer" in buffers:
        return "sgd"
    return None
