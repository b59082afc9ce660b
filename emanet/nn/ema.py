"""The Expectation-Maximization Attention Unit (Li et al., ICCV 2019, Fig. 2; docs/method.md §3).

x -> conv_in 1×1 -> EM iterations -> X~ = Z mu -> ReLU -> conv_out 1×1 -> BN -> (+ x) -> ReLU,
with the bases' moving average after each training forward. One dataflow, in batched ops that
run on every device, in training and in evaluation. (`emanet.optimize_for_inference` swaps in
a fused formulation of the same maths for CPU inference; this module does not know about it.)
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .em import BASE_NORMS, EPS_MODES, check_choice, em_iterations, normalize_bases

__all__ = ["EMAU", "MAINTENANCES"]

MAINTENANCES = ("moving_average", "learned", "fixed")


def _init_bases(channels: int, num_bases: int, base_norm: str) -> torch.Tensor:
    # Authors: normal(0, sqrt(2 / K)), then normalised over C.
    bases = torch.randn(1, channels, num_bases) * math.sqrt(2.0 / num_bases)
    return normalize_bases(bases, base_norm)


class EMAU(nn.Module):
    """The Expectation-Maximization Attention Unit.

    Args:
        channels: C, input and output channels.
        num_bases: K, number of bases (authors: 64).
        num_iters: T, EM iterations during training (authors: 3).
        eval_iters: T at evaluation; defaults to `num_iters`. Changes inference only.
        temperature: softmax temperature of the E-step (lambda = 1 / temperature; authors: 1).
        base_norm: normalisation of the bases after each M-step: "l2" (authors), "layer", "none".
        maintenance: how mu^(0) evolves across batches: "moving_average" (authors, eq. 15),
            "learned" (a parameter trained by back-propagation through the EM iterations), or
            "fixed" (the random initialisation is kept).
        momentum: weight of the new value in the moving average (PyTorch BatchNorm convention):
            mu0 <- (1 - momentum) * mu0 + momentum * mean_batch(mu^(T)). 0.1 is the authors'
            EM_MOM = 0.9 on the old value.
        renormalize_mean: L2-normalise the batch mean before blending, as OpenMMLab.
        eps_mode: "add" (authors) or "clamp" (OpenMMLab's F.normalize), see `EPS_MODES`.
        norm_layer: normalisation after conv_out (BatchNorm2d; SyncBatchNorm under DDP).

    Shapes:
        x: (B, C, H, W) -> (B, C, H, W); with `return_attention=True` also the last E-step's
        responsibilities as (B, K, H, W), summing to 1 over K.
    """

    def __init__(
        self,
        channels: int,
        num_bases: int = 64,
        num_iters: int = 3,
        eval_iters: int | None = None,
        temperature: float = 1.0,
        base_norm: str = "l2",
        maintenance: str = "moving_average",
        momentum: float = 0.1,
        renormalize_mean: bool = False,
        eps_mode: str = "add",
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        for name, value in (("channels", channels), ("num_bases", num_bases), ("num_iters", num_iters)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"EMAU {name}={value!r} is not valid; it must be an integer >= 1")
        if eval_iters is not None and (not isinstance(eval_iters, int) or eval_iters < 1):
            raise ValueError(
                f"EMAU eval_iters={eval_iters!r} is not valid; use an integer >= 1, or None for num_iters"
            )
        if not temperature > 0:
            raise ValueError(f"EMAU temperature={temperature!r} is not valid; it must be > 0")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"EMAU momentum={momentum!r} is not valid; it must lie in [0, 1]")
        check_choice("base_norm", base_norm, BASE_NORMS)
        check_choice("maintenance", maintenance, MAINTENANCES)
        check_choice("eps_mode", eps_mode, EPS_MODES)

        self.channels = channels
        self.num_bases = num_bases
        self.num_iters = num_iters
        self.eval_iters = eval_iters if eval_iters is not None else num_iters
        self.temperature = float(temperature)
        self.base_norm = base_norm
        self.maintenance = maintenance
        self.momentum = float(momentum)
        self.renormalize_mean = renormalize_mean
        self.eps_mode = eps_mode

        bases = _init_bases(channels, num_bases, base_norm)
        if maintenance == "learned":
            self.bases = nn.Parameter(bases)
        else:
            self.register_buffer("bases", bases)  # (1, C, K), saved in checkpoints
        self.conv_in = nn.Conv2d(channels, channels, 1)
        self.conv_out = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn_out = norm_layer(channels)
        self.reset_parameters()
        # Without a gradient through the EM core conv_in never gets one: a fixed random
        # projection (OpenMMLab freezes it too). Frozen, DDP never reports it unused.
        self.conv_in.requires_grad_(False)

    def reset_parameters(self) -> None:
        """Authors' init: conv weights normal(0, sqrt(2 / (k*k*C_out))), BN weight 1, bias 0."""
        for conv in (self.conv_in, self.conv_out):
            n = conv.kernel_size[0] * conv.kernel_size[1] * conv.out_channels
            with torch.no_grad():
                conv.weight.normal_(0.0, math.sqrt(2.0 / n))
        if getattr(self.bn_out, "weight", None) is not None:
            # norm_layer is any module type: its affine parameters are looked up by name.
            nn.init.ones_(cast(torch.Tensor, self.bn_out.weight))
            nn.init.zeros_(cast(torch.Tensor, self.bn_out.bias))

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, num_bases={self.num_bases}, num_iters={self.num_iters}, "
            f"eval_iters={self.eval_iters}, base_norm={self.base_norm!r}, "
            f"maintenance={self.maintenance!r}, momentum={self.momentum}"
        )

    def forward(
        self, x: torch.Tensor, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"EMAU expects input of shape (B, {self.channels}, H, W); got {tuple(x.shape)}")
        b, c, h, w = x.shape
        num_iters = self.num_iters if self.training else self.eval_iters
        feats = self.conv_in(x).flatten(2)  # (B, C, N)
        # No gradient through EM and the reconstruction (every reference), except for bases
        # learned by back-propagation.
        with torch.set_grad_enabled(self.maintenance == "learned" and torch.is_grad_enabled()):
            z, mu = em_iterations(
                feats, self.bases, num_iters, self.temperature, self.base_norm, self.eps_mode
            )
            recon = torch.bmm(mu, z.transpose(1, 2)).view(b, c, h, w)  # A_R: X~ = Z mu
        if self.training and self.maintenance == "moving_average":
            self._update_bases(mu)
        out = self.bn_out(self.conv_out(F.relu(recon, inplace=True)))  # recon: a fresh tensor
        out += x
        out = F.relu(out, inplace=True)
        if return_attention:
            return out, z.transpose(1, 2).reshape(b, self.num_bases, h, w)
        return out

    @torch.no_grad()
    def _update_bases(self, mu: torch.Tensor) -> None:
        """Paper eq. 15 over the global batch: sum and count all-reduced across ranks."""
        total = mu.detach().sum(dim=0, keepdim=True)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            count = torch.tensor([float(mu.shape[0])], device=mu.device, dtype=mu.dtype)
            packed = torch.cat([total.flatten(), count])
            dist.all_reduce(packed)
            total, count = packed[:-1].view_as(total), packed[-1]
            mean = total / count
        else:
            mean = total / mu.shape[0]
        if self.renormalize_mean:
            mean = F.normalize(mean, dim=1, p=2)
        self.bases.mul_(1.0 - self.momentum).add_(mean.to(self.bases.dtype), alpha=self.momentum)
