"""The trainer: the authors' recipe on one CPU or many GPUs (torchrun + DDP + SyncBN).

    trainer = Trainer(load_config("demo"), resume=False)
    result = trainer.fit()

Like detectron2's SimpleTrainer: the pieces come from `builders`, the files go through
`RunDir`, and `fit()` is one loop: next batch, lr, step, log, checkpoint, evaluate.
Run directory (`cfg.output_dir`): see `RunDir`, plus checkpoints/iter_*.pt (atomic, last k
kept), best.pt (the best evaluation's full state, see `BestTracker`), samples/*.npz, model/
and, with `train.ema_decay`, model_ema/ (see `WeightEMA`). `resume=True` continues
bit-identically from the latest checkpoint: model (EM bases included), optimizer, iteration,
RNG state, data order, the weight average and the best-so-far; `resume=RUN/best.pt` from the best.

Surviving (issue 18): `run.lock` keeps a second run out of the directory; SIGTERM/SIGINT finish
the step, write a checkpoint and raise `TrainingStopped` (exit 128 + signum); a failed write
names the file and the cause; a torchrun restart resumes by itself; a dead rank is named.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from .._version import __version__
from ..capability import resolve_amp
from ..data.preflight import preflight, unlabelled_split_message
from .amp import autocast_context
from .best import BestTracker
from .builders import (
    build_model,
    build_train_loader,
    build_train_set,
    build_val_loader,
    micro_batch_size,
    resolve_device,
    wrap_ddp,
)
from .checkpoint import latest_checkpoint, save_best, save_checkpoint
from .config import Config, config_to_dict
from .determinism import DeterminismState, restore_determinism, set_deterministic
from .distributed import init_distributed, is_dist
from .evaluate import EvalSettings, evaluate
from .losses import build_loss
from .resume_check import check_resumable
from .run_dir import RunDir
from .run_guard import (
    RankLost,
    TrainingDiverged,
    announce_rank,
    elastic_restart,
    find_resume,
    lock_run_dir,
    lost_rank_message,
    stop_if_diverged,
)
from .schedule import build_optimizer, poly_lr
from .stop import StopRequest, TrainingStopped, stopped_message
from .weight_ema import WeightEMA

__all__ = ["Trainer", "TrainingDiverged", "TrainingStopped", "RankLost"]

_SUMMARY = ("mIoU", "pixel_acc", "mean_acc")  # the metrics logged at each evaluation


class Trainer:
    """Trains `cfg.model` on `cfg.data` with `cfg.train`, evaluates with `cfg.eval`.

    Args:
        cfg: the run's configuration.
        resume: False for a new run, True for the latest checkpoint of `cfg.output_dir`, or
            the path of a checkpoint to continue from.
        progress: show progress bars (main process only).
    """

    def __init__(self, cfg: Config, resume: bool | str = False, progress: bool = True) -> None:
        self.cfg = cfg
        t = cfg.train
        self.device = resolve_device(t.device)
        self.dist = init_distributed(self.device)
        self.is_main = self.dist.is_main
        self.progress = progress and self.is_main
        self.run_dir = RunDir(cfg.output_dir, enabled=self.is_main)
        self.ckpt_dir = self.run_dir.checkpoints
        # first, before any work: a second live run in this directory is refused here
        self.lock, leftovers = lock_run_dir(self.run_dir.path, self.ckpt_dir, self.dist)
        self._determinism: DeterminismState | None = None  # the switches to restore at close
        if leftovers:
            self.run_dir.say(leftovers)
        try:
            self._build(cfg, resume)
        except BaseException:
            self.close()
            raise

    def _build(self, cfg: Config, resume: bool | str) -> None:
        t = cfg.train
        self._determinism = set_deterministic(t.deterministic)  # before any CUDA work
        announce_rank(self.dist)
        self.micro_batch = micro_batch_size(cfg, self.dist.world_size)
        torch.manual_seed(t.seed)
        preflight(cfg)  # both splits and a spread of masks: bad data fails here, not after training

        self.train_set = build_train_set(cfg)
        self.num_classes = self.train_set.num_classes
        self.class_names = list(self.train_set.CLASSES)
        self.palette = [list(map(int, c)) for c in self.train_set.PALETTE]
        self.eval_settings = EvalSettings.from_config(
            cfg, self.num_classes, self.class_names, progress=self.progress
        )

        self.model = build_model(cfg, self.num_classes, self.device)
        self.optimizer = build_optimizer(
            self.model, t.lr, t.momentum, t.weight_decay, t.bias_lr_mult, t.decay_all, t.optimizer
        )
        self.loss_fn = build_loss(cfg, self.train_set)
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=resolve_amp(t.amp, self.device) == "fp16"
        )
        self.start_iter = 0
        self.time_offset = 0.0  # training seconds before this process (a resumed run)
        self._clock_start: float | None = None
        self.skipped: list[tuple[str, str]] = []
        self.best = BestTracker(t.best_metric, t.early_stop_patience, t.early_stop_min_delta)
        self.ema = WeightEMA(self.model, t.ema_decay) if t.ema_decay else None
        checkpoint, path = find_resume(resume, self.ckpt_dir)
        earlier = latest_checkpoint(self.ckpt_dir)
        if checkpoint is not None and path is not None:
            self._load_state(checkpoint, path)
        elif earlier is not None:
            raise ValueError(
                f"{self.run_dir.path} already holds checkpoints of an earlier run "
                f"({earlier.name}); pass --resume to continue it, or choose another output_dir"
            )
        self.ddp = wrap_ddp(self.model, self.device, self.dist.world_size)
        if self.ema is not None and checkpoint is None:
            self.ema.reset(self.model)  # the weights DDP broadcast from rank 0

    def close(self) -> None:
        """Release the run directory (also done when `fit` ends, however it ends)."""
        if self.lock is not None:
            self.lock.release()
        if self._determinism is not None:
            restore_determinism(self._determinism)
            self._determinism = None

    # -- the loop ------------------------------------------------------------------------------
    def fit(self, stop_at: int | None = None) -> dict[str, Any]:
        """Train to `train.iters`, evaluate, return the metrics (see `evaluate`; with an EMA
        also "ema_mIoU", "ema_pixel_acc", "ema_mean_acc"; after early stopping "stopped_early").

        `stop_at` ends the run after that iteration without evaluating, as an interruption
        would (the checkpoints written so far stay); `resume=True` continues it.

        Raises:
            TrainingStopped: SIGTERM or SIGINT; the checkpoint of the last finished iteration
                was written.
            RankLost: another rank died (under torchrun without restarts).
        """
        try:
            with StopRequest() as stop:
                return self._fit(stop, stop_at)
        finally:
            self.close()

    def _fit(self, stop: StopRequest, stop_at: int | None) -> dict[str, Any]:
        cfg, t = self.cfg, self.cfg.train
        self.run_dir.open(cfg, self.device, self.dist.world_size, self.start_iter)
        loader = build_train_loader(
            self.train_set, cfg, self.micro_batch, self.dist.rank, self.dist.world_size, self.start_iter
        )
        batches = iter(loader)
        self.model.train()
        start_time = time.perf_counter() - self.time_offset  # `time` continues over resumes
        self._clock_start = start_time
        if self._eval_due(self.start_iter) and self.best.evaluated < self.start_iter:
            self._evaluate(self.start_iter)  # due when the run was stopped, and skipped then
        bar = tqdm(
            total=t.iters,
            initial=self.start_iter,
            desc=f"train {cfg.model.name}",
            disable=not self.progress,
            dynamic_ncols=True,
        )
        for it in range(self.start_iter, t.iters):
            lr = self._set_lr(it)
            try:
                loss, aux_loss = self._step(batches)
                stop_if_diverged(loss, aux_loss, it, lr, self.ckpt_dir)
            except RuntimeError as e:
                if not is_dist() or isinstance(e, TrainingDiverged):
                    raise
                raise RankLost(lost_rank_message(self.dist, it, e, latest_checkpoint(self.ckpt_dir))) from e
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.ema is not None:
                self.ema.update(self.model)  # identical on every rank, as the parameters are
            done = it + 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
            if done % t.log_every == 0 or done == t.iters:
                elapsed = self._elapsed()
                record = {"type": "train", "iter": done, "loss": loss, "lr": lr, "time": elapsed}
                if aux_loss:
                    record["aux_loss"] = aux_loss
                self.run_dir.log(record)
                aux_text = f"  aux {aux_loss:.4f}" if aux_loss else ""
                self.run_dir.say(
                    f"iter {done}/{t.iters}  loss {loss:.4f}{aux_text}  lr {lr:.3e}  time {elapsed:.1f}s"
                )
            signum = stop.agreed()  # every rank, every iteration: all stop after the same one
            # evaluate before saving: the checkpoint then holds this evaluation's best-so-far
            result = self._evaluate(done) if (not signum and self._eval_due(done)) else None
            early = result is not None and self.best.should_stop
            saved = early or (t.checkpoint_every and (done % t.checkpoint_every == 0 or done == t.iters))
            if saved:
                self._save(done)
            if signum:
                bar.close()
                raise TrainingStopped(signum, self._stopped(done, signum, bool(saved)))
            if early and result is not None:
                bar.close()
                self.run_dir.say(self.best.stop_message(done, t.iters, self.run_dir.path / "best.pt"))
                return self._finish({**result, "stopped_early": done}, start_time)
            if stop_at is not None and done >= stop_at:
                bar.close()
                return {"stopped_at": done}
        bar.close()
        return self._finish(self._evaluate(t.iters), start_time)

    def _finish(self, result: dict[str, Any], start_time: float) -> dict[str, Any]:
        """eval.json from the last evaluation, the exported model(s), skipped.txt."""
        result["train_time"] = time.perf_counter() - start_time
        result["skipped"] = [list(s) for s in self.skipped]
        self.run_dir.write_eval(result, self.palette)
        if self.is_main:  # the run as a model: emanet.from_pretrained(run_dir) / Predictor(run_dir)
            self.model.save_pretrained(self.run_dir.path / "model", self.class_names, self.palette)
            if self.ema is not None:  # from_pretrained(run_dir / "model_ema")
                self.ema.module.save_pretrained(
                    self.run_dir.path / "model_ema", self.class_names, self.palette
                )
        skipped_file = self.run_dir.write_skipped(self.skipped)
        if skipped_file is not None:
            print(f"{len(self.skipped)} bad samples were skipped; the list is in {skipped_file}")
        self.run_dir.close()
        return result

    def _elapsed(self) -> float:
        """Training seconds so far, those of the runs this one resumed included."""
        return self.time_offset if self._clock_start is None else time.perf_counter() - self._clock_start

    def _save(self, done: int) -> None:
        if self.is_main:
            save_checkpoint(self.state_dict(done), self.ckpt_dir, done, keep=self.cfg.train.keep_checkpoints)

    def _stopped(self, done: int, signum: int, saved: bool) -> str:
        """Write the checkpoint of iteration `done` (unless just written); the resume line."""
        if not saved:
            self._save(done)
        checkpoint = self.ckpt_dir / f"iter_{done:07d}.pt"
        message = stopped_message(signum, done, self.cfg.train.iters, checkpoint, self.run_dir.path)
        self.run_dir.say(message)
        return message

    def _set_lr(self, iteration: int) -> float:
        t = self.cfg.train
        # the same value on every rank, from the iteration alone (resume-safe)
        lr = poly_lr(t.lr, iteration, t.iters, t.poly_power, t.lr_update_every, t.poly_eta_min, t.lr_schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_mult", 1.0)
        return lr

    def _next_batch(self, batches: Iterator[dict[str, Any]]) -> dict[str, Any]:
        """The next batch holding at least one image; skipped samples are recorded."""
        while True:
            batch = next(batches)
            for path, message in batch.get("skipped", []):
                self.skipped.append((path, message))
                if self.is_main:
                    tqdm.write(f"skipped {path}: {message}")
            if batch.get("image") is not None:
                return batch

    def _step(self, batches: Iterator[dict[str, Any]]) -> tuple[float, float]:
        """Forward and backward over `train.accumulate` micro-batches; returns the mean loss and
        aux loss. The optimizer step is left to the caller (after the divergence check)."""
        t = self.cfg.train
        aux = self.model.aux_head is not None and t.aux_weight > 0
        self.optimizer.zero_grad(set_to_none=True)
        total, total_aux = 0.0, 0.0
        for micro in range(t.accumulate):
            batch = self._next_batch(batches)
            image = batch["image"].to(self.device, non_blocking=True)  # (B, 3, H, W)
            label = batch["label"].to(self.device, non_blocking=True)  # (B, H, W)
            last = micro == t.accumulate - 1
            # no gradient all-reduce until the last micro-batch
            sync = (
                self.ddp.no_sync()
                if (not last and isinstance(self.ddp, DistributedDataParallel))
                else contextlib.nullcontext()
            )
            with sync:
                with autocast_context(self.device, t.amp):
                    out = self.ddp(image, return_aux=True) if aux else self.ddp(image)
                logits = out["out"] if aux else out
                losses = self.loss_fn(logits, label, out["aux"] if aux else None)
                self.scaler.scale(losses.total / t.accumulate).backward()
            total += float(losses.main.detach()) / t.accumulate
            total_aux += float(losses.aux.detach()) / t.accumulate
        return total, total_aux

    def _eval_due(self, done: int) -> bool:
        """Whether a periodic evaluation follows iteration `done` (the final one comes after)."""
        every = self.cfg.train.eval_every
        return bool(every) and done % every == 0 and 0 < done < self.cfg.train.iters

    def _evaluate(self, iteration: int) -> dict[str, Any]:
        """Evaluate the weights (and their average), log, write best.pt on a new best."""
        # The validation loader draws from the global RNG; fork it so that the run stays
        # bit-identical to one that does not evaluate (or resumes after this evaluation).
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            _, loader = build_val_loader(self.cfg, self.dist.rank, self.dist.world_size)
            sample_dir = self.run_dir.samples if self.is_main else None  # the latest evaluation's
            # the model, not the DDP wrapper: evaluation syncs nothing but the confusion matrix
            result = evaluate(self.model, loader, self.eval_settings, self.device, sample_dir)
            if self.ema is not None:
                averaged = evaluate(self.ema.module, loader, self.eval_settings, self.device)
                result.update({f"ema_{k}": averaged[k] for k in _SUMMARY})
        unlabelled = unlabelled_split_message(result, self.cfg.data.val_split)
        if unlabelled and self.is_main:
            tqdm.write(f"warning: {unlabelled}")
        metrics = {k: result[k] for k in result if k.removeprefix("ema_") in _SUMMARY}
        self.run_dir.log({"type": "eval", "iter": iteration, **metrics})
        if self.best.update(result, iteration) and self.is_main:
            path = save_best(self.state_dict(iteration), self.run_dir.path / "best.pt")
            self.run_dir.say(
                f"best {self.best.metric} {self.best.value:.4f} at iteration {iteration}: {path}"
            )
        return result

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self, iteration: int) -> dict[str, Any]:
        """A checkpoint: model, optimizer, scaler, iteration, RNG, config and class metadata."""
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "iteration": iteration,
            "rng": rng,
            "config": config_to_dict(self.cfg),
            "model_config": dict(self.model.config),
            "class_names": self.class_names,
            "palette": self.palette,
            "emanet_version": __version__,
            "time": self._elapsed(),
            "best": self.best.state_dict(),  # and the metric: best.pt's "best" entry
            **({"ema": self.ema.state_dict()} if self.ema is not None else {}),
        }

    def _load_state(self, ckpt: dict[str, Any], path: Path) -> None:
        check_resumable(
            ckpt, path, self.model.config, self.class_names, self.model.state_dict(), self.cfg.train.optimizer
        )
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.start_iter = int(ckpt["iteration"])
        self.best.load_state_dict(ckpt.get("best"), self.start_iter)
        if self.ema is not None and "ema" in ckpt:
            self.ema.load_state_dict(ckpt["ema"])
        elif self.ema is not None:  # the average starts from the resumed weights
            self.ema.reset(self.model)
        self.time_offset = float(ckpt.get("time", 0.0))
        restart = f", torchrun restart {elastic_restart()}" if elastic_restart() else ""
        self.run_dir.say(f"resumed from iter {self.start_iter} ({path}{restart})")
        torch.set_rng_state(ckpt["rng"]["torch"])
        if "cuda" in ckpt["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"], self.device)
