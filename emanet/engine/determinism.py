"""`train.deterministic=true`: the switches that make a CUDA run repeat itself bit for bit.

    saved = set_deterministic(True)    # before any CUDA work
    ...
    restore_determinism(saved)         # the process-wide switches as they were

What it turns on: `torch.use_deterministic_algorithms(True, warn_only=True)`, cuDNN benchmark off
(no timing-based kernel choice), `cudnn.deterministic`, and `CUBLAS_WORKSPACE_CONFIG=:4096:8`
(cuBLAS reads it when its first handle is made, so it is set before any CUDA work unless the
user set it already).

Why `warn_only=True`: on CUDA some ops this model trains with have no deterministic kernel
(bilinear upsampling's backward; bincount, which the confusion matrix uses); the strict mode
would stop every EMANet run at its first backward. torch instead warns once per such op, naming
it, and everything else runs its deterministic kernel. The cost: slower convolutions (no
benchmark search, deterministic algorithms only) and, for the named ops, run-to-run differences
at float rounding. On CPU, training is deterministic already; the switches change nothing there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

__all__ = ["DeterminismState", "set_deterministic", "restore_determinism", "CUBLAS_WORKSPACE"]

CUBLAS_WORKSPACE = ":4096:8"


@dataclass(frozen=True)
class DeterminismState:
    """The process-wide switches before `set_deterministic` changed them."""

    algorithms: bool
    warn_only: bool
    cudnn_benchmark: bool
    cudnn_deterministic: bool
    cublas_workspace: str | None


def set_deterministic(enabled: bool) -> DeterminismState:
    """Turn the deterministic switches on (`enabled`), or leave everything as it is.

    Returns:
        the previous state, for `restore_determinism`.
    """
    saved = DeterminismState(
        algorithms=torch.are_deterministic_algorithms_enabled(),
        warn_only=torch.is_deterministic_algorithms_warn_only_enabled(),
        cudnn_benchmark=torch.backends.cudnn.benchmark,
        cudnn_deterministic=torch.backends.cudnn.deterministic,
        cublas_workspace=os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    )
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    return saved


def restore_determinism(saved: DeterminismState) -> None:
    """Put the switches back as `saved` holds them."""
    torch.use_deterministic_algorithms(saved.algorithms, warn_only=saved.warn_only)
    torch.backends.cudnn.benchmark = saved.cudnn_benchmark
    torch.backends.cudnn.deterministic = saved.cudnn_deterministic
    if saved.cublas_workspace is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    else:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = saved.cublas_workspace
