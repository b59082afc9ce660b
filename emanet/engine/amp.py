"""Mixed precision: the one place that turns the `train.amp` setting into an autocast context."""

from __future__ import annotations

import contextlib

import torch

__all__ = ["autocast_context"]


def autocast_context(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """torch.autocast for "bf16"/"fp16", a null context for "none"."""
    if amp == "none":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    return torch.autocast(device.type, dtype=dtype)
