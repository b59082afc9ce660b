"""`from_pretrained`: a model by directory, published name or Hugging Face Hub repo.

The file format lives in `weights.py` (`save_pretrained`, `read_pretrained`); this module only
adds what needs the registry and the converters, which `weights.py` must not import (the
registry loads backbone weights through it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import zoo  # the module, so the table can be swapped (tests, mirrors)
from .convert import load_mmseg
from .registry import create_model
from .segmentor import Segmentor
from .weights import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    StrPath,
    load_state_dict_strict,
    read_pretrained,
    save_pretrained,
)

__all__ = ["from_pretrained", "save_pretrained", "load_state_dict_strict", "CONFIG_NAME", "WEIGHTS_NAME"]

_NOT_MODEL_OPTIONS = ("name", "num_classes", "format_version", "class_names", "palette")


def _from_directory(directory: StrPath, overrides: dict[str, Any]) -> Segmentor:
    config, state_dict, source = read_pretrained(directory)
    kwargs = {k: v for k, v in config.items() if k not in _NOT_MODEL_OPTIONS}
    kwargs.update(overrides)
    model = create_model(config["name"], config["num_classes"], **kwargs)
    load_state_dict_strict(model, state_dict, source)
    model.class_names = config.get("class_names")
    model.palette = config.get("palette")
    return model.eval()


def from_pretrained(name_or_path: StrPath, **overrides: Any) -> Segmentor:
    """Load a pretrained model, in eval mode.

    Args:
        name_or_path: a directory written by `save_pretrained` / `emanet convert`, or a training
            run directory (its `model/` sub-directory, written at the end of training); a published
            name from `emanet models --pretrained` (e.g. "emanet_r101_cityscapes_769",
            downloaded once into the cache, see `zoo.py`); or "hf-hub:ORG/NAME", a Hugging
            Face Hub repo in the same layout (needs `pip install emanet[hub]`).
        **overrides: options that change inference only, e.g. eval_iters=5.
    """
    text = str(name_or_path)
    if text.startswith("hf-hub:"):
        repo = text[len("hf-hub:") :]
        zoo.hub_download(repo, WEIGHTS_NAME)
        return _from_directory(Path(zoo.hub_download(repo, CONFIG_NAME)).parent, overrides)
    if text in zoo.PRETRAINED and not Path(text).exists():
        model = load_mmseg(zoo.fetch(zoo.PRETRAINED[text]))
        if overrides:
            model = _rebuilt(model, overrides)
        return model.eval()
    path = Path(name_or_path)
    if path.is_dir() and not (path / CONFIG_NAME).is_file() and (path / "model" / CONFIG_NAME).is_file():
        path = path / "model"  # a training run directory: the trainer saves RUN_DIR/model/ at the end
    return _from_directory(path, overrides)


def _rebuilt(model: Segmentor, overrides: dict[str, Any]) -> Segmentor:
    """The same weights in a model built with inference-only `overrides` (e.g. eval_iters)."""
    kwargs = {k: v for k, v in model.config.items() if k not in _NOT_MODEL_OPTIONS}
    new = create_model(model.config["name"], model.config["num_classes"], **{**kwargs, **overrides})
    load_state_dict_strict(new, model.state_dict(), model.config["name"])
    new.class_names, new.palette = model.class_names, model.palette
    return new
