"""A training run is a model: the trainer writes RUN_DIR/model/ (save_pretrained) at the end,
and `from_pretrained` and `Predictor` take the run directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import emanet


@pytest.mark.slow
def test_training_run_is_a_model(tiny_config):
    from emanet.engine.trainer import Trainer

    cfg = tiny_config("run", iters=2)
    Trainer(cfg).fit()
    run = Path(cfg.output_dir)
    assert (run / "model" / "config.json").is_file() and (run / "model" / "model.safetensors").is_file()
    model = emanet.from_pretrained(run)
    assert model.class_names and model.palette  # the dataset's names and colours travel along
    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    a = emanet.Predictor(model, device="cpu").predict(image)
    b = emanet.Predictor(run, device="cpu").predict(image)  # the run directory itself
    assert np.array_equal(a.mask, b.mask)
