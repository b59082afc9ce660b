"""Inference-ready copies of a model: conv–BN folding, channels_last, autocast, inference_mode,
optional torch.compile.

    fast = emanet.optimize_for_inference(model, precision="bf16")
    logits = fast(images)                       # (B, classes, H, W), fp32
    out = fast(images, return_attention=True)   # {"out": ..., "attention": (B, K, h, w)}

The original model is never modified (the work is done on a deep copy).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..capability import resolve_amp
from .bn_fold import fold_bn, foldable_bn
from .fused_ema import FusedEMAU, fuse_ema_units
from .packed_conv import Conv1x1AsLinear, PackedConv2d, _PackedWeightConv, packing_available

__all__ = [
    "optimize_for_inference",
    "InferenceModel",
    "Conv1x1AsLinear",
    "PackedConv2d",
    "fold_conv_bn",
    "FusedEMAU",
    "argmax_agreement",
    "PRECISIONS",
]

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# Attribute pairs whose BN normalises that conv's output directly (the naming of every block
# in emanet: ConvBNReLU, Basic/Bottleneck blocks, the ResNet stem, EMAU and NonLocal2d outputs).
_CONV_BN_PAIRS = (
    ("conv", "bn"),
    ("conv1", "bn1"),
    ("conv2", "bn2"),
    ("conv3", "bn3"),
    ("conv_out", "bn_out"),
)


@torch.no_grad()
def _fold_into(conv: nn.Conv2d, bn: _BatchNorm) -> None:
    """conv <- bn(conv), computed in float64 (see `bn_fold`)."""
    weight, bias = fold_bn(conv.weight, conv.bias, bn, torch.float64)
    conv.weight.copy_(weight)
    conv.bias = nn.Parameter(bias, requires_grad=conv.weight.requires_grad)


def _last_conv(module: nn.Module | None) -> nn.Conv2d | None:
    # A deep stem is a Sequential ending in a conv whose BN is the ResNet's bn1.
    if isinstance(module, nn.Sequential) and len(module) > 0:
        module = module[-1]
    return module if type(module) is nn.Conv2d else None


def fold_conv_bn(model: nn.Module) -> int:
    """Fold every eval-mode BatchNorm that directly follows a Conv2d into it, in place.

    The folded BN becomes `nn.Identity`. Pairs are found structurally: neighbours in an
    `nn.Sequential` (conv, BN) and the attribute pairs conv/bn, conv1/bn1, conv2/bn2,
    conv3/bn3 and conv_out/bn_out, the convention of every emanet block. Only use it on a
    model in eval mode (folding uses the running statistics).

    Returns:
        The number of BN layers folded.
    """
    folded = 0
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            children = list(module.named_children())
            for (_, a), (name_b, b) in zip(children, children[1:], strict=False):
                if type(a) is nn.Conv2d and foldable_bn(b):
                    _fold_into(a, b)
                    setattr(module, name_b, nn.Identity())
                    folded += 1
        for conv_name, bn_name in _CONV_BN_PAIRS:
            conv = _last_conv(getattr(module, conv_name, None))
            bn = getattr(module, bn_name, None)
            if conv is not None and bn is not None and foldable_bn(bn):
                _fold_into(conv, bn)
                setattr(module, bn_name, nn.Identity())
                folded += 1
    return folded


def _pack_convs(model: nn.Module) -> int:
    """Replace plain convs by `Conv1x1AsLinear` (1×1) or `PackedConv2d` (others)."""
    if not packing_available():
        return 0
    wrappers = (Conv1x1AsLinear, PackedConv2d)
    replaced = 0
    for module in list(model.modules()):
        if isinstance(module, _PackedWeightConv):
            continue
        for name, child in list(module.named_children()):
            for wrapper in wrappers:
                if wrapper.applies_to(child):
                    setattr(module, name, wrapper(child))
                    replaced += 1
                    break
    return replaced


@torch.no_grad()
def _cast_conv_weights(model: nn.Module, dtype: torch.dtype) -> int:
    """Store conv weights and biases in `dtype` once, instead of autocast casting them on every
    forward (about 250 casts per ResNet-101 forward). Numerically the same: autocast runs convs
    in `dtype` with both cast. (A `FusedEMAU` keeps fp32 tensors: it casts what it needs and
    keeps conv_in's bias in fp32.)"""
    cast = 0
    for module in model.modules():
        if type(module) is nn.Conv2d:
            module.weight.data = module.weight.data.to(dtype)  # keeps channels_last strides
            if module.bias is not None:
                module.bias.data = module.bias.data.to(dtype)
            cast += 1
    return cast


def _to_float32(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return out.float() if out.is_floating_point() else out
    if isinstance(out, dict):
        return {k: _to_float32(v) for k, v in out.items()}
    if isinstance(out, (tuple, list)):
        return type(out)(_to_float32(v) for v in out)
    return out


class InferenceModel(nn.Module):
    """Eval-only wrapper: runs the (folded, channels_last, maybe compiled) model under
    inference_mode and, for bf16/fp16, autocast. Outputs are returned in fp32.

    Keeps the wrapped model's call signature, e.g. `forward(images, return_attention=True)`.

    Shapes:
        images (B, C, H, W) -> what the wrapped model returns (logits (B, classes, H, W), ...).
    """

    def __init__(
        self,
        model: nn.Module,
        precision: str,
        channels_last: bool,
        compiled: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.precision = precision
        self.channels_last = channels_last
        # Kept out of the submodules (torch.compile returns a Module): `model` holds the weights once.
        self.__dict__["_compiled"] = compiled

    def __getattr__(self, name: str) -> Any:
        # Anything else (num_classes, name, config, decode_head, ...) comes from the wrapped
        # model, so code written for a Segmentor keeps working.
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("model"), name)

    def train(self, mode: bool = True) -> InferenceModel:
        if mode:
            raise RuntimeError(
                "an InferenceModel (optimize_for_inference) cannot be trained; train the original"
            )
        return super().train(False)

    def forward(self, images: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if self.channels_last and images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        device_type = images.device.type
        with torch.inference_mode(), _frozen_compilation(self._compiled is not None):
            fn = self._compiled if self._compiled is not None else self.model
            if self.precision == "fp32":
                return fn(images, *args, **kwargs)
            with torch.autocast(device_type, dtype=PRECISIONS[self.precision]):
                return _to_float32(fn(images, *args, **kwargs))


def _frozen_compilation(enabled: bool) -> contextlib.AbstractContextManager[Any]:
    """Inductor's freezing for the compilations that happen inside this context.

    torch.compile compiles at the first call (and again for a new input size), and freezing is
    read from Inductor's config then: `torch.compile(options={"freezing": True})` leaves it off
    (measured with torch 2.13: convs stay unpacked `aten.convolution`), so it is set per call.
    """
    if not enabled:
        return contextlib.nullcontext()
    import torch._inductor.config as inductor_config

    return inductor_config.patch(freezing=True)


def optimize_for_inference(
    model: nn.Module,
    precision: str = "fp32",
    channels_last: bool = True,
    compile: bool = False,  # noqa: A002 - the public keyword
    fold_bn: bool = True,
) -> InferenceModel:
    """An inference-ready copy of `model`; `model` itself is left untouched.

    BatchNorms are folded into their convs, every EMA unit becomes a `FusedEMAU` (the same
    maths in fewer, faster products), and on CPU in fp32 with channels_last (not compiled:
    Inductor packs its own) the convs run on weights packed once for oneDNN, 1×1 convs as inner
    products (`packed_conv`). Weights are packed at the first call.
    Speed, error and memory of each step: docs/benchmarks.md.

    Args:
        model: a Segmentor (or any module whose BN layers follow the conv/bn conventions).
        precision: "fp32" (logits within 1e-4 relative L2 of the plain model), "bf16" (autocast;
            check `argmax_agreement`), "fp16" (meant for CUDA) or "auto": bf16 where the device
            runs it natively (`emanet.capability`), else fp32. An explicit "bf16" on a CPU
            without native bf16 runs, emulated and slow, with a warning.
        channels_last: NHWC memory format for weights and inputs (faster oneDNN/cuDNN convs).
        compile: wrap with `torch.compile` with Inductor freezing (weights folded as constants,
            prepacked, convs fused with their ReLU / residual add); the first call compiles, and
            a new input size compiles once more (dynamic shapes). Compiled graphs keep direct
            convs (no packing).
        fold_bn: fold BatchNorm into the preceding conv (`fold_conv_bn`).

    Returns:
        An `InferenceModel` in eval mode with the same forward signature.
    """
    if precision not in (*PRECISIONS, "auto"):
        raise ValueError(f"precision={precision!r} is not valid; choose one of auto, {', '.join(PRECISIONS)}")
    inner = copy.deepcopy(model).eval()
    device = next(inner.parameters()).device
    amp = resolve_amp("none" if precision == "fp32" else precision, device)
    precision = "fp32" if amp == "none" else amp
    for p in inner.parameters():
        p.requires_grad_(False)
    if fold_bn:
        fold_conv_bn(inner)
    fuse_ema_units(inner)
    if channels_last:
        # Module.to(memory_format=...) works, but torch's stubs omit the keyword.
        inner = inner.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        if precision == "fp32" and not compile and device.type == "cpu":
            _pack_convs(inner)
    if precision != "fp32":
        _cast_conv_weights(inner, PRECISIONS[precision])
    # Compiled with freezing on (see `_frozen_compilation`): weights become constants, so
    # Inductor prepacks them for oneDNN and fuses the convs with their ReLU / residual add.
    compiled = torch.compile(inner) if compile else None
    return InferenceModel(inner, precision, channels_last, compiled).eval()


def argmax_agreement(logits_a: torch.Tensor, logits_b: torch.Tensor) -> float:
    """Fraction of pixels whose arg-max class agrees; (B, classes, H, W) each."""
    return (logits_a.argmax(dim=1) == logits_b.argmax(dim=1)).float().mean().item()
