"""Mixed precision: the one place that turns the `train.amp` setting into an autocast context."""

from __future__ import annotations

import contextlib

import torch

from ..capability import amp_dtype, resolve_amp

__all__ = ["autocast_context"]


def autocast_context(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """torch.autocast for "bf16"/"fp16", a null context for "none"; "auto" as
    `emanet.capability.resolve_amp` decides for `device` (bf16 only where it is native)."""
    dtype = amp_dtype(resolve_amp(amp, device))
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
