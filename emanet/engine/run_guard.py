"""What a run does around its loop so that it survives: one run per directory (agreed by all
ranks), leftovers of killed writes removed, torchrun restarts resumed (`find_resume`), a lost
rank named, and a NaN/Inf loss stopped on every rank before the update (`stop_if_diverged`).
"""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from .checkpoint import latest_checkpoint, load_checkpoint
from .distributed import DistInfo, all_reduce_sum
from .run_lock import RunLock, pid_alive
from .storage import mib, remove_stale_temporaries

__all__ = ["lock_run_dir", "elastic_restart", "RankLost", "lost_rank_message", "announce_rank"]

_STORE_KEY = "emanet/rank_pid/{}"


class RankLost(RuntimeError):
    """Another rank of the job died; this rank stops instead of waiting for it."""


def lock_run_dir(path: Path, checkpoints: Path, info: DistInfo) -> tuple[RunLock | None, str]:
    """Lock `path` on the main rank, then remove stale temporary checkpoint files.

    Every rank learns whether the lock was taken (so none waits for a rank that gave up).

    Returns:
        (the lock on the main rank, else None; a note on removed leftovers, or "").
    """
    lock, error = None, None
    if info.is_main:
        lock = RunLock(path)
        try:
            lock.acquire()
        except RuntimeError as e:
            error = e
    failed = all_reduce_sum(torch.tensor([1.0 if error else 0.0])).item() > 0
    if error is not None:
        raise error
    if failed:
        raise RuntimeError(f"rank 0 could not lock {path}; see its message")
    note = ""
    if info.is_main:
        count, freed = remove_stale_temporaries(checkpoints)
        if count:
            note = f"removed {count} temporary file(s) of interrupted checkpoint writes ({mib(freed)})"
    return lock, note


def elastic_restart() -> int:
    """How many times torchrun has restarted this job (0: first attempt or no torchrun)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)


def _store():
    try:
        return dist.distributed_c10d._get_default_store()
    except (RuntimeError, AttributeError, ValueError):
        return None


def announce_rank(info: DistInfo) -> None:
    """Record this rank's host and pid in the process group's store (for `lost_rank_message`)."""
    store = _store() if info.world_size > 1 else None
    if store is not None:
        store.set(_STORE_KEY.format(info.rank), f"{socket.gethostname()} {os.getpid()}")


def lost_rank_message(info: DistInfo, iteration: int, error: BaseException, last: Path | None) -> str:
    """One line: which rank(s) died (when it can be told), where, and how to go on."""
    store, lost = _store(), []
    host = socket.gethostname()
    for r in range(info.world_size):
        if r == info.rank or store is None:
            continue
        try:
            other_host, pid = store.get(_STORE_KEY.format(r)).decode().split()
        except Exception:  # the store lives in rank 0's agent; it may be gone too
            continue
        if other_host == host and not pid_alive(int(pid)):
            lost.append(f"rank {r} (pid {pid})")
    who = ", ".join(lost) if lost else "another rank"
    first = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
    kept = f"the last checkpoint is {last}" if last else "no checkpoint was written yet"
    return (
        f"rank {info.rank}: {who} died during iteration {iteration + 1} ({first}); stopping instead of "
        f"waiting. {kept}: rerun with --resume, or run under torchrun --max-restarts N to resume by itself"
    )


def find_resume(resume: bool | str, ckpt_dir: Path) -> tuple[dict[str, Any] | None, Path | None]:
    """The checkpoint to continue from and its path; (None, None) for a new run.

    `resume`: False (new run, unless torchrun restarted the job after a rank died), True (the
    latest iter_*.pt of `ckpt_dir`) or a checkpoint's path (e.g. RUN/best.pt).
    """
    if not resume and elastic_restart() and latest_checkpoint(ckpt_dir) is not None:
        # torchrun --max-restarts restarted the job after a rank died: continue it
        resume = True
    if not resume:
        return None, None
    path = latest_checkpoint(ckpt_dir) if resume is True else Path(resume)
    if path is None:
        if elastic_restart():
            return None, None  # restarted before the first checkpoint: start over
        raise FileNotFoundError(f"--resume: no checkpoint iter_*.pt in {ckpt_dir}; start without --resume")
    return load_checkpoint(path), path


class TrainingDiverged(RuntimeError):
    """The loss became NaN or Inf; the last good checkpoint is left as it was."""


def stop_if_diverged(loss: float, aux_loss: float, it: int, lr: float, ckpt_dir: Path) -> None:
    """Raise `TrainingDiverged` on every rank when any rank's loss of iteration `it` is not finite."""
    # every rank stops together: one rank's NaN is all-reduced to all
    bad = all_reduce_sum(torch.tensor([0.0 if math.isfinite(loss + aux_loss) else 1.0]))
    if bad.item() > 0:
        last = latest_checkpoint(ckpt_dir)
        kept = f"the last good checkpoint {last} is intact" if last else "no checkpoint was written yet"
        raise TrainingDiverged(
            f"loss became {loss} at iteration {it + 1} (lr {lr:.3g}); stopped before the update, "
            f"{kept}. Lower train.lr, use train.amp=none, or check the data"
        )
