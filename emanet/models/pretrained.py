"""`save_pretrained` / `from_pretrained`: config.json + model.safetensors in one directory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..fileio import atomic_write, write_json
from .registry import create_model
from .segmentor import Segmentor

__all__ = ["save_pretrained", "from_pretrained", "load_state_dict_strict", "CONFIG_NAME", "WEIGHTS_NAME"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1


def save_pretrained(model: Segmentor, directory, class_names=None, palette=None) -> Path:
    """Write `model` to `directory` (created if needed); returns the directory."""
    from safetensors.torch import save_file

    if not model.config.get("name"):
        raise ValueError(
            "save_pretrained needs a model made by emanet.create_model (model.config has no name)"
        )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {"format_version": FORMAT_VERSION, **model.config}
    if class_names is not None:
        config["class_names"] = list(class_names)
    if palette is not None:
        config["palette"] = [list(map(int, c)) for c in palette]
    # safetensors wants contiguous tensors that share no storage.
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_write(directory / WEIGHTS_NAME) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    write_json(directory / CONFIG_NAME, config)
    return directory


def describe_mismatch(missing: list[str], unexpected: list[str], shapes: list[str]) -> list[str]:
    """One phrase per kind of problem, listing every key (empty when the tensors match)."""
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
    if shapes:
        problems.append(f"wrong shapes ({len(shapes)}): {'; '.join(shapes)}")
    return problems


def load_state_dict_strict(model: torch.nn.Module, state_dict: dict, source: str) -> None:
    """`load_state_dict` that names every missing, unexpected and mis-shaped tensor."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = [
        f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state_dict))
        if tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    problems = describe_mismatch(missing, unexpected, shapes)
    if problems:
        raise ValueError(f"{source} does not match the model: " + " | ".join(problems))
    model.load_state_dict(state_dict, strict=True)


def from_pretrained(directory, **overrides) -> Segmentor:
    """Load a model written by `save_pretrained` (or `emanet convert`), in eval mode.

    Args:
        directory: holds config.json and model.safetensors.
        **overrides: options that change inference only, e.g. eval_iters=5.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found; a pretrained directory holds {CONFIG_NAME} and {WEIGHTS_NAME} "
                "(written by model.save_pretrained or `emanet convert`)"
            )
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{config_path} is not valid JSON ({e}); re-export the model") from None
    for key in ("name", "num_classes"):
        if key not in config:
            raise ValueError(f"{config_path} has no {key!r} key; it was not written by save_pretrained")
    kwargs = {
        k: v
        for k, v in config.items()
        if k not in ("name", "num_classes", "format_version", "class_names", "palette")
    }
    kwargs.update(overrides)
    model = create_model(config["name"], config["num_classes"], **kwargs)
    try:
        state_dict = load_file(os.fspath(weights_path))
    except (SafetensorError, OSError) as e:
        raise ValueError(
            f"{weights_path} could not be read ({e}); the file is truncated or not safetensors"
        ) from None
    load_state_dict_strict(model, state_dict, str(weights_path))
    model.class_names = config.get("class_names")
    model.palette = config.get("palette")
    return model.eval()
