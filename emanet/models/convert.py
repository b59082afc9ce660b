"""Checkpoint import: the authors' EMANet, OpenMMLab's EMANet and ImageNet ResNet backbones.

`load_official` and `load_mmseg` read the two EMANet weight releases that exist and return our
model with the same outputs as the original code; the architecture (depth, classes, channels,
number of bases) is read off the tensors. Loading is strict: every missing, unexpected or
wrongly shaped tensor is an error that names it in the file's own key names (the authors'
loader used strict=False, and users trained to ~40 mIoU without knowing why).
`export_official` / `export_mmseg` go the other way. ImageNet backbones: `load_backbone_weights`
in `convert_imagenet.py`, reached through `create_model(..., backbone_weights=PATH)`.

The authors' layout (XiaLiPKU/EMANet, `{'net': state_dict, 'step': int}`):

    extractor.0.{0,1,3,4,6}  deep stem 64-64-128      -> backbone.conv1.*
    extractor.1              BN(128)                  -> backbone.bn1
    extractor.4..7           layer1..4                -> backbone.layer1..4
    fc0.conv / fc0.bn        3×3 2048->C              -> decode_head.fc0
    emau.mu (1, C, K)        bases                    -> decode_head.emau.bases
    emau.conv1               1×1 with bias            -> decode_head.emau.conv_in
    emau.conv2.0 / .1        1×1 no bias, BN          -> decode_head.emau.conv_out / bn_out
    fc1.0.conv / fc1.0.bn    3×3 C->256               -> decode_head.fc1
    fc2                      1×1 256->classes         -> decode_head.classifier

OpenMMLab (`{'state_dict': ..., 'meta': ...}`): ResNetV1c `backbone.stem.{0,1,3,4,6,7}` and
`backbone.layer1..4`; `decode_head.ema_in_conv` -> fc0, `ema_mid_conv.conv` -> emau.conv_in,
`ema_module.bases` -> emau.bases, `ema_out_conv.{conv,bn}` -> emau.conv_out / bn_out,
`bottleneck` -> fc1, `conv_cat`, `conv_seg` -> classifier; `auxiliary_head.convs.0` /
`auxiliary_head.conv_seg` -> aux_head.convs.0 / aux_head.classifier.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from .convert_imagenet import BACKBONE_LAYOUTS, detect_backbone_layout, export_backbone, load_backbone_weights
from .registry import create_model
from .resnet import DEPTHS
from .segmentor import Segmentor
from .weights import (
    CheckpointSource,
    KeyMap,
    export_mapped,
    load_mapped,
    read_checkpoint,
    unwrap_state_dict,
)

__all__ = [
    "load_official",
    "load_mmseg",
    "export_official",
    "export_mmseg",
    "load_backbone_weights",
    "export_backbone",
    "detect_backbone_layout",
    "OFFICIAL_KEYMAP",
    "MMSEG_KEYMAP",
]

OFFICIAL_KEYMAP = KeyMap(
    [
        ("extractor.0.", "backbone.conv1."),
        ("extractor.1.", "backbone.bn1."),
        *[(f"extractor.{i + 3}.", f"backbone.layer{i}.") for i in range(1, 5)],
        ("fc0.", "decode_head.fc0."),
        ("emau.mu", "decode_head.emau.bases"),
        ("emau.conv1.", "decode_head.emau.conv_in."),
        ("emau.conv2.0.", "decode_head.emau.conv_out."),
        ("emau.conv2.1.", "decode_head.emau.bn_out."),
        ("fc1.0.", "decode_head.fc1."),
        ("fc2.", "decode_head.classifier."),
    ]
)

MMSEG_KEYMAP = KeyMap(
    BACKBONE_LAYOUTS["mmseg"].prefixed("backbone.", "backbone.").rules
    + [
        ("decode_head.ema_in_conv.", "decode_head.fc0."),
        ("decode_head.ema_mid_conv.conv.", "decode_head.emau.conv_in."),
        ("decode_head.ema_module.bases", "decode_head.emau.bases"),
        ("decode_head.ema_out_conv.conv.", "decode_head.emau.conv_out."),
        ("decode_head.ema_out_conv.bn.", "decode_head.emau.bn_out."),
        ("decode_head.bottleneck.", "decode_head.fc1."),
        ("decode_head.conv_cat.", "decode_head.conv_cat."),
        ("decode_head.conv_seg.", "decode_head.classifier."),
        ("auxiliary_head.convs.0.", "aux_head.convs.0."),
        ("auxiliary_head.conv_seg.", "aux_head.classifier."),
    ]
)

# Depth of the authors' ResNets from the number of layer3 blocks.
_LAYER3_DEPTH = {layers[2]: d for d, (kind, layers) in DEPTHS.items() if kind == "bottleneck"}


def _require(state_dict: Mapping, keys: list[str], source: str, fmt: str, other: str) -> None:
    missing = [k for k in keys if k not in state_dict]
    if not missing:
        return
    hint = ""
    if fmt == "official" and any(k.startswith("decode_head.") for k in state_dict):
        hint = (
            " It looks like an OpenMMLab checkpoint: use emanet.load_mmseg / `emanet convert --from mmseg`."
        )
    elif fmt == "mmseg" and any(k.startswith("extractor.") for k in state_dict):
        hint = (
            " It looks like the authors' checkpoint: use emanet.load_official / "
            "`emanet convert --from official`."
        )
    elif any(k.startswith(("layer1.", "backbone.layer1.")) for k in state_dict):
        hint = " It looks like an ImageNet backbone: use emanet.create_model(..., backbone_weights=PATH)."
    raise ValueError(f"{source} is not {other}: missing keys {', '.join(missing)}.{hint}")


def _layer_blocks(state_dict: Mapping, prefix: str) -> int:
    return len({k[len(prefix) :].split(".")[0] for k in state_dict if k.startswith(prefix)})


def _bases_shape(state_dict: Mapping, key: str, source: str) -> tuple[int, int]:
    bases = state_dict[key]
    if bases.dim() != 3 or bases.shape[0] != 1:
        raise ValueError(f"{source}: {key} has shape {tuple(bases.shape)}; expected bases of shape (1, C, K)")
    return int(bases.shape[1]), int(bases.shape[2])


def _check_classes(num_classes: int | None, found: int, key: str, source: str) -> int:
    if num_classes is not None and num_classes != found:
        raise ValueError(
            f"num_classes={num_classes} was given but {source} has {found} classes ({key} is "
            f"{found} × ...); leave num_classes out or pass {found}"
        )
    return found


def load_official(path_or_obj: CheckpointSource, num_classes: int | None = None) -> Segmentor:
    """The authors' EMANet checkpoint as our model, in eval mode.

    Args:
        path_or_obj: a path, or an already-loaded `{'net': state_dict, 'step': int}` wrapper or
            bare state dict; a DataParallel `module.` prefix is removed.
        num_classes: optional check against the classifier in the file.

    Returns:
        `emanet_r{50,101,152}` with the authors' options (deep stem, OS8, multi-grid (1, 2, 4),
        align_corners=True, eps_mode="add") and `ema_channels`, `num_bases`, `channels` from the
        file. images (B, 3, H, W) -> logits (B, classes, H, W), equal to the authors' network.
    """
    obj, source = read_checkpoint(path_or_obj)
    state_dict = unwrap_state_dict(obj, source)
    _require(
        state_dict,
        ["fc2.weight", "emau.mu", "fc1.0.conv.weight"],
        source,
        "official",
        "the authors' EMANet checkpoint",
    )
    blocks = _layer_blocks(state_dict, "extractor.6.")
    if blocks not in _LAYER3_DEPTH:
        raise ValueError(
            f"{source}: layer3 (extractor.6) has {blocks} blocks; the authors' ResNets have "
            + ", ".join(f"{n} (ResNet-{d})" for n, d in _LAYER3_DEPTH.items())
        )
    depth = _LAYER3_DEPTH[blocks]
    classes = _check_classes(num_classes, int(state_dict["fc2.weight"].shape[0]), "fc2.weight", source)
    ema_channels, num_bases = _bases_shape(state_dict, "emau.mu", source)
    channels = int(state_dict["fc1.0.conv.weight"].shape[0])
    model = create_model(
        f"emanet_r{depth}", classes, ema_channels=ema_channels, num_bases=num_bases, channels=channels
    )
    load_mapped(model, state_dict, OFFICIAL_KEYMAP, source)
    model.class_names, model.palette = None, None
    return model.eval()


def _mmseg_meta(
    obj: Mapping[str, Any], classes: int, source: str
) -> tuple[list[str] | None, list[list[int]] | None]:
    """Class names and palette from an OpenMMLab `meta` (0.x: CLASSES/PALETTE; 1.x: dataset_meta)."""
    meta_value = obj.get("meta")
    meta: Mapping[str, Any] = meta_value if isinstance(meta_value, Mapping) else {}
    dataset_value = meta.get("dataset_meta")
    dataset_meta: Mapping[str, Any] = dataset_value if isinstance(dataset_value, Mapping) else {}
    names = meta.get("CLASSES") or dataset_meta.get("classes")
    palette = meta.get("PALETTE") or dataset_meta.get("palette")
    if names is not None:
        names = [str(n) for n in names]
    if palette is not None:
        palette = [[int(c) for c in colour] for colour in palette]
    for what, value in (("class names", names), ("palette", palette)):
        if value is not None and len(value) != classes:
            warnings.warn(
                f"{source}: meta has {len(value)} {what} for {classes} classes; ignoring them", stacklevel=3
            )
    names = names if names is not None and len(names) == classes else None
    palette = palette if palette is not None and len(palette) == classes else None
    return names, palette


def load_mmseg(path_or_obj: CheckpointSource, num_classes: int | None = None) -> Segmentor:
    """OpenMMLab's EMANet checkpoint as our model, in eval mode.

    Args:
        path_or_obj: a path, or an already-loaded `{'state_dict': ..., 'meta': ...}` wrapper or
            bare state dict.
        num_classes: optional check against `decode_head.conv_seg` in the file.

    Returns:
        `emanet_r{depth}` with OpenMMLab's options: ResNetV1c stem ("deep_v1c"), layer4
        dilations 2, 4, 4 (multi_grid=None), concat_input, the FCN aux head when the file has
        one, align_corners=False, renormalised bases mean, eps_mode="clamp" (F.normalize);
        `channels`, `ema_channels`, `num_bases` from the tensors. `model.class_names` and
        `model.palette` come from `meta` when present (else None).
    """
    obj, source = read_checkpoint(path_or_obj)
    state_dict = unwrap_state_dict(obj, source)
    _require(
        state_dict,
        [
            "decode_head.conv_seg.weight",
            "decode_head.ema_module.bases",
            "decode_head.bottleneck.conv.weight",
            "backbone.stem.0.weight",
        ],
        source,
        "mmseg",
        "an OpenMMLab EMANet (EMAHead + ResNetV1c) checkpoint",
    )
    backbone = {k[len("backbone.") :]: v for k, v in state_dict.items() if k.startswith("backbone.")}
    _, stem = detect_backbone_layout(backbone, source)
    counts = tuple(_layer_blocks(backbone, f"layer{i}.") for i in range(1, 5))
    kind = "bottleneck" if any(".conv3." in k for k in backbone) else "basic"
    depth = next((d for d, (k, layers) in DEPTHS.items() if k == kind and tuple(layers) == counts), None)
    if depth is None:
        raise ValueError(f"{source}: backbone blocks per layer {counts} ({kind}) match no ResNet depth")
    classes = _check_classes(
        num_classes,
        int(state_dict["decode_head.conv_seg.weight"].shape[0]),
        "decode_head.conv_seg.weight",
        source,
    )
    ema_channels, num_bases = _bases_shape(state_dict, "decode_head.ema_module.bases", source)
    model = create_model(
        f"emanet_r{depth}",
        classes,
        stem=stem,
        multi_grid=None,
        concat_input="decode_head.conv_cat.conv.weight" in state_dict,
        aux_head=any(k.startswith("auxiliary_head.") for k in state_dict),
        align_corners=False,
        renormalize_mean=True,
        eps_mode="clamp",
        channels=int(state_dict["decode_head.bottleneck.conv.weight"].shape[0]),
        ema_channels=ema_channels,
        num_bases=num_bases,
    )
    load_mapped(model, state_dict, MMSEG_KEYMAP, source)
    model.class_names, model.palette = _mmseg_meta(obj, classes, source)
    return model.eval()


def export_official(model: Segmentor, num_batches_tracked: bool = True) -> dict[str, Any]:
    """`model`'s weights as the authors' state dict (the value of their `'net'` key).

    Raises ValueError when the model has parts the authors' network lacks (aux head,
    concat_input).
    """
    return export_mapped(model, OFFICIAL_KEYMAP, "authors' EMANet", num_batches_tracked)


def export_mmseg(model: Segmentor, num_batches_tracked: bool = True) -> dict[str, Any]:
    """`model`'s weights as an OpenMMLab EMANet state dict (the value of its `'state_dict'` key)."""
    return export_mapped(model, MMSEG_KEYMAP, "OpenMMLab EMANet", num_batches_tracked)
