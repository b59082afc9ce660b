"""The trainer: the authors' recipe on one CPU or many GPUs (torchrun + DDP + SyncBN).

    trainer = Trainer(load_config("demo"), resume=False)
    result = trainer.fit()

Run directory (`cfg.output_dir`): config.yaml (resolved), env.json, metrics.jsonl,
checkpoints/iter_*.pt (atomic, last k kept), eval.json, samples/*.npz, skipped.txt,
optional tensorboard/. `resume=True` continues bit-identically from the latest checkpoint:
model (EM bases included), optimizer, iteration, RNG state and data order.
"""

from __future__ import annotations

import contextlib
import json
import math
import platform
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from .. import __version__
from ..data import (
    InfiniteSampler,
    SkipBadSamples,
    build_dataset,
    collate_skip,
    eval_transforms,
    train_transforms,
)
from ..fileio import atomic_write, write_json
from ..models import create_model
from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .config import Config, config_to_dict
from .distributed import all_reduce_sum, convert_sync_batchnorm, init_distributed
from .evaluate import autocast_context, evaluate
from .schedule import build_optimizer, poly_lr

__all__ = ["Trainer", "TrainingDiverged", "segmentation_loss", "resolve_device", "build_val_loader"]


def _logged_before(line: str, iteration: int) -> bool:
    try:
        return int(json.loads(line)["iter"]) <= iteration
    except (ValueError, KeyError, TypeError):  # a line cut by an interruption
        return False


class TrainingDiverged(RuntimeError):
    """The loss became NaN or Inf; the last good checkpoint is left as it was."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device=cuda but no CUDA device is available; use train.device=cpu or auto")
    return torch.device(name)


def segmentation_loss(
    logits: torch.Tensor, label: torch.Tensor, ignore_index: int, normalize: str
) -> torch.Tensor:
    """Cross-entropy on (B, C, H, W) logits and (B, H, W) labels.

    "all_pixels" (authors): per image the mean over all H·W positions, ignored ones counting
    0, then the mean over the batch. "valid_pixels": the mean over non-ignored pixels.
    """
    if normalize == "valid_pixels":
        # sum / count rather than reduction="mean": a batch without a valid pixel gives 0, not NaN
        total = F.cross_entropy(logits.float(), label, ignore_index=ignore_index, reduction="sum")
        return total / (label != ignore_index).sum().clamp_min(1)
    per_pixel = F.cross_entropy(logits.float(), label, ignore_index=ignore_index, reduction="none")
    return per_pixel.mean(dim=(1, 2)).mean()


def _environment(device: torch.device, world: int) -> dict[str, Any]:
    env = {
        "emanet": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "device": str(device),
        "world_size": world,
        "num_threads": torch.get_num_threads(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def build_val_loader(cfg: Config, rank: int = 0, world: int = 1):
    """The validation dataset and a loader over this rank's share of it."""
    data = cfg.data
    dataset = build_dataset(
        data.name,
        data.root,
        data.val_split,
        transform=eval_transforms(
            data.mean, data.std, pad_mod=cfg.eval.pad_mod, ignore_index=data.ignore_index
        ),
        **data.options,
    )
    if data.skip_bad_samples:
        dataset = SkipBadSamples(dataset)
    indices = list(range(rank, len(dataset), world))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, indices),
        batch_size=cfg.eval.batch_size,
        num_workers=min(data.num_workers, 2),
        collate_fn=collate_skip,
    )
    return dataset, loader


