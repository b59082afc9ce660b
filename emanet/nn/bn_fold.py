"""Folding an eval-mode BatchNorm into the convolution before it.

bn(conv(x)) = conv'(x) with w' = w·s and b' = (b - mean)·s + beta, where
s = gamma / sqrt(var + eps). `optimize.fold_conv_bn` rewrites a whole model this way (in
float64, once); the EMA unit's fast path folds its conv_out/bn_out pair on every forward (in
fp32, into fresh tensors, so the module itself stays unchanged).
"""

from __future__ import annotations

import torch
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["fold_bn", "fold_eval_bn"]


def fold_bn(
    weight: torch.Tensor, bias: torch.Tensor | None, bn: _BatchNorm, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of the conv followed by `bn` (its running statistics), computed in `dtype`
    and returned in the dtype of `weight`.

    weight: (C_out, C_in/groups, kH, kW); bias: (C_out,) or None; bn: a BatchNorm over C_out.
    """
    scale = torch.rsqrt(bn.running_var.to(dtype) + bn.eps)  # (C_out,)
    if bn.affine:
        scale = scale * bn.weight.to(dtype)
    shift = bias.to(dtype) if bias is not None else torch.zeros_like(scale)
    shift = (shift - bn.running_mean.to(dtype)) * scale
    if bn.affine:
        shift = shift + bn.bias.to(dtype)
    folded_weight = weight.to(dtype) * scale.view(-1, *([1] * (weight.dim() - 1)))
    return folded_weight.to(weight.dtype), shift.to(weight.dtype)


def fold_eval_bn(weight: torch.Tensor, bias: torch.Tensor | None, bn: torch.nn.Module):
    """`fold_bn` in fp32 where `bn` is an eval-mode BatchNorm without hooks, else None (the
    caller then runs the BN as it is).
    """
    if (
        not isinstance(bn, _BatchNorm)
        or bn.training
        or not bn.track_running_stats
        or bn.running_var is None
        or bn._forward_hooks
        or bn._forward_pre_hooks
    ):
        return None
    return fold_bn(weight, bias, bn, torch.float32)
