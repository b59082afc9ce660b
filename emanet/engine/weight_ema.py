"""An exponential moving average of the model's weights, as timm's ModelEmaV2/V3.

    ema = WeightEMA(model, decay=0.999)
    optimizer.step(); ema.update(model)      # after every optimizer step
    evaluate(ema.module, ...)                # a full model, always in eval mode

After each step, for every floating-point parameter p:
    ema_p <- decay * ema_p + (1 - decay) * p
Buffers (BN running mean/var, the EM bases, counters) are copied, not averaged (timm V3's
`exclude_buffers`; V2 averages them too): they are already running averages over the training
batches, and averaging them again would make them lag the weights they normalise.
Under DDP every rank holds identical parameters after the step, so every rank computes the same
average without communication; only the main process writes it.
"""

from __future__ import annotations

import copy
from typing import Any, Generic, TypeVar

import torch
from torch import nn

__all__ = ["WeightEMA"]

M = TypeVar("M", bound=nn.Module)


class WeightEMA(Generic[M]):
    """The moving average of `model`'s weights, starting from its current weights.

    Args:
        model: the trained model (not its DDP wrapper); copied once, never modified.
        decay: the weight of the old average per step, in (0, 1); 0.999 averages over
            roughly the last 1 / (1 - decay) = 1000 steps.
    """

    def __init__(self, model: M, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay {decay} must be in (0, 1)")
        self.decay = decay
        self.module: M = copy.deepcopy(model).eval().requires_grad_(False)

    def _pairs(self, model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        ema: list[torch.Tensor] = []
        raw: list[torch.Tensor] = []
        for e, p in zip(self.module.parameters(), model.parameters(), strict=True):
            if e.is_floating_point():
                ema.append(e)
                raw.append(p.detach())
        return ema, raw

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One step: average the float parameters, copy the buffers."""
        ema, raw = self._pairs(model)
        if ema:
            torch._foreach_mul_(ema, self.decay)  # as torch's optimizers: one kernel per list
            torch._foreach_add_(ema, raw, alpha=1.0 - self.decay)
        for e, b in zip(self.module.buffers(), model.buffers(), strict=True):
            e.copy_(b)

    @torch.no_grad()
    def reset(self, model: nn.Module) -> None:
        """Restart the average at `model`'s current weights."""
        self.module.load_state_dict(model.state_dict())

    def state_dict(self) -> dict[str, Any]:
        """The averaged model's state dict (what the training checkpoint stores as "ema")."""
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state)
