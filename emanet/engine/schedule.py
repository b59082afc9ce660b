"""The authors' optimiser: three parameter groups and a poly learning rate."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["param_groups", "poly_lr", "build_optimizer"]


def param_groups(model: nn.Module, lr: float, weight_decay: float, bias_lr_mult: float = 2.0) -> list[dict]:
    """Authors' groups: conv weights (lr, decay); BN weights and any other parameter such as
    learned bases (lr, no decay); all biases, conv and BN (bias_lr_mult × lr, no decay).
    Frozen parameters (the EMAU's conv_in) are left out."""
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
    groups = [
        {"params": weights, "lr": lr, "weight_decay": weight_decay, "lr_mult": 1.0, "group": "weights"},
        {"params": no_decay, "lr": lr, "weight_decay": 0.0, "lr_mult": 1.0, "group": "norm"},
        {
            "params": biases,
            "lr": bias_lr_mult * lr,
            "weight_decay": 0.0,
            "lr_mult": bias_lr_mult,
            "group": "bias",
        },
    ]
    return [g for g in groups if g["params"]]


def poly_lr(base_lr: float, iteration: int, max_iters: int, power: float = 0.9, every: int = 1) -> float:
    """base_lr · (1 − it / max_iters)^power, with `it` held for `every` iterations."""
    it = (iteration // every) * every
    return base_lr * max(1.0 - it / max_iters, 0.0) ** power


def build_optimizer(model: nn.Module, lr: float, momentum: float, weight_decay: float, bias_lr_mult: float):
    return torch.optim.SGD(param_groups(model, lr, weight_decay, bias_lr_mult), lr=lr, momentum=momentum)
