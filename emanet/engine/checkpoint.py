"""Training checkpoints: plain dicts saved atomically with torch.save, loaded with
weights_only=True through the one safe reader (`models.weights.read_checkpoint`); the last k
are kept."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from ..fileio import atomic_write
from ..models.weights import read_checkpoint

__all__ = ["save_checkpoint", "load_checkpoint", "latest_checkpoint", "list_checkpoints"]

_PATTERN = re.compile(r"iter_(\d+)\.pt$")


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Checkpoints `iter_XXXXXXX.pt` in `directory`, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _PATTERN.search(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(directory: str | Path) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1] if found else None


def save_checkpoint(state: dict[str, Any], directory: str | Path, iteration: int, keep: int = 3) -> Path:
    """Write `directory/iter_{iteration:07d}.pt` atomically, then drop all but the last `keep`."""
    path = Path(directory) / f"iter_{iteration:07d}.pt"
    with atomic_write(path) as tmp:
        torch.save(state, tmp)
    if keep > 0:
        for old in list_checkpoints(directory)[:-keep]:
            old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file, or the latest `iter_*.pt` of a directory, safely.

    Raises:
        FileNotFoundError: no such file, or no checkpoint in the directory.
        ValueError: the file needs code to unpickle (refused), or is truncated or corrupt.
    """
    path = Path(path)
    if path.is_dir():
        latest = latest_checkpoint(path)
        if latest is None:
            raise FileNotFoundError(f"no checkpoint iter_*.pt in {path}")
        path = latest
    obj, _ = read_checkpoint(path)
    return dict(obj)
