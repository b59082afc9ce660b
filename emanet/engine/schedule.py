"""The optimiser (three parameter groups) and the poly learning rate, in two references' conventions.

"authors" (XiaLiPKU/EMANet train.py, `poly_lr_scheduler` and `main`): the step counter starts at 1
and runs to ITER_MAX inclusive; the rate is recomputed when `step % LR_DECAY == 0` (LR_DECAY = 10)
as `LR * (1 - step / ITER_MAX) ** POLY_POWER`, and kept in between; groups get 1×, 1×, 2× of it.
"mmengine" (mmengine PolyParamScheduler, OpenMMLab's `PolyLR(eta_min, power, begin=0, end=max_iters,
by_epoch=False)`): iteration i (from 0) trains with `(lr - eta_min) * (1 - i / T) ** power + eta_min`,
T = end - begin - 1, so the last iteration trains with exactly eta_min.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SCHEDULE_STYLES", "OPTIMIZERS", "param_groups", "poly_lr", "build_optimizer"]

SCHEDULE_STYLES = ("authors", "mmengine")
OPTIMIZERS = ("sgd", "adamw")


def param_groups(
    model: nn.Module, lr: float, weight_decay: float, bias_lr_mult: float = 2.0, decay_all: bool = False
) -> list[dict]:
    """Authors' groups: conv weights (lr, decay); BN weights and any other parameter such as
    learned bases (lr, no decay); all biases, conv and BN (bias_lr_mult × lr, no decay).
    Frozen parameters (the EMAU's conv_in) are left out.

    `decay_all=True` puts `weight_decay` on every group, as OpenMMLab's plain SGD (no
    paramwise_cfg) does; the groups and their lr multipliers stay."""
    weights, no_decay, biases, seen = [], [], [], set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            if name == "bias":
                biases.append(p)
            elif name == "weight" and isinstance(module, nn.modules.conv._ConvNd | nn.Linear):
                weights.append(p)
            else:
                no_decay.append(p)
    other_decay = weight_decay if decay_all else 0.0
    groups = [
        {"params": weights, "lr": lr, "weight_decay": weight_decay, "lr_mult": 1.0, "group": "weights"},
        {"params": no_decay, "lr": lr, "weight_decay": other_decay, "lr_mult": 1.0, "group": "norm"},
        {
            "params": biases,
            "lr": bias_lr_mult * lr,
            "weight_decay": other_decay,
            "lr_mult": bias_lr_mult,
            "group": "bias",
        },
    ]
    return [g for g in groups if g["params"]]


def poly_lr(
    base_lr: float,
    iteration: int,
    max_iters: int,
    power: float = 0.9,
    every: int = 1,
    eta_min: float = 0.0,
    style: str = "authors",
) -> float:
    """The base learning rate that 0-based `iteration` of `max_iters` trains with.

    Args:
        base_lr: the initial rate (a group's rate is this times its `lr_mult`).
        iteration: 0-based index of the iteration about to run.
        max_iters: iterations in the run.
        power: the poly exponent.
        every: "authors" only: the rate is recomputed when the 1-based step is a multiple of it.
        eta_min: "mmengine" only: the floor reached at the last iteration.
        style: "authors" or "mmengine" (module docstring).
    """
    if style == "authors":
        step = iteration + 1  # their counter starts at 1
        last = (step // every) * every  # the last step at which they recomputed the rate
        if last == 0:
            return base_lr  # steps before the first multiple of `every` keep the initial rate
        return base_lr * max(1.0 - min(last, max_iters) / max_iters, 0.0) ** power
    if style == "mmengine":
        total = max(max_iters - 1, 1)  # mmengine: total_iters = end - begin - 1
        frac = max(1.0 - min(iteration, total) / total, 0.0)
        return (base_lr - eta_min) * frac**power + eta_min
    raise ValueError(f"schedule style {style!r} is not valid; choose one of {', '.join(SCHEDULE_STYLES)}")


def build_optimizer(
    model: nn.Module,
    lr: float,
    momentum: float,
    weight_decay: float,
    bias_lr_mult: float,
    decay_all: bool = False,
    name: str = "sgd",
) -> torch.optim.Optimizer:
    """The optimiser over `param_groups` (each group carries its `lr_mult` for the schedule).

    "sgd": SGD with `momentum`, as every reference recipe. "adamw": torch's AdamW (betas 0.9,
    0.999; `weight_decay` decoupled, per group; `momentum` unused): the demo uses it, as on its
    task from scratch it needed far fewer iterations than SGD (README, "The demo")."""
    groups = param_groups(model, lr, weight_decay, bias_lr_mult, decay_all)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ValueError(f"optimizer {name!r} is not valid; choose one of {', '.join(OPTIMIZERS)}")
