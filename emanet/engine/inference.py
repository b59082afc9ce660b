"""Load a trained model for inference from a training checkpoint, a run directory or a
pretrained directory (config.json + model.safetensors)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..models import create_model, from_pretrained, zoo
from ..models.weights import CONFIG_NAME, load_state_dict_strict
from .checkpoint import latest_checkpoint, load_checkpoint

__all__ = ["load_model"]


def load_model(path: str | Path, **overrides) -> tuple[Any, dict[str, Any]]:
    """Returns (model in eval mode, meta) where meta holds class_names, palette, mean, std.

    `path`: a checkpoint file iter_*.pt, a run directory (its latest checkpoint), a
    checkpoints/ directory, a pretrained directory, or a published name / "hf-hub:ORG/NAME".
    `overrides` change inference-only options such as eval_iters.
    """
    text = str(path)
    if not Path(text).exists() and (text in zoo.PRETRAINED or text.startswith("hf-hub:")):
        model = from_pretrained(text, **overrides)  # a published name: downloaded once, cached
        return model, {"class_names": model.class_names, "palette": model.palette}
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"checkpoint {path} not found; give a checkpoint file (runs/NAME/checkpoints/iter_*.pt), "
            "a run directory, a pretrained directory, or a published name (`emanet models --pretrained`)"
        )
    if path.is_dir() and (path / CONFIG_NAME).is_file():
        model = from_pretrained(path, **overrides)
        meta = {"class_names": model.class_names, "palette": model.palette}
        return model, meta
    if path.is_dir() and latest_checkpoint(path) is None and (path / "checkpoints").is_dir():
        path = path / "checkpoints"
    ckpt = load_checkpoint(path)
    if "model" not in ckpt or "model_config" not in ckpt:
        raise ValueError(
            f"{path} is not an emanet training checkpoint (no 'model'/'model_config' keys); "
            "for the authors' or OpenMMLab files use `emanet convert` first"
        )
    config = dict(ckpt["model_config"])
    name, num_classes = config.pop("name"), config.pop("num_classes")
    config.update(overrides)
    model = create_model(name, num_classes, **config)
    load_state_dict_strict(model, ckpt["model"], str(path))
    data = (ckpt.get("config") or {}).get("data", {})
    meta = {
        "class_names": ckpt.get("class_names"),
        "palette": ckpt.get("palette"),
        "mean": data.get("mean"),
        "std": data.get("std"),
        "iteration": ckpt.get("iteration"),
    }
    return model.eval(), meta
