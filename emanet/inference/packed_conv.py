"""Convolutions on weights packed once for oneDNN: fp32 CPU inference on channels_last inputs.

Eager oneDNN convolutions and inner products reorder their weight into oneDNN's blocked layout
on every call. Here the reordered copy is made at the first call and kept, as Inductor's
freezing does for compiled models, with no compilation. Measured at 2 threads on this
project's CPU (docs/benchmarks.md): 256->1024 1×1 over 65×65 pixels 5.9 -> 4.9 ms, the
3×3 2048->512 conv of the EMANet head 180 -> 166 ms.

The packed copy is an opaque oneDNN tensor: it is never saved, copied or pickled, and it is
remade whenever the weight changes (another tensor, other memory, or an in-place write such as
`load_state_dict`; writes through `.data` are not seen: call `repack()` after them).
Anything else (autocast, other devices or dtypes, NCHW inputs, autograd, torch.compile) runs
the wrapped convolution unchanged.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from typing import Any, TypeGuard

import torch
from torch import nn

__all__ = ["Conv1x1AsLinear", "PackedConv2d", "packing_available"]

_MKLDNN = torch.ops.mkldnn


@functools.cache
def packing_available() -> bool:
    """Whether this torch build has oneDNN with the weight-packing ops used here, and they
    compute what the plain ops do (probed once on a tiny conv and inner product: the ops are
    private to PyTorch, so another version may differ)."""
    ops = (
        "_linear_pointwise",
        "_reorder_linear_weight",
        "_convolution_pointwise",
        "_reorder_convolution_weight",
    )
    if not (torch.backends.mkldnn.is_available() and all(hasattr(_MKLDNN, op) for op in ops)):
        return False
    try:
        with torch.no_grad():
            gen = torch.Generator().manual_seed(0)
            x = torch.randn(1, 8, 5, 5, generator=gen).contiguous(memory_format=torch.channels_last)
            w = torch.randn(4, 8, 3, 3, generator=gen).contiguous(memory_format=torch.channels_last)
            args = ([1, 1], [1, 1], [1, 1], 1)
            conv = _MKLDNN._convolution_pointwise(
                x, _MKLDNN._reorder_convolution_weight(w, *args, list(x.shape)), None, *args, "none", [], ""
            )
            rows, w2 = x.permute(0, 2, 3, 1).reshape(25, 8), w[:, :, 1, 1].contiguous()
            linear = _MKLDNN._linear_pointwise(
                rows, _MKLDNN._reorder_linear_weight(w2, 25), None, "none", [], ""
            )
        return torch.allclose(
            conv, torch.nn.functional.conv2d(x, w, padding=1), atol=1e-4
        ) and torch.allclose(linear, rows @ w2.t(), atol=1e-4)
    except Exception:  # any failure of the private ops: use the plain convs
        return False


def _weight_key(weight: torch.Tensor):
    """What identifies a weight's current values: the tensor (weakly referenced, so a new tensor
    at a freed one's address never matches), its memory and its in-place version (bumped by
    copy_, load_state_dict, ...); None for inference tensors, which have no version. Writes
    through `.data` bump no version: after `conv.weight.data.copy_(...)`, call `repack()`."""
    try:
        return weakref.ref(weight), weight.data_ptr(), weight._version
    except RuntimeError:
        return None


def _same_key(a, b) -> bool:
    return a is not None and b is not None and a[0]() is b[0]() and a[1:] == b[1:]


class _PackedWeightConv(nn.Module):
    """Wraps a Conv2d; keeps oneDNN's packed copy of its weight between calls."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv
        self._packed: tuple | None = None  # (_weight_key(weight), packed weight)

    def __getattr__(self, name: str):
        # out_channels, weight, ... of the wrapped conv (e.g. Segmentor.num_classes reads them).
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("conv"), name)

    def __getstate__(self):
        # Packed weights have no storage to copy or pickle; they are remade at the next call.
        return {k: None if k.startswith("_packed") else v for k, v in self.__dict__.items()}

    def _takes_fast_path(self, x: torch.Tensor) -> bool:
        return (
            x.device.type == "cpu"
            and x.dtype == torch.float32
            and self.conv.weight.dtype == torch.float32
            and x.dim() == 4
            and x.shape[1] == self.conv.in_channels  # else the conv's own clear error
            and x.numel() > 0
            and x.is_contiguous(memory_format=torch.channels_last)
            and not torch.is_autocast_enabled("cpu")
            and not torch.is_grad_enabled()
            and not torch.compiler.is_compiling()  # compiled, Inductor packs the plain conv itself
        )

    def repack(self) -> None:
        """Drop the packed weight (remade at the next call): needed only after writes that bump
        no version, such as `conv.weight.data.copy_(...)`."""
        self._packed = None

    def _packed_weight(self, pack: Callable[[torch.Tensor], Any]) -> Any:
        """`pack(weight)`, made at the first call and kept while the weight is unchanged."""
        weight = self.conv.weight
        key = _weight_key(weight)
        cached = self._packed
        if cached is not None and _same_key(cached[0], key):
            return cached[1]
        packed = pack(weight)
        if key is not None:
            self._packed = (key, packed)
        return packed


class Conv1x1AsLinear(_PackedWeightConv):
    """A 1×1, stride-1 convolution computed as one oneDNN inner product over NHWC rows.

    Packed, the inner product runs about as fast as oneDNN's 1×1 convolution at 2 threads, and at
    1 thread it avoids PyTorch's own GEMM, where PyTorch sends batch-1 1×1 convolutions
    (docs/benchmarks.md).

    Shapes:
        (B, C_in, H, W) channels_last -> (B, C_out, H, W) channels_last
    """

    @staticmethod
    def applies_to(conv: nn.Module) -> TypeGuard[nn.Conv2d]:
        return (
            type(conv) is nn.Conv2d
            and conv.kernel_size == (1, 1)
            and conv.stride == (1, 1)
            and conv.padding in ((0, 0), "valid")
            and conv.groups == 1
            and not conv._forward_hooks
            and not conv._forward_pre_hooks
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._takes_fast_path(x):
            return self.conv(x)
        b, c, h, w = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(b * h * w, c)  # a view of the NHWC memory
        # The packed layout is chosen for this row count but valid for any.
        weight = self._packed_weight(
            lambda w: _MKLDNN._reorder_linear_weight(w.reshape(w.shape[0], c).contiguous(), rows.shape[0])
        )
        out = _MKLDNN._linear_pointwise(rows, weight, self.conv.bias, "none", [], "")
        return out.view(b, h, w, -1).permute(0, 3, 1, 2)


class PackedConv2d(_PackedWeightConv):
    """Any other zero-padded Conv2d (3×3, strided, dilated, grouped) on a packed weight.

    Shapes:
        (B, C_in, H, W) channels_last -> (B, C_out, H', W') channels_last
    """

    @staticmethod
    def applies_to(conv: nn.Module) -> TypeGuard[nn.Conv2d]:
        return (
            type(conv) is nn.Conv2d
            and not Conv1x1AsLinear.applies_to(conv)
            and not isinstance(conv.padding, str)
            and conv.padding_mode == "zeros"
            and not conv._forward_hooks
            and not conv._forward_pre_hooks
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._takes_fast_path(x):
            return self.conv(x)
        conv = self.conv
        args = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
        # The packed layout is chosen for this input size; oneDNN reorders it for another.
        weight = self._packed_weight(lambda w: _MKLDNN._reorder_convolution_weight(w, *args, list(x.shape)))
        return _MKLDNN._convolution_pointwise(x, weight, conv.bias, *args, "none", [], "")
