"""Folding an eval-mode BatchNorm into the convolution before it.

bn(conv(x)) = conv'(x) with w' = w·s and b' = (b - mean)·s + beta, where
s = gamma / sqrt(var + eps). `optimize.fold_conv_bn` rewrites a whole model this way (in
float64, once); `FusedEMAU` folds its conv_out/bn_out pair the same way when it is built.
"""

from __future__ import annotations

from typing import TypeGuard

import torch
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["fold_bn", "foldable_bn"]


def fold_bn(
    weight: torch.Tensor, bias: torch.Tensor | None, bn: _BatchNorm, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of the conv followed by `bn` (its running statistics), computed in `dtype`
    and returned in the dtype of `weight`.

    weight: (C_out, C_in/groups, kH, kW); bias: (C_out,) or None; bn: a BatchNorm over C_out.
    """
    running_mean, running_var = bn.running_mean, bn.running_var
    if running_mean is None or running_var is None:
        raise ValueError(
            f"cannot fold {type(bn).__name__}: it has no running statistics (track_running_stats=False)"
        )
    scale = torch.rsqrt(running_var.to(dtype) + bn.eps)  # (C_out,)
    if bn.affine:
        scale = scale * bn.weight.to(dtype)
    shift = bias.to(dtype) if bias is not None else torch.zeros_like(scale)
    shift = (shift - running_mean.to(dtype)) * scale
    if bn.affine:
        shift = shift + bn.bias.to(dtype)
    folded_weight = weight.to(dtype) * scale.view(-1, *([1] * (weight.dim() - 1)))
    return folded_weight.to(weight.dtype), shift.to(weight.dtype)


def foldable_bn(bn: torch.nn.Module) -> TypeGuard[_BatchNorm]:
    """Whether `bn` is an eval-mode BatchNorm with running statistics and no hooks (folding it
    into the conv before it computes exactly what it computes)."""
    return (
        isinstance(bn, _BatchNorm)
        and not bn.training
        and bn.track_running_stats
        and bn.running_var is not None
        and not bn._forward_hooks
        and not bn._forward_pre_hooks
    )
