"""Training checkpoints: plain dicts saved atomically with torch.save, loaded with
weights_only=True; the last k are kept."""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..fileio import atomic_write

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
    """Load a checkpoint safely; errors name the file and what to do."""
    path = Path(path)
    if path.is_dir():
        latest = latest_checkpoint(path)
        if latest is None:
            raise FileNotFoundError(f"no checkpoint iter_*.pt in {path}")
        path = latest
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" in str(e).lower() and zipfile.is_zipfile(path):
            first_line = str(e).strip().splitlines()[0]
            raise ValueError(
                f"{path} needs arbitrary code to unpickle and was refused (weights_only=True): "
                f"{first_line}. Only load files you trust; re-save the state dict as plain tensors"
            ) from None
        raise ValueError(f"{path} is not a PyTorch checkpoint, or it is corrupt ({e})") from None
    except Exception as e:  # truncated zip, text file, ...: torch raises many kinds here
        raise ValueError(
            f"checkpoint {path} could not be read ({type(e).__name__}: {e}); the file is truncated, "
            "corrupt or not a PyTorch checkpoint"
        ) from None
