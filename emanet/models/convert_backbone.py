"""Checkpoint reading, key mapping and ImageNet backbone import (the shared half of `convert`).

Foreign layouts are described as prefix rules between their key names and ours, so one table
serves both directions: import (foreign -> ours) and export (ours -> foreign, used by the
round-trip tests and by anyone who wants to hand weights back to the original code).

ImageNet backbone layouts, detected from the keys (after removing `module.` / `backbone.`):

    torchvision / timm   conv1.weight (64, 3, 7, 7), bn1, layer1..4      -> stem="classic"
    PyTorch-Encoding     conv1.{0,1,3,4,6} 64-64-128, bn1, layer1..4     -> stem="deep"
    timm resnet*c        conv1.{0,1,3,4,6} 32-32-64, bn1, layer1..4      -> stem="deep_v1c"
    OpenMMLab ResNetV1c  stem.{0,1,3,4,6,7} 32-32-64, layer1..4          -> stem="deep_v1c"

Block keys (conv1/bn1/conv2/bn2/conv3/bn3/downsample.0/.1) are the same in all of them.
The ImageNet classifier (`fc.*`, OpenMMLab `head.fc.*`) is dropped on purpose: a segmentation
backbone has no use for it. Everything else must match exactly unless `strict=False`.
"""

from __future__ import annotations

import os
import pickle
import re
import sys
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from .pretrained import describe_mismatch
from .resnet import DEPTHS

__all__ = [
    "KeyMap",
    "read_checkpoint",
    "unwrap_state_dict",
    "load_mapped",
    "detect_backbone_layout",
    "load_backbone_weights",
    "export_backbone",
    "BACKBONE_LAYOUTS",
    "IGNORED_BACKBONE_PREFIXES",
]

# Keys of ImageNet classifiers: not part of a segmentation backbone, skipped without error.
IGNORED_BACKBONE_PREFIXES = ("fc.", "head.fc.")

_LAYERS = [(f"layer{i}.", f"layer{i}.") for i in range(1, 5)]
_STEM_DEEP = [(f"conv1.{i}.", f"conv1.{i}.") for i in (0, 1, 3, 4, 6)]
_STEM_MMSEG = [(f"stem.{i}.", f"conv1.{i}.") for i in (0, 1, 3, 4, 6)] + [("stem.7.", "bn1.")]


class KeyMap:
    """Prefix rules between a foreign layout's key names and ours.

    Args:
        rules: (foreign, ours) pairs. A prefix ending in "." rewrites every key under it; any
            other entry matches one key exactly. The first matching rule wins.
    """

    def __init__(self, rules: list[tuple[str, str]]) -> None:
        self.rules = list(rules)

    @staticmethod
    def _apply(key: str, src: str, dst: str) -> str | None:
        if src.endswith("."):
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


BACKBONE_LAYOUTS = {
    "torchvision": KeyMap([("conv1.weight", "conv1.weight"), ("bn1.", "bn1."), *_LAYERS]),
    "timm": KeyMap([("conv1.weight", "conv1.weight"), ("bn1.", "bn1."), *_LAYERS]),
    "encoding": KeyMap([*_STEM_DEEP, ("bn1.", "bn1."), *_LAYERS]),
    "mmseg": KeyMap([*_STEM_MMSEG, *_LAYERS]),
}
_LAYOUT_NAMES = {
    "torchvision": "torchvision/timm ResNet (classic 7×7 stem)",
    "timm": "torchvision/timm ResNet (classic 7×7 stem)",
    "encoding": "deep-stem ResNet (PyTorch-Encoding / timm resnet*c layout)",
    "mmseg": "OpenMMLab ResNetV1c",
}


# ---------------------------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------------------------


def read_checkpoint(path_or_obj) -> tuple[Mapping, str]:
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
                f"{path} could not be read as safetensors ({e}); the file is truncated or corrupt"
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
        raise ValueError(
            f"{path} is not a readable PyTorch checkpoint ({msg.splitlines()[0]}); "
            "the file is truncated or corrupt: download it again"
        ) from None
    except Exception as e:  # zip/EOF/garbage: torch raises RuntimeError, EOFError, KeyError, ...
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(
            f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: {first}); the file is "
            "truncated or corrupt: download it again"
        ) from None
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
# Mapped, strict loading
# ---------------------------------------------------------------------------------------------


def _is_counter(key: str) -> bool:
    return key.endswith("num_batches_tracked")


