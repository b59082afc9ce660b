"""ReLU(out + other) in place: the residual join of ResNet blocks and the EMA unit."""

from __future__ import annotations

import torch

__all__ = ["add_relu_"]


def add_relu_(out: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """out = ReLU(out + other), in place; returns `out`.

    One pass with ATen's fused kernel where it exists (fp32/fp64 on CPU: about half the time of
    an add then a ReLU, and no allocation); add_ then relu_ elsewhere (it refuses bf16, and it
    has no CUDA kernel). Same arithmetic either way: one rounding for the add, ReLU exact.

    Shapes: out (*), other broadcastable to out.
    """
    if (
        out.device.type == "cpu"
        and out.dtype in (torch.float32, torch.float64)
        and other.dtype == out.dtype
        and hasattr(torch.ops.aten, "_add_relu_")
    ):
        return torch.ops.aten._add_relu_(out, other)
    return out.add_(other).relu_()
