"""A tiny training setup shared by the engine tests: a small EMANet on 32×32 synthetic scenes."""

from __future__ import annotations

import pytest

from emanet.engine.config import load_config

TINY_MODEL = '{"ema_channels": 32, "channels": 16, "num_bases": 8, "dropout": 0.0}'


def tiny_overrides(out_dir, iters=4, **extra) -> list[str]:
    items = {
        "model.name": "emanet_r18",
        "model.options": TINY_MODEL,
        "data.options": '{"size": 32, "length": 24}',
        "data.crop_size": "[32, 32]",
        "train.iters": iters,
        "train.amp": "none",
        "train.batch_size": 4,
        "train.log_every": 1,
        "train.checkpoint_every": 2,
        "train.keep_checkpoints": 5,
        "eval.num_samples": 1,
        "output_dir": str(out_dir),
    }
    items.update(extra)
    return [f"{k}={v}" for k, v in items.items()]


@pytest.fixture
def tiny_config(tmp_path):
    def make(name="run", **extra):
        return load_config("demo", tiny_overrides(tmp_path / name, **extra))

    return make
