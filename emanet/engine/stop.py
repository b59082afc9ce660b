"""Stopping on request: SIGTERM (Slurm, Kubernetes before preemption) and SIGINT (Ctrl-C).

    with StopRequest() as stop:
        for it in ...:
            step()
            if stop.agreed():        # all ranks, every step
                save_checkpoint(); raise TrainingStopped(stop.signum, ...)

The first signal only sets a flag: the step in flight finishes and a checkpoint is written.
A second signal exits at once (code 128 + signum; a partial checkpoint file is cleaned up at
the next start). Under torchrun every rank receives the signal from the agent, and the flag is
all-reduced each step so all ranks stop after the same iteration.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import torch
import torch.distributed as dist

from .distributed import is_dist, world_size

__all__ = ["StopRequest", "TrainingStopped", "ignore_stop_signals", "STOP_SIGNALS"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingStopped(Exception):
    """Training stopped on a signal after writing a checkpoint.

    Attributes:
        signum: the signal; the conventional exit code is 128 + signum.
    """

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def ignore_stop_signals(worker_id: int = 0) -> None:
    """DataLoader `worker_init_fn`: workers ignore SIGTERM/SIGINT sent to the whole process
    group; the main process finishes its step, then shuts them down."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


class StopRequest:
    """Catches SIGTERM and SIGINT while active (main thread only; elsewhere it never fires)."""

    def __init__(self) -> None:
        self.signum = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.signum:
            print(f"\n{name} again: exiting at once, without a checkpoint", file=sys.stderr, flush=True)
            os._exit(128 + signum)
        self.signum = signum
        print(
            f"\n{name} received: finishing this iteration and writing a checkpoint "
            "(send it again to exit at once)",
            file=sys.stderr,
            flush=True,
        )

    def agreed(self) -> int:
        """The signal that any rank received (0: none); the same answer on every rank."""
        if not (is_dist() and world_size() > 1):
            return self.signum
        flag = torch.tensor([self.signum], dtype=torch.int64)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item())


def stopped_message(signum: int, done: int, iters: int, checkpoint: Path, run: Path) -> str:
    """The line a stopped run ends with: the signal, the iteration, the checkpoint, how to resume."""
    launcher = "emanet train"
    if is_dist() and world_size() > 1:
        nproc = os.environ.get("LOCAL_WORLD_SIZE", str(world_size()))
        launcher = f"torchrun --nproc-per-node {nproc} -m emanet train"
    name = signal.Signals(signum).name
    return (
        f"{name}: stopped after iteration {done}/{iters}, checkpoint {checkpoint}; "
        f"resume with: {launcher} {run / 'config.yaml'} --resume"
    )
