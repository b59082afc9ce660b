"""Trainer: bit-identical resume, the NaN guard, skipped bad samples, the run directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from state_helpers import assert_optimizer_states_equal, assert_states_equal

from emanet.data.fake import write_fake_dataset
from emanet.engine.checkpoint import list_checkpoints, load_checkpoint
from emanet.engine.config import load_config
from emanet.engine.trainer import Trainer, TrainingDiverged

# The slow tier: `make test` runs it, `make test-fast` (-m "not slow") does not.
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_resume_is_bit_identical(tiny_config, optimizer):
    settings = {"train.optimizer": optimizer}
    straight = Trainer(tiny_config("straight", **settings), progress=False)
    straight.fit()

    interrupted = Trainer(tiny_config("resumed", **settings), progress=False)
    assert interrupted.fit(stop_at=2) == {"stopped_at": 2}
    resumed = Trainer(tiny_config("resumed", **settings), resume=True, progress=False)
    assert resumed.start_iter == 2
    resumed.fit()

    assert_states_equal(straight.model.state_dict(), resumed.model.state_dict())
    bases = "decode_head.emau.bases"
    assert not torch.equal(straight.model.state_dict()[bases], interrupted.model.state_dict()[bases])
    assert_optimizer_states_equal(straight.optimizer, resumed.optimizer)  # the buffers too


def test_resume_bit_identical_with_dropout_and_evaluation(tiny_config):
    # Dropout draws from the RNG and evaluation (every 2 iterations) must not disturb it.
    extra = {
        "model.options": '{"ema_channels": 32, "channels": 16, "num_bases": 8, "dropout": 0.1}',
        "train.eval_every": 2,
    }
    straight = Trainer(tiny_config("straight", **extra), progress=False)
    straight.fit()
    Trainer(tiny_config("resumed", **extra), progress=False).fit(stop_at=2)
    resumed = Trainer(tiny_config("resumed", **extra), resume=True, progress=False)
    resumed.fit()
    assert_states_equal(straight.model.state_dict(), resumed.model.state_dict())
    lines = [json.loads(x) for x in (Path(resumed.cfg.output_dir) / "metrics.jsonl").read_text().splitlines()]
    assert [(x["type"], x["iter"]) for x in lines] == [
        ("train", 1),
        ("train", 2),
        ("eval", 2),
        ("train", 3),
        ("train", 4),
        ("eval", 4),
    ]


def test_refuses_to_mix_with_an_earlier_run(tiny_config):
    Trainer(tiny_config("same"), progress=False).fit(stop_at=2)
    with pytest.raises(ValueError, match=r"already holds checkpoints .*iter_0000002.pt.*--resume"):
        Trainer(tiny_config("same"), progress=False)


def test_run_directory_contents(tiny_config):
    cfg = tiny_config("run")
    result = Trainer(cfg, progress=False).fit()
    run = Path(cfg.output_dir)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["iters"] == 4 and saved["model"]["name"] == "emanet_r18"
    env = json.loads((run / "env.json").read_text())
    assert env["world_size"] == 1 and env["torch"] == torch.__version__ and env["device"] == "cpu"
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["iter"] for x in lines if x["type"] == "train"] == [1, 2, 3, 4]
    assert lines[-1]["type"] == "eval" and lines[-1]["mIoU"] == pytest.approx(result["mIoU"])
    assert json.loads((run / "eval.json").read_text())["num_images"] == 24
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == ["iter_0000002.pt", "iter_0000004.pt"]
    sample = list((run / "samples").glob("*.npz"))
    assert len(sample) == 1


def test_keep_last_k_checkpoints(tiny_config):
    cfg = tiny_config("keep", **{"train.checkpoint_every": 1, "train.keep_checkpoints": 2})
    Trainer(cfg, progress=False).fit()
    names = [p.name for p in list_checkpoints(Path(cfg.output_dir) / "checkpoints")]
    assert names == ["iter_0000003.pt", "iter_0000004.pt"]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_config, monkeypatch):
    cfg = tiny_config("nan")
    trainer = Trainer(cfg, progress=False)
    real_loss = trainer.loss_fn
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        losses = real_loss(*args, **kwargs)
        nan = float("nan")
        return (
            losses._replace(total=losses.total * nan, main=losses.main * nan) if calls["n"] == 3 else losses
        )

    monkeypatch.setattr(trainer, "loss_fn", poisoned)
    with pytest.raises(TrainingDiverged, match=r"loss became nan at iteration 3 .*iter_0000002.pt is intact"):
        trainer.fit()
    ckpts = list_checkpoints(Path(cfg.output_dir) / "checkpoints")
    assert [p.name for p in ckpts] == ["iter_0000002.pt"]
    state = load_checkpoint(ckpts[0])
    assert state["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_skip_bad_samples_reports_every_file(tmp_path):
    root = write_fake_dataset("folder", tmp_path / "data", num_images=6, size=(32, 32))
    images = sorted((root / "images").rglob("*.png")) + sorted((root / "images").rglob("*.jpg"))
    bad = images[0]
    bad.write_bytes(bad.read_bytes()[:40])
    overrides = [
        "model.name=fcn_r18",
        'model.options={"channels": 16}',
        "data.name=folder",
        f"data.root={root}",
        "data.train_split=train",
        "data.val_split=val",
        "data.options={}",
        "data.crop_size=[32, 32]",
        "train.iters=3",
        "train.batch_size=2",
        "train.checkpoint_every=0",
        f"output_dir={tmp_path / 'run'}",
    ]
    with pytest.raises(Exception, match=str(bad.name)):
        Trainer(load_config("demo", overrides), progress=False).fit()
    result = Trainer(load_config("demo", overrides + ["data.skip_bad_samples=true"]), progress=False).fit()
    assert any(bad.name in path for path, _ in result["skipped"])
    assert bad.name in (tmp_path / "run" / "skipped.txt").read_text()


def test_bf16_autocast_and_accumulation(tiny_config):
    cfg = tiny_config("amp", **{"train.amp": "bf16", "train.accumulate": 2, "train.iters": 2})
    trainer = Trainer(cfg, progress=False)
    assert trainer.micro_batch == 2
    result = trainer.fit()
    assert 0.0 <= result["mIoU"] <= 1.0
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_batch_must_divide(tiny_config):
    with pytest.raises(ValueError, match=r"train.batch_size=4 must be divisible by train.accumulate=3"):
        Trainer(tiny_config("div", **{"train.accumulate": 3}), progress=False)
