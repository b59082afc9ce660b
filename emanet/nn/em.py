"""The EM maths of Expectation-Maximization Attention (Li et al., ICCV 2019, §3.2), as pure
functions: `normalize_bases` and `em_iterations`. A leaf module: torch only.

docs/method.md §2 states every detail followed here (where the eps goes, the order of the
normalisations, which Z and which mu the reconstruction uses).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

__all__ = [
    "em_iterations",
    "normalize_bases",
    "divide_by_norm",
    "check_choice",
    "BASE_NORMS",
    "EPS_MODES",
    "ADD_EPS",
    "CLAMP_EPS",
]

BASE_NORMS = ("l2", "layer", "none")
# "add": x / (eps + ||x||) with eps = 1e-6, as the authors' code.
# "clamp": x / max(||x||, 1e-12), as F.normalize in OpenMMLab's port.
EPS_MODES = ("add", "clamp")
ADD_EPS = 1e-6
CLAMP_EPS = 1e-12


def check_choice(name: str, value: object, choices: Iterable[object]) -> None:
    """One-line error for an option outside its choices."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not valid; choose one of {', '.join(map(repr, choices))}")


def divide_by_norm(t: torch.Tensor, norm: torch.Tensor, eps_mode: str = "add") -> torch.Tensor:
    """t / norm guarded against zero as `eps_mode` says ("add": norm + 1e-6, "clamp": max(norm, 1e-12))."""
    if eps_mode == "add":
        return t / (norm + ADD_EPS)
    return t / norm.clamp_min(CLAMP_EPS)


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
        return divide_by_norm(bases, bases.norm(dim=1, keepdim=True), eps_mode)
    if base_norm == "layer":
        mean = bases.mean(dim=1, keepdim=True)
        var = bases.var(dim=1, keepdim=True, unbiased=False)
        return (bases - mean) / torch.sqrt(var + 1e-5)
    check_choice("base_norm", base_norm, ("l2", "layer", "none"))
    return bases


def em_iterations(
    x: torch.Tensor,
    bases: torch.Tensor,
    num_iters: int,
    temperature: float = 1.0,
    base_norm: str = "l2",
    eps_mode: str = "add",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run `num_iters` rounds of EM.

    E-step: z = softmax_K(x^T mu / temperature) (the paper's lambda is 1 / temperature).
    M-step: mu = x z / sum_N z (responsibilities L1-normalised over the pixels), then
    `normalize_bases`. The caller decides whether autograd records this (every reference runs
    it under no_grad).

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
    z = x.new_empty(0)
    for _ in range(num_iters):
        logits = torch.bmm(x.transpose(1, 2), mu)  # (B, N, K)
        if inv_temperature != 1.0:
            logits = logits * inv_temperature
        z = F.softmax(logits, dim=2)
        z_l1 = divide_by_norm(z, z.sum(dim=1, keepdim=True), eps_mode)  # z >= 0: L1 norm = sum
        mu = normalize_bases(torch.bmm(x, z_l1), base_norm, eps_mode)  # (B, C, K)
    return z, mu
