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
from .storage import CheckpointWriteError, check_free_space, write_error_cause

__all__ = ["save_checkpoint", "save_best", "load_checkpoint", "latest_checkpoint", "list_checkpoints"]

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
    """Write `directory/iter_{iteration:07d}.pt` atomically, then drop all but the last `keep`.

    Raises:
        CheckpointWriteError: not enough free space for a checkpoint the size of the last one,
            or the write failed; the message names the file and the cause, the partial file is
            removed and every earlier checkpoint is kept.
    """
    directory = Path(directory)
    path = directory / f"iter_{iteration:07d}.pt"
    directory.mkdir(parents=True, exist_ok=True)
    earlier = list_checkpoints(directory)
    _write(state, path, earlier[-1] if earlier else None)
    if keep > 0:
        for old in list_checkpoints(directory)[:-keep]:
            old.unlink(missing_ok=True)
    return path


def save_best(state: dict[str, Any], path: str | Path) -> Path:
    """Write the best checkpoint `path` (RUN/best.pt) atomically, replacing the previous best.

    It lives outside checkpoints/ and is not named iter_*.pt, so the keep-last-k pruning and
    `latest_checkpoint` never see it. Raises `CheckpointWriteError` as `save_checkpoint`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(state, path, path if path.is_file() else None)
    return path


def _write(state: dict[str, Any], path: Path, earlier: Path | None) -> None:
    """torch.save `state` to `path` atomically; `earlier` (kept on failure) sizes the space check."""
    directory = path.parent
    if earlier is not None:
        check_free_space(directory, earlier.stat().st_size, f"checkpoint {path}")
    try:
        # through a Python file object, so that a full disk surfaces as OSError(ENOSPC)
        with atomic_write(path) as tmp, open(tmp, "wb") as f:
            torch.save(state, f)
    except (OSError, RuntimeError) as e:
        kept = f"the earlier checkpoint {earlier.name} is intact" if earlier else "no earlier checkpoint"
        raise CheckpointWriteError(
            f"could not write checkpoint {path}: {write_error_cause(e, directory)}; the partial file "
            f"was removed and {kept}; free space or fix the directory, then resume with --resume"
        ) from e


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
