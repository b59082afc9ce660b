"""The best evaluation so far: when to write RUN/best.pt, and early stopping.

    best = BestTracker("mIoU", patience=5, min_delta=0.0)
    if best.update(metrics, iteration):   # a new best: write best.pt
        ...
    if best.should_stop: ...              # `patience` evaluations in a row without one

An evaluation is a new best when its metric exceeds the best so far by more than `min_delta`
(the first finite value always is); best.pt and the early-stopping count use that one notion.
Its state travels in every training checkpoint (key "best"), so a resumed run counts on.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

__all__ = ["BestTracker"]


class BestTracker:
    """Tracks `metric` ("mIoU" or "ema_mIoU") over the evaluations of one run.

    Args:
        metric: the key of the evaluation's metrics to maximise.
        patience: stop after this many evaluations in a row without a new best; 0: never.
        min_delta: how much a value must exceed the best to count as a new best.

    Attributes:
        value, iteration: the best value and its iteration (None before the first).
        stale: evaluations since the last new best.
        evaluated: the iteration of the last evaluation (-1: none yet).
    """

    def __init__(self, metric: str = "mIoU", patience: int = 0, min_delta: float = 0.0) -> None:
        self.metric = metric
        self.patience = patience
        self.min_delta = min_delta
        self.value: float | None = None
        self.iteration: int | None = None
        self.stale = 0
        self.evaluated = -1

    def update(self, metrics: dict[str, Any], iteration: int) -> bool:
        """Count the evaluation of `iteration`; True when it is a new best."""
        value = float(metrics[self.metric])
        self.evaluated = iteration
        if math.isfinite(value) and (self.value is None or value > self.value + self.min_delta):
            self.value, self.iteration, self.stale = value, iteration, 0
            return True
        self.stale += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.stale >= self.patience

    def state_dict(self) -> dict[str, Any]:
        """{"metric", "value", "iteration", "stale", "evaluated"}; best.pt's "best" entry."""
        return {
            "metric": self.metric,
            "value": self.value,
            "iteration": self.iteration,
            "stale": self.stale,
            "evaluated": self.evaluated,
        }

    def load_state_dict(self, state: dict[str, Any] | None, iteration: int) -> None:
        """Continue from a checkpoint of `iteration` holding `state` (None: a checkpoint from
        before best.pt existed, whose evaluations were all done)."""
        if state is None:
            self.evaluated = iteration
            return
        self.evaluated = int(state["evaluated"])
        if state.get("metric") != self.metric:
            return  # it tracked another metric: the best starts over with this one
        self.value, self.iteration = state["value"], state["iteration"]
        self.stale = int(state["stale"])

    def stop_message(self, done: int, iters: int, best_path: Path) -> str:
        """The line an early-stopped run ends with: why, and where the best weights are."""
        value = "none" if self.value is None else f"{self.value:.4f}"
        return (
            f"early stop after iteration {done}/{iters}: {self.stale} evaluations without a new best "
            f"{self.metric} (train.early_stop_patience={self.patience}, min_delta {self.min_delta}); "
            f"best {self.metric} {value} at iteration {self.iteration} in {best_path}"
        )
