"""Expectation-Maximization Attention (Li et al., ICCV 2019, §3).

`em_iterations` is the EM core as a pure function (no module state) that tests and
benchmarks call directly; `EMAU` is the unit of the paper (Fig. 2): 1×1 conv in, EM core,
reconstruction, ReLU, 1×1 conv + BN out, residual, ReLU — with the bases' moving average.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .add_relu import residual_relu
from .bn_fold import fold_eval_bn

__all__ = ["EMAU", "em_iterations", "normalize_bases", "BASE_NORMS", "MAINTENANCES", "EPS_MODES"]

BASE_NORMS = ("l2", "layer", "none")
MAINTENANCES = ("moving_average", "learned", "fixed")
# "add": x / (eps + ||x||) with eps = 1e-6, as the authors' code.
# "clamp": x / max(||x||, 1e-12), as F.normalize in OpenMMLab's port.
EPS_MODES = ("add", "clamp")
_ADD_EPS = 1e-6
_CLAMP_EPS = 1e-12


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not valid; choose one of {', '.join(map(repr, choices))}")


def _divide_by_norm(t: torch.Tensor, norm: torch.Tensor, eps_mode: str) -> torch.Tensor:
    if eps_mode == "add":
        return t / (norm + _ADD_EPS)
    return t / norm.clamp_min(_CLAMP_EPS)


def normalize_bases(bases: torch.Tensor, base_norm: str = "l2", eps_mode: str = "add") -> torch.Tensor:
    """Normalise bases over the channel dimension.

    Args:
        bases: (B, C, K) bases, one column per basis.
        base_norm: "l2" (authors), "layer" (zero mean, unit variance over C, no affine) or "none".
        eps_mode: how "l2" guards against a zero norm, see `EPS_MODES`.

    Returns:
        (B, C, K) normalised bases.
    """
    if base_norm == "l2":
        return _divide_by_norm(bases, bases.norm(dim=1, keepdim=True), eps_mode)
    if base_norm == "layer":
        mean = bases.mean(dim=1, keepdim=True)
        var = bases.var(dim=1, keepdim=True, unbiased=False)
        return (bases - mean) / torch.sqrt(var + 1e-5)
    if base_norm == "none":
        return bases
    _check_choice("base_norm", base_norm, BASE_NORMS)
    raise AssertionError  # unreachable


def em_iterations(
    x: torch.Tensor,
    bases: torch.Tensor,
    num_iters: int,
    temperature: float = 1.0,
    base_norm: str = "l2",
    eps_mode: str = "add",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run `num_iters` rounds of the EM core of METHOD.md §2.

    E-step: z = softmax_K(x^T mu / temperature) (the paper's lambda is 1 / temperature).
    M-step: mu = x z / sum_N z (responsibilities L1-normalised over the pixels), then
    `normalize_bases`. The caller decides whether autograd records this (the authors run it
    under no_grad).

    Args:
        x: (B, C, N) features.
        bases: (B, C, K) or (1, C, K) initial bases mu^(0).
        num_iters: T >= 1.
        temperature: softmax temperature, > 0.
        base_norm: see `normalize_bases`.
        eps_mode: see `EPS_MODES`; also guards the L1 normalisation of z.

    Returns:
        z: (B, N, K) responsibilities of the last E-step (computed from mu^(T-1)).
        mu: (B, C, K) bases after the last M-step, mu^(T).
    """
    if num_iters < 1:
        raise ValueError(f"num_iters={num_iters} is not valid; EM needs at least one iteration (>= 1)")
    mu = bases.expand(x.shape[0], -1, -1)
    inv_temperature = 1.0 / temperature
    z = None
    for _ in range(num_iters):
        logits = torch.bmm(x.transpose(1, 2), mu)  # (B, N, K)
        if inv_temperature != 1.0:
            logits = logits * inv_temperature
        z = F.softmax(logits, dim=2)
        z_l1 = _divide_by_norm(z, z.sum(dim=1, keepdim=True), eps_mode)  # z >= 0: L1 norm = sum
        mu = normalize_bases(torch.bmm(x, z_l1), base_norm, eps_mode)  # (B, C, K)
    return z, mu


