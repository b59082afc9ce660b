"""ReLU(out + other): the residual join of ResNet blocks and the EMA unit, in place where it can be."""

from __future__ import annotations

import torch

__all__ = ["add_relu_", "residual_relu"]


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


def residual_relu(out: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
    """ReLU(out + identity) for a residual join whose `out` is a fresh tensor of the block's own
    (never its input), so that it may be overwritten.

    Without autograd, in one in-place pass over `out` (`add_relu_`): no (B, C, H, W) allocation,
    about half the time of add then ReLU. With autograd, mixed dtypes/shapes, or while
    tracing/exporting/compiling (ONNX has no fused op; Inductor fuses the add + ReLU into the conv
    itself): the sum is a new tensor, and the ReLU runs in place on it.
    """
    if (
        torch.is_grad_enabled()
        or out.dtype != identity.dtype
        or out.shape != identity.shape
        or torch.jit.is_tracing()
        or torch.onnx.is_in_onnx_export()
        or torch.compiler.is_compiling()
    ):
        return (out + identity).relu_()
    return add_relu_(out, identity)