class Trainer:
    """Trains `cfg.model` on `cfg.data` with `cfg.train`, evaluates with `cfg.eval`."""

    def __init__(self, cfg: Config, resume: bool | str = False, progress: bool = True) -> None:
        self.cfg = cfg
        self.device = resolve_device(cfg.train.device)
        self.dist = init_distributed(self.device)
        self.is_main = self.dist.is_main
        self.progress = progress and self.is_main
        self.run_dir = Path(cfg.output_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        t = cfg.train
        per_step = self.dist.world_size * t.accumulate
        if t.batch_size % per_step:
            raise ValueError(
                f"train.batch_size={t.batch_size} must be divisible by world size × train.accumulate "
                f"= {self.dist.world_size} × {t.accumulate}; change one of them"
            )
        self.micro_batch = t.batch_size // per_step
        torch.manual_seed(t.seed)
        from ..data.preflight import preflight  # data preflight (issue 17): bad data fails here, not after

        preflight(cfg)

        data = cfg.data
        self.train_set = build_dataset(
            data.name,
            data.root,
            data.train_split,
            transform=train_transforms(
                data.crop_size,
                data.scales,
                data.mean,
                data.std,
                ignore_index=data.ignore_index,
                flip=data.flip,
            ),
            **data.options,
        )
        dataset_ignore = getattr(self.train_set, "ignore_index", data.ignore_index)
        if dataset_ignore != data.ignore_index:
            raise ValueError(
                f"the {data.name} dataset marks ignored pixels with {dataset_ignore} but data.ignore_index "
                f"is {data.ignore_index}; set data.ignore_index={dataset_ignore}"
            )
        self.num_classes = self.train_set.num_classes
        self.class_names = list(self.train_set.CLASSES)
        self.palette = [list(map(int, c)) for c in self.train_set.PALETTE]
        if data.skip_bad_samples:
            self.train_set = SkipBadSamples(self.train_set)

        options = dict(cfg.model.options)
        if cfg.model.backbone_weights:
            options["backbone_weights"] = cfg.model.backbone_weights
        model = create_model(cfg.model.name, num_classes=self.num_classes, **options)
        if cfg.model.bn_momentum is not None:
            for m in model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.momentum = cfg.model.bn_momentum
        if model.aux_head is not None and t.aux_weight == 0:
            model.aux_head.requires_grad_(False)  # no loss reaches it; DDP would report it unused
        if cfg.model.sync_bn:
            model = convert_sync_batchnorm(model, self.device)
        self.model = model.to(self.device)
        self.optimizer = build_optimizer(self.model, t.lr, t.momentum, t.weight_decay, t.bias_lr_mult)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=t.amp == "fp16")
        self.start_iter = 0
        self.skipped: list[tuple[str, str]] = []
        checkpoint = self._find_resume(resume)
        if checkpoint is not None:
            self._load_state(checkpoint)
        elif latest_checkpoint(self.ckpt_dir) is not None:
            raise ValueError(
                f"{self.run_dir} already holds checkpoints of an earlier run "
                f"({latest_checkpoint(self.ckpt_dir).name}); pass --resume to continue it, or choose "
                "another output_dir"
            )
        self.ddp = (
            DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
            if self.dist.world_size > 1
            else self.model
        )

    # -- state ---------------------------------------------------------------------------------
    def _find_resume(self, resume: bool | str):
        if not resume:
            return None
        path = latest_checkpoint(self.ckpt_dir) if resume is True else Path(resume)
        if path is None:
            raise FileNotFoundError(
                f"--resume: no checkpoint iter_*.pt in {self.ckpt_dir}; start without --resume"
            )
        return load_checkpoint(path)

    def state_dict(self, iteration: int) -> dict[str, Any]:
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
        }

    def _load_state(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.start_iter = int(ckpt["iteration"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if "cuda" in ckpt["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"], self.device)

    # -- logging -------------------------------------------------------------------------------
    def _prepare_run_dir(self) -> None:
        if not self.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        metrics = self.run_dir / "metrics.jsonl"
        if self.start_iter > 0 and metrics.is_file():
            # drop what was logged after the checkpoint we resume from: it is about to be redone
            kept = [
                line for line in metrics.read_text().splitlines() if _logged_before(line, self.start_iter)
            ]
            with atomic_write(metrics) as tmp:
                tmp.write_text("".join(line + "\n" for line in kept))
        with atomic_write(self.run_dir / "config.yaml") as tmp:
            tmp.write_text(yaml.safe_dump(config_to_dict(self.cfg), sort_keys=False))
        write_json(self.run_dir / "env.json", _environment(self.device, self.dist.world_size))
        if self.start_iter == 0:
            metrics.write_text("")

    def _log(self, record: dict[str, Any]) -> None:
        if self.is_main:
            with open(self.run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            if self.tb is not None:
                for k, v in record.items():
                    if isinstance(v, int | float) and k not in ("iter", "time"):
                        self.tb.add_scalar(f"{record['type']}/{k}", v, record["iter"])

    def _open_tensorboard(self):
        if not (self.cfg.train.tensorboard and self.is_main):
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ValueError(
                "train.tensorboard=true needs the tensorboard package: pip install tensorboard"
            ) from None
        return SummaryWriter(self.run_dir / "tensorboard")

    # -- loop ----------------------------------------------------------------------------------
    def _train_loader(self):
        sampler = InfiniteSampler(
            len(self.train_set),
            seed=self.cfg.train.seed,
            shuffle=True,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            start=self.start_iter * self.cfg.train.batch_size,
        )
        loader = torch.utils.data.DataLoader(
            self.train_set,
            batch_size=self.micro_batch,
            sampler=sampler,
            num_workers=self.cfg.data.num_workers,
            collate_fn=collate_skip,
            persistent_workers=self.cfg.data.num_workers > 0,
            generator=torch.Generator().manual_seed(0),  # keeps the global RNG untouched
        )
        return iter(loader)

    def _next_batch(self, batches) -> dict[str, Any]:
        while True:
            batch = next(batches)
            for path, message in batch.get("skipped", []):
                self.skipped.append((path, message))
                if self.is_main:
                    tqdm.write(f"skipped {path}: {message}")
            if batch.get("image") is not None:
                return batch

    def _set_lr(self, iteration: int) -> float:
        t = self.cfg.train
        lr = poly_lr(t.lr, iteration, t.iters, t.poly_power, t.lr_update_every)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_mult", 1.0)
        return lr

    def _step(self, batches) -> tuple[float, float]:
        t = self.cfg.train
        aux = self.model.aux_head is not None and t.aux_weight > 0
        self.optimizer.zero_grad(set_to_none=True)
        total, total_aux = 0.0, 0.0
        for micro in range(t.accumulate):
            batch = self._next_batch(batches)
            image = batch["image"].to(self.device, non_blocking=True)
            label = batch["label"].to(self.device, non_blocking=True)
            last = micro == t.accumulate - 1
            sync = (
                self.ddp.no_sync() if (not last and self.ddp is not self.model) else contextlib.nullcontext()
            )
            with sync:
                with autocast_context(self.device, t.amp):
                    out = self.ddp(image, return_aux=True) if aux else self.ddp(image)
                logits = out["out"] if aux else out
                loss = segmentation_loss(logits, label, self.cfg.data.ignore_index, t.loss_normalize)
                aux_loss = torch.zeros((), device=self.device)
                if aux:
                    aux_loss = segmentation_loss(
                        out["aux"], label, self.cfg.data.ignore_index, t.loss_normalize
                    )
                step_loss = (loss + t.aux_weight * aux_loss) / t.accumulate
                self.scaler.scale(step_loss).backward()
            total += float(loss.detach()) / t.accumulate
            total_aux += float(aux_loss.detach()) / t.accumulate
        return total, total_aux

    def fit(self, stop_at: int | None = None) -> dict[str, Any]:
        """Train to `train.iters`, evaluate, return the metrics (see `evaluate`).

        `stop_at` ends the run after that iteration without evaluating, as an interruption
        would (the checkpoints written so far stay); `resume=True` continues it."""
        cfg, t = self.cfg, self.cfg.train
        self._prepare_run_dir()
        self.tb = self._open_tensorboard()
        batches = self._train_loader()
        self.model.train()
        start_time = time.perf_counter()
        bar = tqdm(
            total=t.iters,
            initial=self.start_iter,
            desc=f"train {cfg.model.name}",
            disable=not self.progress,
            dynamic_ncols=True,
        )
        result: dict[str, Any] = {}
        for it in range(self.start_iter, t.iters):
            lr = self._set_lr(it)
            loss, aux_loss = self._step(batches)
            finite = all_reduce_sum(torch.tensor([0.0 if math.isfinite(loss + aux_loss) else 1.0]))
            if finite.item() > 0:
                last = latest_checkpoint(self.ckpt_dir)
                kept = (
                    f"the last good checkpoint {last} is intact" if last else "no checkpoint was written yet"
                )
                raise TrainingDiverged(
                    f"loss became {loss} at iteration {it + 1} (lr {lr:.3g}); stopped before the update, "
                    f"{kept}. Lower train.lr, use train.amp=none, or check the data"
                )
            self.scaler.step(self.optimizer)
            self.scaler.update()
            done = it + 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
            if done % t.log_every == 0 or done == t.iters:
                record = {
                    "type": "train",
                    "iter": done,
                    "loss": loss,
                    "lr": lr,
                    "time": time.perf_counter() - start_time,
                }
                if aux_loss:
                    record["aux_loss"] = aux_loss
                self._log(record)
            if t.checkpoint_every and (done % t.checkpoint_every == 0 or done == t.iters) and self.is_main:
                save_checkpoint(self.state_dict(done), self.ckpt_dir, done, keep=t.keep_checkpoints)
            if t.eval_every and done % t.eval_every == 0 and done != t.iters:
                self._evaluate(done, final=False)
            if stop_at is not None and done >= stop_at:
                bar.close()
                return {"stopped_at": done}
        bar.close()
        result = self._evaluate(t.iters, final=True)
        result["train_time"] = time.perf_counter() - start_time
        result["skipped"] = [list(s) for s in self.skipped]
        if self.is_main and self.skipped:
            with atomic_write(self.run_dir / "skipped.txt") as tmp:
                tmp.write_text("".join(f"{p}\t{m}\n" for p, m in self.skipped))
            print(
                f"{len(self.skipped)} bad samples were skipped; the list is in {self.run_dir / 'skipped.txt'}"
            )
        if self.tb is not None:
            self.tb.close()
        return result

    def _evaluate(self, iteration: int, final: bool) -> dict[str, Any]:
        # The validation loader draws from the global RNG; fork it so that a resumed run,
        # whose checkpoint was saved before this evaluation, stays bit-identical.
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            return self._evaluate_now(iteration, final)

    def _evaluate_now(self, iteration: int, final: bool) -> dict[str, Any]:
        cfg = self.cfg
        dataset, loader = build_val_loader(cfg, self.dist.rank, self.dist.world_size)
        result = evaluate(
            self.model,  # not the DDP wrapper: evaluation syncs nothing but the confusion matrix
            loader,
            self.num_classes,
            self.device,
            ignore_index=cfg.data.ignore_index,
            class_names=self.class_names,
            mode=cfg.eval.mode,
            scales=cfg.eval.scales,
            flip=cfg.eval.flip,
            crop=cfg.eval.crop_size,
            stride=cfg.eval.stride,
            amp=cfg.train.amp,
            sample_dir=self.run_dir / "samples" if (final and self.is_main) else None,
            num_samples=cfg.eval.num_samples,
            mean=cfg.data.mean,
            std=cfg.data.std,
            progress=self.progress,
            total=len(loader),
        )
        self._log(
            {"type": "eval", "iter": iteration, **{k: result[k] for k in ("mIoU", "pixel_acc", "mean_acc")}}
        )
        if final and self.is_main:
            write_json(self.run_dir / "eval.json", {**result, "palette": self.palette}, indent=1)
        return result
