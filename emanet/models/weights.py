"""Weights on disk: key maps, one safe reader, one strict loader, save/read of pretrained dirs.

Every weight file emanet reads goes through `read_checkpoint` (torch.load with
weights_only=True, or safetensors) and every load into a module through `load_mapped`, so the
errors are the same everywhere: a code-execution pickle is refused with how to re-save it, a
truncated file is named, and a key mismatch lists every missing, unexpected and mis-shaped
tensor. This module is a leaf of `emanet.models` (it imports no other model module), so the
registry, the converters, the zoo and the training checkpoints can all use it without cycles.

A pretrained directory holds `config.json` (what `create_model` needs) and `model.safetensors`.
`from_pretrained` (which needs the registry) lives in `pretrained.py`.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import torch
from torch import nn

from ..fileio import atomic_write, write_json

__all__ = [
    "KeyMap",
    "IDENTITY",
    "read_checkpoint",
    "unwrap_state_dict",
    "describe_mismatch",
    "load_mapped",
    "load_state_dict_strict",
    "export_mapped",
    "save_pretrained",
    "read_pretrained",
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "FORMAT_VERSION",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1


class KeyMap:
    """Prefix rules between a foreign layout's key names and ours.

    Args:
        rules: (foreign, ours) pairs. A prefix ending in "." (or the empty prefix) rewrites every
            key under it; any other entry matches one key exactly. The first matching rule wins.
    """

    def __init__(self, rules: list[tuple[str, str]]) -> None:
        self.rules = list(rules)

    @staticmethod
    def _apply(key: str, src: str, dst: str) -> str | None:
        if src.endswith(".") or not src:
            return dst + key[len(src) :] if key.startswith(src) else None
        return dst if key == src else None

    def to_ours(self, key: str) -> str | None:
        """Our name for a foreign key, or None when no rule covers it."""
        for src, dst in self.rules:
            new = self._apply(key, src, dst)
            if new is not None:
                return new
        return None

    def to_foreign(self, key: str) -> str | None:
        """The foreign name of one of our keys, or None when the foreign layout has no place for it."""
        for src, dst in self.rules:
            new = self._apply(key, dst, src)
            if new is not None:
                return new
        return None

    def prefixed(self, foreign: str, ours: str) -> KeyMap:
        """The same rules with `foreign` / `ours` put in front of every name."""
        return KeyMap([(foreign + s, ours + d) for s, d in self.rules])


# Our own layout: every key keeps its name.
IDENTITY = KeyMap([("", "")])


# ---------------------------------------------------------------------------------------------
# The one safe reader
# ---------------------------------------------------------------------------------------------


# A file system path, and what `read_checkpoint` accepts: a path or an already-loaded dict.
StrPath: TypeAlias = "str | os.PathLike[str]"
CheckpointSource: TypeAlias = "str | os.PathLike[str] | Mapping[str, Any]"


def _corrupt(path: Path, why: str) -> ValueError:
    return ValueError(
        f"{path} is not a readable PyTorch checkpoint ({why}); the file is truncated or corrupt: "
        "download it again"
    )


def read_checkpoint(path_or_obj: CheckpointSource) -> tuple[Mapping, str]:
    """Load a checkpoint safely.

    Args:
        path_or_obj: a path (`torch.save` file, or `.safetensors`) or an already-loaded dict.

    Returns:
        (the loaded object, a name for it in messages).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file needs code execution to unpickle (refused), or it is truncated or
            corrupt; the message names the file and says what to do.
    """
    if isinstance(path_or_obj, Mapping):
        return path_or_obj, "the given state dict"
    if not isinstance(path_or_obj, (str, os.PathLike)):
        raise TypeError(f"expected a checkpoint path or a dict, got {type(path_or_obj).__name__}")
    path = Path(path_or_obj)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(os.fspath(path)), str(path)
        except (SafetensorError, OSError) as e:
            raise ValueError(
                f"{path} could not be read as safetensors ({e}); the file is truncated or corrupt: "
                "download it again"
            ) from None
    try:
        # weights_only: tensors, numbers, strings and containers only; never run the file's code.
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        found = re.search(r"Unsupported global: GLOBAL (\S+)", msg)
        if found or "Unsupported operand" in msg or "allowed global" in msg:
            what = f" (it stores {found.group(1)})" if found else ""
            raise ValueError(
                f"{path} was refused: unpickling it would run code{what}, and emanet loads checkpoints "
                "with torch.load(weights_only=True), which accepts only tensors, numbers, strings, lists "
                "and dicts. If you trust the file, re-save its weights as a plain state dict once, e.g. "
                f"torch.save(torch.load('{path}', weights_only=False)['state_dict'], 'plain.pth') "
                "(use the key that holds the weights), and convert plain.pth."
            ) from None
        raise _corrupt(path, msg.splitlines()[0] if msg else "UnpicklingError") from None
    except Exception as e:  # zip/EOF/garbage: torch raises RuntimeError, EOFError, KeyError, ...
        first = str(e).splitlines()[0] if str(e) else ""
        raise _corrupt(path, f"{type(e).__name__}: {first}") from None
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a state dict or a checkpoint dict")
    return obj, str(path)


def unwrap_state_dict(obj: Mapping, source: str, wrappers=("state_dict", "model", "net")) -> dict:
    """The state dict inside a checkpoint wrapper (or `obj` itself), with a DataParallel
    `module.` prefix removed. Every value must be a tensor."""
    for key in wrappers:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            obj = inner
            break
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(
            f"{source} is not a state dict: {', '.join(map(str, bad[:10]))} are not tensors "
            f"(expected a bare state dict or a wrapper with one of {', '.join(map(repr, wrappers))})"
        )
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in obj.items()}


# ---------------------------------------------------------------------------------------------
# The one strict loader
# ---------------------------------------------------------------------------------------------


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


def _is_counter(key: str) -> bool:
    return key.endswith("num_batches_tracked")


def load_mapped(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    keymap: KeyMap = IDENTITY,
    source: str = "the state dict",
    strict: bool = True,
    ignore: tuple[str, ...] = (),
    hint: str = "",
) -> list[str]:
    """Load a (possibly foreign) `state_dict` into `module` through `keymap`.

    Every problem is reported with the file's own key names: unexpected keys (no rule maps
    them, or the module has no such tensor), missing keys and wrongly shaped tensors. BN
    `num_batches_tracked` counters may be absent from the file (old files, SyncBN variants):
    the module keeps its own. Keys under an `ignore` prefix are dropped silently.

    Args:
        strict: raise ValueError listing every problem (default); False prints every skipped
            tensor to stderr and loads the rest.
        hint: a diagnosis put in front of the error (e.g. a stem or depth mismatch).

    Returns:
        The skipped tensors (always empty when strict).
    """
    own = module.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    unexpected, shapes = [], []
    for key, value in state_dict.items():
        if any(key.startswith(p) for p in ignore):
            continue
        ours = keymap.to_ours(key)
        if ours is None or ours not in own:
            unexpected.append(key)
        elif _is_counter(ours) and value.numel() == 1:
            mapped[ours] = value.reshape(own[ours].shape)
        elif tuple(value.shape) != tuple(own[ours].shape):
            shapes.append(f"{key}: file {tuple(value.shape)} vs model {tuple(own[ours].shape)}")
        else:
            mapped[ours] = value
    wrong = {s.split(":")[0] for s in shapes}
    missing = [
        keymap.to_foreign(k) or k
        for k in own
        if k not in mapped and not _is_counter(k) and (keymap.to_foreign(k) or k) not in wrong
    ]
    problems = describe_mismatch(missing, unexpected, shapes)
    if problems and strict:
        raise ValueError(f"{source} does not match the model: {hint}" + " | ".join(problems))
    skipped = [f"missing {k}" for k in missing] + [f"unexpected {k}" for k in unexpected]
    skipped += [f"wrong shape {s}" for s in shapes]
    for line in skipped:
        print(f"emanet: {source}: skipped {line}", file=sys.stderr)
    module.load_state_dict({**own, **mapped}, strict=True)
    return skipped


def load_state_dict_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """`load_state_dict` in our own layout that names every missing, unexpected and mis-shaped
    tensor (`load_mapped` with the identity key map)."""
    load_mapped(model, state_dict, IDENTITY, source)


def export_mapped(
    module: nn.Module, keymap: KeyMap, layout_name: str, num_batches_tracked: bool = True
) -> dict:
    """`module.state_dict()` renamed through `keymap` (ours -> foreign).

    Raises ValueError naming every tensor the foreign layout has no place for.
    """
    out, homeless = {}, []
    for key, value in module.state_dict().items():
        if _is_counter(key) and not num_batches_tracked:
            continue
        foreign = keymap.to_foreign(key)
        if foreign is None:
            homeless.append(key)
        else:
            out[foreign] = value.detach().clone()
    if homeless:
        raise ValueError(
            f"the model does not fit the {layout_name} layout: no place for {', '.join(homeless)}"
        )
    return out


# ---------------------------------------------------------------------------------------------
# Pretrained directories: config.json + model.safetensors
# ---------------------------------------------------------------------------------------------


def save_pretrained(
    model: nn.Module,
    directory: StrPath,
    class_names: Sequence[str] | None = None,
    palette: Sequence[Sequence[int]] | None = None,
) -> Path:
    """Write `model` (made by `create_model`, so it has `.config`) to `directory`; returns it.

    Both files are written atomically; the weights first, so a crash never leaves a config.json
    that points at missing weights.
    """
    from safetensors.torch import save_file

    config_in = getattr(model, "config", None) or {}
    if not config_in.get("name"):
        raise ValueError(
            "save_pretrained needs a model made by emanet.create_model (model.config has no name)"
        )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {"format_version": FORMAT_VERSION, **config_in}
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


def read_pretrained(directory: StrPath) -> tuple[dict[str, Any], dict[str, torch.Tensor], str]:
    """(config, state dict, weights path for messages) of a `save_pretrained` directory."""
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
    state_dict, source = read_checkpoint(weights_path)
    return config, dict(state_dict), source
