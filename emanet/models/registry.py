"""Model registry: `create_model(name, num_classes, **overrides)` and `list_models()`.

Every model is a dilated ResNet + a head, built by `build_segmentor`; the registered names fix
the head and depth and the defaults of docs/method.md §4 (deep stem, output stride 8, multi-grid
(1, 2, 4), no aux head, align_corners=True). Any option can be overridden by keyword.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from typing import TYPE_CHECKING, Any

from .heads import HEADS, FCNHead
from .resnet import ResNet
from .segmentor import Segmentor

if TYPE_CHECKING:
    from .weights import CheckpointSource

__all__ = [
    "create_model",
    "list_models",
    "register_model",
    "build_segmentor",
    "model_options",
    "describe_model",
]

_MODELS: dict[str, _Entry] = {}

# Options of the segmentor and backbone, with the authors' defaults.
_COMMON_DEFAULTS = {
    "stem": "deep",
    "output_stride": 8,
    "multi_grid": (1, 2, 4),
    "contract_dilation": True,
    "in_channels": 3,
    "widths": (64, 128, 256, 512),
    "aux_head": False,
    "align_corners": True,
}
# Head arguments that are not options: the registry passes them from the backbone and the call.
_HEAD_ARGUMENTS = {"self", "in_channels", "num_classes", "norm_layer"}


def _head_options(head: str) -> set[str]:
    # The head's own keyword parameters: EMAHead spells out the EMAU options it forwards.
    parameters = inspect.signature(HEADS[head].__init__).parameters.values()
    keywords = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name for p in parameters if p.kind in keywords} - _HEAD_ARGUMENTS


def model_options(name: str) -> list[str]:
    """The keyword options `create_model(name, ...)` accepts."""
    head = _get(name).head
    return sorted(set(_COMMON_DEFAULTS) | _head_options(head))


def build_segmentor(
    head: str, depth: int, num_classes: int, name: str | None = None, **options: Any
) -> Segmentor:
    """Build backbone + head from options (see `model_options`)."""
    if head not in HEADS:
        raise ValueError(f"head={head!r} is not valid; choose one of {', '.join(HEADS)}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes={num_classes!r} is not valid; it must be an integer >= 1")
    valid = set(_COMMON_DEFAULTS) | _head_options(head)
    for key in options:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"unknown option {key!r} for {name or head + ' model'}{hint}; valid options: "
                + ", ".join(sorted(valid))
            )
    common = {k: options.pop(k, v) for k, v in _COMMON_DEFAULTS.items()}
    multi_grid = common["multi_grid"]
    backbone = ResNet(
        depth=depth,
        stem=common["stem"],
        output_stride=common["output_stride"],
        multi_grid=tuple(multi_grid) if multi_grid else None,
        contract_dilation=common["contract_dilation"],
        in_channels=common["in_channels"],
        widths=tuple(common["widths"]),
    )
    if head == "aspp" and "rates" not in options:
        # DeepLabV3 rates are set for output stride 16 (6, 12, 18) and doubled at 8.
        scale = max(16 // common["output_stride"], 1)
        options["rates"] = tuple(r * scale for r in (6, 12, 18))
    channels = [info["num_chs"] for info in backbone.feature_info]
    decode_head = HEADS[head](channels[-1], num_classes, **options)
    aux_head = FCNHead(channels[2], num_classes, channels=256, num_convs=1) if common["aux_head"] else None
    config = {"name": name, "num_classes": num_classes}
    return Segmentor(
        backbone, decode_head, aux_head, common["align_corners"], config=config, num_classes=num_classes
    )


class _Entry:
    def __init__(self, head: str, depth: int, doc: str) -> None:
        self.head, self.depth, self.doc = head, depth, doc


def _get(name: str) -> _Entry:
    if name not in _MODELS:
        close = difflib.get_close_matches(name, _MODELS, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown model {name!r}.{hint} Available models: {', '.join(sorted(_MODELS))}")
    return _MODELS[name]


def register_model(name: str, head: str, depth: int, doc: str = "") -> None:
    """Register `name` as `build_segmentor(head, depth, ...)`."""
    if name in _MODELS:
        raise ValueError(f"model {name!r} is already registered")
    _MODELS[name] = _Entry(head, depth, doc)


def _jsonable(options: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted; `pattern` is a shell-style filter such as "emanet_*"."""
    names = sorted(_MODELS)
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def create_model(
    name: str,
    num_classes: int = 21,
    backbone_weights: CheckpointSource | None = None,
    backbone_weights_strict: bool = True,
    **overrides: Any,
) -> Segmentor:
    """Create a registered model.

    Args:
        name: one of `list_models()`, e.g. "emanet_r101".
        num_classes: output classes (VOC: 21).
        backbone_weights: optional ImageNet ResNet file (torchvision, timm, PyTorch-Encoding deep
            base, OpenMMLab ResNetV1c; layout detected from the keys) loaded into the backbone.
            Not stored in `model.config`: the weights travel in the saved model itself.
        backbone_weights_strict: a missing, unexpected or wrongly shaped backbone tensor is an
            error (default); False prints every skipped tensor instead.
        **overrides: options from `model_options(name)`, e.g. ema_channels=256, num_bases=32,
            eval_iters=5, output_stride=16, aux_head=True, align_corners=False.

    Returns:
        The model in training mode, with `model.config` holding what rebuilds it.
    """
    entry = _get(name)
    model = build_segmentor(entry.head, entry.depth, num_classes, name=name, **dict(overrides))
    model.config.update(_jsonable(overrides))
    if backbone_weights is not None:
        from .convert_imagenet import load_backbone_weights

        load_backbone_weights(model.backbone, backbone_weights, strict=backbone_weights_strict)
    return model


_DEPTHS = (18, 34, 50, 101, 152)
_DOCS = {
    "ema": "EMANet (Li et al., ICCV 2019): fc0 3×3 -> EMAU(K=64, T=3) -> fc1 3×3 -> classifier.",
    "fcn": "FCN head: two 3×3 conv-BN-ReLU -> classifier (no global context).",
    "aspp": "DeepLabV3 head: ASPP (rates 12/24/36 at OS8, image pooling) -> 3×3 -> classifier.",
    "nonlocal": "Non-local head: fc0 3×3 -> embedded-Gaussian non-local block -> fc1 3×3 -> classifier.",
}
_PREFIX = {"ema": "emanet", "fcn": "fcn", "aspp": "deeplabv3", "nonlocal": "nonlocal"}

for _head, _prefix in _PREFIX.items():
    for _depth in _DEPTHS:
        register_model(f"{_prefix}_r{_depth}", _head, _depth, f"{_DOCS[_head]} Dilated ResNet-{_depth}.")


def describe_model(name: str) -> str:
    """One line on what `name` is."""
    return _get(name).doc