def load_mapped(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    keymap: KeyMap,
    source: str,
    strict: bool = True,
    ignore: tuple[str, ...] = (),
    hint: str = "",
) -> list[str]:
    """Load a foreign `state_dict` into `module` through `keymap`.

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


# ---------------------------------------------------------------------------------------------
# ImageNet backbones
# ---------------------------------------------------------------------------------------------


def _strip_prefix(state_dict: dict, prefix: str) -> dict:
    """Remove `prefix` from the keys that have it (OpenMMLab files put the backbone under
    `backbone.`); other keys stay as they are and are judged by the layout."""
    if not any(k.startswith(prefix) for k in state_dict):
        return state_dict
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state_dict.items()}


def _stem_type(state_dict: Mapping, first_conv: str) -> str | None:
    w = state_dict.get(first_conv)
    if w is None or w.dim() != 4:
        return None
    return "deep" if w.shape[0] == 64 else "deep_v1c"


def detect_backbone_layout(
    state_dict: Mapping[str, torch.Tensor], source: str = "the file"
) -> tuple[str, str]:
    """(layout, stem) of a backbone state dict (prefixes already removed).

    Returns:
        layout: a key of `BACKBONE_LAYOUTS`; stem: the `stem` option the model needs.
    """
    if any(".downsample.2." in k for k in state_dict):
        raise ValueError(
            f"{source} is a ResNet-D (average-pool shortcut: downsample.0 pool, .1 conv, .2 BN, as timm "
            "resnet*d / OpenMMLab ResNetV1d); emanet's ResNet has the plain 1×1 conv shortcut and cannot "
            "hold it. Use a torchvision, timm (resnet*/resnet*c), PyTorch-Encoding or ResNetV1c file"
        )
    if "stem.0.weight" in state_dict:
        return "mmseg", _stem_type(state_dict, "stem.0.weight") or "deep_v1c"
    if "conv1.0.weight" in state_dict:
        return "encoding", _stem_type(state_dict, "conv1.0.weight") or "deep"
    w = state_dict.get("conv1.weight")
    if w is not None and w.dim() == 4:
        return "torchvision", "classic"
    sample = ", ".join(list(state_dict)[:8])
    raise ValueError(
        f"{source} is not a ResNet layout emanet knows: no conv1.weight (torchvision/timm), conv1.0.weight "
        f"(PyTorch-Encoding deep base) or stem.0.weight (OpenMMLab ResNetV1c); its first keys: {sample}"
    )


def _file_depth(state_dict: Mapping) -> int | None:
    counts = []
    for i in range(1, 5):
        blocks = {k.split(".")[1] for k in state_dict if k.startswith(f"layer{i}.")}
        counts.append(len(blocks))
    kind = "bottleneck" if any(".conv3." in k for k in state_dict) else "basic"
    for depth, (k, layers) in DEPTHS.items():
        if k == kind and tuple(layers) == tuple(counts):
            return depth
    return None


def load_backbone_weights(backbone: nn.Module, path_or_obj, strict: bool = True) -> list[str]:
    """Load ImageNet weights into a `ResNet` backbone; the layout is detected from the keys.

    Accepts torchvision `resnet*.pth`, timm ResNet state dicts (also `.safetensors`),
    PyTorch-Encoding deep-base files and OpenMMLab ResNetV1c files (bare `stem.*` keys or under
    `backbone.`), bare or in a `state_dict`/`model` wrapper, with or without `module.`. The
    classifier `fc.*` / `head.*` is ignored on purpose.

    Args:
        backbone: the model's `ResNet` (`model.backbone`).
        strict: a missing, unexpected or wrongly shaped tensor raises ValueError listing them;
            False prints every skipped tensor instead.

    Returns:
        The skipped tensors (empty when strict).
    """
    obj, source = read_checkpoint(path_or_obj)
    state_dict = _strip_prefix(unwrap_state_dict(obj, source), "backbone.")
    layout, stem = detect_backbone_layout(state_dict, source)
    hints = []
    if stem != backbone.stem_type:
        hints.append(
            f"the file is a {_LAYOUT_NAMES[layout]} with stem={stem!r} but the model has "
            f"stem={backbone.stem_type!r}: create the model with stem={stem!r}"
        )
    depth = _file_depth(state_dict)
    if depth is not None and depth != backbone.depth:
        hints.append(f"the file is a ResNet-{depth} but the model a ResNet-{backbone.depth}")
    hint = "".join(h + "; " for h in hints)
    return load_mapped(
        backbone, state_dict, BACKBONE_LAYOUTS[layout], source, strict, IGNORED_BACKBONE_PREFIXES, hint
    )


def export_backbone(backbone: nn.Module, layout: str, num_batches_tracked: bool = True) -> dict:
    """Our backbone's weights in a foreign ImageNet layout (`BACKBONE_LAYOUTS`), without `fc.*`."""
    if layout not in BACKBONE_LAYOUTS:
        raise ValueError(f"layout={layout!r} is not valid; choose one of {', '.join(BACKBONE_LAYOUTS)}")
    return export_mapped(backbone, BACKBONE_LAYOUTS[layout], _LAYOUT_NAMES[layout], num_batches_tracked)


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