def _init_bases(channels: int, num_bases: int, base_norm: str) -> torch.Tensor:
    # Authors: normal(0, sqrt(2 / K)), then normalised over C.
    bases = torch.randn(1, channels, num_bases) * math.sqrt(2.0 / num_bases)
    return normalize_bases(bases, base_norm)


class EMAU(nn.Module):
    """The Expectation-Maximization Attention Unit (METHOD.md §3).

    x -> conv_in 1×1 (bias, frozen) -> EM core -> X~ = Z mu -> ReLU -> conv_out 1×1 (no bias)
    -> BN -> (+ x) -> ReLU.

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

    # The faster formulation of ema_fast.py where it is exact (no autograd through the EM
    # core); set False on an instance (or the class) to run the reference `em_iterations`.
    use_fast_path: bool = True

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
        _check_choice("base_norm", base_norm, BASE_NORMS)
        _check_choice("maintenance", maintenance, MAINTENANCES)
        _check_choice("eps_mode", eps_mode, EPS_MODES)

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
            nn.init.ones_(self.bn_out.weight)
            nn.init.zeros_(self.bn_out.bias)

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, num_bases={self.num_bases}, num_iters={self.num_iters}, "
            f"eval_iters={self.eval_iters}, base_norm={self.base_norm!r}, "
            f"maintenance={self.maintenance!r}, momentum={self.momentum}"
        )

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"EMAU expects input of shape (B, {self.channels}, H, W); got {tuple(x.shape)}")
        identity = x
        b, c, h, w = x.shape
        num_iters = self.num_iters if self.training else self.eval_iters
        conv_out, bn_out = self.conv_out, self.bn_out
        if self._can_use_fast_path(x):
            from .ema_fast import fast_em_attention  # late: ema_fast imports this module

            # Same result, faster kernels, conv_in folded into the EM (see ema_fast.py); without
            # autograd, conv_out(ReLU(X~)) is computed there too.
            fuse_out = self._plain_1x1(self.conv_out) and not (
                torch.is_grad_enabled() and self.conv_out.weight.requires_grad
            )
            out_w, out_b = (self.conv_out.weight, self.conv_out.bias) if fuse_out else (None, None)
            folded = fold_eval_bn(out_w, out_b, self.bn_out) if fuse_out else None
            if folded is not None:  # eval-mode BN folded into that product
                (out_w, out_b), bn_out = folded, nn.Identity()
            attention, mu, recon = fast_em_attention(
                x, self.bases, num_iters, self.temperature, self.base_norm, self.eps_mode,
                self.conv_in.weight, self.conv_in.bias, out_w, out_b,
            )  # fmt: skip
            if fuse_out:
                conv_out = None  # recon is already conv_out(ReLU(X~))
        else:
            feats = self.conv_in(x).flatten(2)  # (B, C, N)
            with torch.set_grad_enabled(self.maintenance == "learned" and torch.is_grad_enabled()):
                z, mu = em_iterations(
                    feats, self.bases, num_iters, self.temperature, self.base_norm, self.eps_mode
                )
                recon = torch.bmm(mu, z.transpose(1, 2)).view(b, c, h, w)  # A_R: X~ = Z mu
            attention = z.transpose(1, 2).reshape(b, self.num_bases, h, w)
        if self.training and self.maintenance == "moving_average":
            self._update_bases(mu)
        # In place where autograd allows it: saves two (B, C, H, W) allocations.
        if conv_out is not None:
            recon = conv_out(F.relu(recon, inplace=not recon.requires_grad))
        out = bn_out(recon)
        out = residual_relu(out, identity)  # `out` is always a fresh tensor of this forward
        if return_attention:
            return out, attention
        return out

    def _can_use_fast_path(self, x: torch.Tensor) -> bool:
        """The fast EM path needs no autograd through the EM core; tracing/ONNX export and
        meta-device FLOP counting see the reference ops (torch.compile sees one opaque op)."""
        if not self.use_fast_path or x.device.type == "meta" or not x.is_floating_point():
            return False
        if self.maintenance == "learned" and torch.is_grad_enabled():
            return False
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return False
        return self._plain_1x1(self.conv_in)

    @staticmethod
    def _plain_1x1(conv: nn.Module) -> bool:
        return (
            type(conv) is nn.Conv2d
            and conv.kernel_size == (1, 1)
            and conv.groups == 1
            and not conv._forward_hooks
        )

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
