"""The run directory writer: what a training run leaves on disk, besides its checkpoints.

    run = RunDir(cfg.output_dir, enabled=is_main)
    run.open(cfg, device, world_size, start_iter)   # config.yaml, env.json, metrics.jsonl
    run.log({"type": "train", "iter": 10, "loss": 0.7, "lr": 0.009, "time": 12.3})
    run.write_eval(result, palette)                   # eval.json
    run.close()

Layout: config.yaml (resolved), env.json, metrics.jsonl (one JSON record a line), train.log
(the lines `say` printed, time-stamped), run.lock (while a run is live, see `RunLock`),
eval.json, skipped.txt, optional tensorboard/; the trainer adds checkpoints/, best.pt,
samples/, model/ and model_ema/.
Only the main process writes (`enabled`); on other ranks every method does nothing.
"""

from __future__ import annotations

import json
import platform
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm import tqdm

from .._version import __version__
from ..capability import cpu_description, cpu_has_native_bf16
from ..fileio import atomic_write, write_json
from .config import Config, config_to_dict

__all__ = ["RunDir", "environment"]


def environment(device: torch.device, world_size: int) -> dict[str, Any]:
    """Versions, host and device of this run (env.json)."""
    env = {
        "emanet": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "device": str(device),
        "world_size": world_size,
        "num_threads": torch.get_num_threads(),
        "cpu": cpu_description(),
        "cpu_native_bf16": cpu_has_native_bf16(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def _logged_before(line: str, iteration: int) -> bool:
    try:
        return int(json.loads(line)["iter"]) <= iteration
    except (ValueError, KeyError, TypeError):  # a line cut by an interruption
        return False


def _summary_writer(path: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ValueError(
            "train.tensorboard=true needs the tensorboard package: pip install tensorboard"
        ) from None
    return SummaryWriter(path)


class RunDir:
    """The files of one run under `path`.

    Args:
        path: the run directory (`cfg.output_dir`).
        enabled: whether this process writes (the main process under DDP).
    """

    def __init__(self, path: str | Path, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self.checkpoints = self.path / "checkpoints"
        self.samples = self.path / "samples"
        self.metrics = self.path / "metrics.jsonl"
        self.log_file = self.path / "train.log"
        self.tensorboard = None

    def say(self, line: str) -> None:
        """Print `line` (above a progress bar, if any) and append it to train.log."""
        if not self.enabled:
            return
        tqdm.write(line)
        self.path.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now().astimezone().isoformat(sep=" ", timespec="seconds")
        with open(self.log_file, "a") as f:
            f.write(f"{stamp}  {line}\n")

    def open(self, cfg: Config, device: torch.device, world_size: int, start_iter: int) -> None:
        """Write config.yaml and env.json, start metrics.jsonl and, with `train.tensorboard`,
        a TensorBoard writer. From `start_iter` > 0 (a resume) metrics.jsonl keeps its records
        up to that iteration."""
        if not self.enabled:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        if start_iter > 0 and self.metrics.is_file():
            # drop what was logged after the checkpoint we resume from: it is about to be redone
            lines = self.metrics.read_text().splitlines()
            kept = [line for line in lines if _logged_before(line, start_iter)]
            with atomic_write(self.metrics) as tmp:
                tmp.write_text("".join(line + "\n" for line in kept))
        with atomic_write(self.path / "config.yaml") as tmp:
            tmp.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
        write_json(self.path / "env.json", environment(device, world_size))
        if start_iter == 0:
            self.metrics.write_text("")
        if cfg.train.tensorboard:
            self.tensorboard = _summary_writer(self.path / "tensorboard")

    def log(self, record: dict[str, Any]) -> None:
        """Append `record` ({"type", "iter", ...}) to metrics.jsonl; its numbers to TensorBoard."""
        if not self.enabled:
            return
        with open(self.metrics, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            for k, v in record.items():
                if isinstance(v, int | float) and k not in ("iter", "time"):
                    self.tensorboard.add_scalar(f"{record['type']}/{k}", v, record["iter"])

    def write_eval(self, result: dict[str, Any], palette: list[list[int]]) -> None:
        """eval.json: the final metrics and the palette the report colours with."""
        if self.enabled:
            write_json(self.path / "eval.json", {**result, "palette": palette}, indent=1)

    def write_skipped(self, skipped: list[tuple[str, str]]) -> Path | None:
        """skipped.txt: one `path<TAB>message` line per skipped sample; None when none was."""
        if not (self.enabled and skipped):
            return None
        path = self.path / "skipped.txt"
        with atomic_write(path) as tmp:
            tmp.write_text("".join(f"{p}\t{m}\n" for p, m in skipped))
        return path

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
