"""ImageNet ResNet backbones (torchvision, timm, PyTorch-Encoding, OpenMMLab) -> our `ResNet`.

Each layout is a `weights.KeyMap` (prefix rules), so one table serves import (foreign -> ours)
and export (ours -> foreign, used by the round-trip tests). `path_or_obj="imagenet"` fetches the
published file for the backbone's stem and depth from the table in `zoo.py`.

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

from collections.abc import Mapping
from typing import cast

import torch
from torch import nn

from .resnet import DEPTHS
from .weights import CheckpointSource, KeyMap, export_mapped, load_mapped, read_checkpoint, unwrap_state_dict
from .zoo import imagenet_backbone_file

__all__ = [
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


def load_backbone_weights(
    backbone: nn.Module, path_or_obj: CheckpointSource, strict: bool = True
) -> list[str]:
    """Load ImageNet weights into a `ResNet` backbone; the layout is detected from the keys.

    Accepts torchvision `resnet*.pth`, timm ResNet state dicts (also `.safetensors`),
    PyTorch-Encoding deep-base files and OpenMMLab ResNetV1c files (bare `stem.*` keys or under
    `backbone.`), bare or in a `state_dict`/`model` wrapper, with or without `module.`. The
    classifier `fc.*` / `head.*` is ignored on purpose.

    Args:
        backbone: the model's `ResNet` (`model.backbone`).
        strict: a missing, unexpected or wrongly shaped tensor raises ValueError listing them;
            False prints every skipped tensor instead.

        path_or_obj: a path, a loaded state dict, or "imagenet": the published file for the
            backbone's stem and depth (`zoo.IMAGENET_BACKBONES`), downloaded once and cached.

    Returns:
        The skipped tensors (empty when strict).
    """
    if isinstance(path_or_obj, str) and path_or_obj == "imagenet":
        # A `ResNet`'s plain attributes (nn.Module's stubs type unknown attributes as Tensor | Module).
        path_or_obj = imagenet_backbone_file(cast(str, backbone.stem_type), cast(int, backbone.depth))
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
