"""best.pt, early stopping, the weight average (EMA) and `train.deterministic` (issue 16, 4-5)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from state_helpers import assert_optimizer_states_equal, assert_states_equal
from torch import nn

import emanet
import emanet.engine.trainer as trainer_module
from emanet.engine.best import BestTracker
from emanet.engine.checkpoint import list_checkpoints, load_checkpoint
from emanet.engine.determinism import CUBLAS_WORKSPACE, restore_determinism, set_deterministic
from emanet.engine.trainer import Trainer
from emanet.engine.weight_ema import WeightEMA


@pytest.fixture
def scripted_miou(monkeypatch):
    """Replace the trainer's evaluations' mIoU, in call order, by the values of `values`."""
    real = trainer_module.evaluate
    values: list[float] = []

    def scripted(*args, **kwargs):
        result = real(*args, **kwargs)
        result["mIoU"] = values.pop(0)
        return result

    monkeypatch.setattr(trainer_module, "evaluate", scripted)
    return values


# -- the weight average ------------------------------------------------------------------------
@pytest.mark.slow
def test_weight_ema_equals_hand_formula():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    d = 0.9
    ema = WeightEMA(model, d)
    snapshots = [{k: v.detach().clone().double() for k, v in model.named_parameters()}]  # p0
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(8, 3)).square().mean().backward()
        opt.step()
        ema.update(model)
        snapshots.append({k: v.detach().clone().double() for k, v in model.named_parameters()})
    p0, p1, p2, p3 = snapshots
    averaged = dict(ema.module.named_parameters())
    for k in p0:
        # three steps of e <- d e + (1 - d) p, unrolled: d^3 p0 + (1 - d)(d^2 p1 + d p2 + p3)
        expected = d**3 * p0[k] + (1 - d) * (d**2 * p1[k] + d * p2[k] + p3[k])
        torch.testing.assert_close(averaged[k].double(), expected, rtol=1e-6, atol=1e-7)
        assert not torch.equal(averaged[k].double(), p3[k])
    # buffers are copied: BN running statistics and the batch counter as the model's
    assert_states_equal(dict(ema.module.named_buffers()), dict(model.named_buffers()))
    assert int(ema.module[1].num_batches_tracked) == 3
    assert not ema.module.training and not any(p.requires_grad for p in ema.module.parameters())


def test_weight_ema_rejects_decay_outside_open_interval():
    with pytest.raises(ValueError, match="must be in"):
        WeightEMA(nn.Linear(2, 2), 1.0)


# -- the best-so-far and early stopping -----------------------------------------------------------
def test_best_tracker_counts_evaluations_without_a_new_best():
    best = BestTracker("mIoU", patience=2, min_delta=0.01)
    assert best.update({"mIoU": float("nan")}, 1) is False  # NaN is never a best
    assert best.update({"mIoU": 0.5}, 2) is True
    assert best.update({"mIoU": 0.505}, 3) is False  # not more than min_delta better
    assert not best.should_stop and best.stale == 1
    assert best.update({"mIoU": 0.52}, 4) is True and best.stale == 0
    assert best.update({"mIoU": 0.1}, 5) is False
    assert best.update({"mIoU": 0.52}, 6) is False and best.should_stop
    state = best.state_dict()
    assert state == {"metric": "mIoU", "value": 0.52, "iteration": 4, "stale": 2, "evaluated": 6}
    again = BestTracker("mIoU", patience=2)
    again.load_state_dict(state, 6)
    assert again.state_dict() == state and again.should_stop
    old = BestTracker()
    old.load_state_dict(None, 8)  # a checkpoint from before best.pt: its evaluations were done
    assert old.evaluated == 8 and old.value is None


@pytest.mark.slow
def test_best_pt_holds_the_best_state_and_resumes_bit_identically(tiny_config, scripted_miou):
    # evaluations at 2, 4, 6 and the final one at 8; the best is at 4
    extra = {"train.iters": 8, "train.eval_every": 2}
    extra |= {"train.checkpoint_every": 1, "train.keep_checkpoints": 1}
    scripted_miou[:] = [0.5, 0.7, 0.6, 0.65]
    straight = Trainer(tiny_config("straight", **extra), progress=False)
    straight.fit()
    run = Path(straight.cfg.output_dir)
    best = load_checkpoint(run / "best.pt")
    assert best["iteration"] == 4
    assert best["best"] == {"metric": "mIoU", "value": 0.7, "iteration": 4, "stale": 0, "evaluated": 4}
    # keep-last-1 pruned every iter_*.pt but the last; best.pt stays
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == ["iter_0000008.pt"]
    assert load_checkpoint(run / "checkpoints")["best"]["iteration"] == 4
    assert best.keys() >= {"model", "optimizer", "scaler", "rng", "config", "iteration", "time"}

    scripted_miou[:] = [0.6, 0.65]  # the evaluations at 6 and 8 again
    resumed = Trainer(tiny_config("resumed", **extra), resume=str(run / "best.pt"), progress=False)
    assert resumed.start_iter == 4 and resumed.best.value == 0.7
    resumed.fit()
    assert_states_equal(straight.model.state_dict(), resumed.model.state_dict())
    assert_optimizer_states_equal(straight.optimizer, resumed.optimizer)
    assert not scripted_miou


@pytest.mark.slow
def test_early_stop_names_the_reason_and_best_pt(tiny_config, scripted_miou):
    extra = {"train.iters": 8, "train.eval_every": 1, "train.checkpoint_every": 0}
    extra |= {"train.early_stop_patience": 2, "train.early_stop_min_delta": 0.01}
    scripted_miou[:] = [0.5, 0.505, 0.4]  # the best at 1, then two evaluations without one
    cfg = tiny_config("early", **extra)
    result = Trainer(cfg, progress=False).fit()
    run = Path(cfg.output_dir)
    assert result["stopped_early"] == 3 and result["mIoU"] == 0.4
    # a final checkpoint although checkpoint_every=0, eval.json and the model as at the end
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == ["iter_0000003.pt"]
    assert json.loads((run / "eval.json").read_text())["stopped_early"] == 3
    assert (run / "model" / "config.json").is_file()
    assert load_checkpoint(run / "best.pt")["iteration"] == 1
    log = (run / "train.log").read_text()
    assert (
        "early stop after iteration 3/8: 2 evaluations without a new best mIoU "
        "(train.early_stop_patience=2, min_delta 0.01); best mIoU 0.5000 at iteration 1 in "
        f"{run / 'best.pt'}"
    ) in log
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["iter"] for x in lines if x["type"] == "eval"] == [1, 2, 3]


@pytest.mark.slow
def test_ema_is_evaluated_exported_and_resumes_bit_identically(tiny_config):
    extra = {"train.ema_decay": 0.5, "train.eval_every": 2, "train.best_metric": "ema_mIoU"}
    straight = Trainer(tiny_config("straight", **extra), progress=False)
    result = straight.fit()
    Trainer(tiny_config("resumed", **extra), progress=False).fit(stop_at=2)
    resumed = Trainer(tiny_config("resumed", **extra), resume=True, progress=False)
    assert resumed.start_iter == 2
    resumed.fit()
    assert_states_equal(straight.model.state_dict(), resumed.model.state_dict())
    assert_states_equal(straight.ema.state_dict(), resumed.ema.state_dict())
    raw, avg = straight.model.state_dict(), straight.ema.state_dict()
    assert any(not torch.equal(raw[k], avg[k]) for k in raw)

    run = Path(straight.cfg.output_dir)
    assert {"ema_mIoU", "ema_pixel_acc", "ema_mean_acc"} <= result.keys()
    evals = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [x for x in evals if x["type"] == "eval"]
    assert [x["iter"] for x in evals] == [2, 4] and all("ema_mIoU" in x for x in evals)
    assert load_checkpoint(run / "best.pt")["best"]["metric"] == "ema_mIoU"
    exported = emanet.from_pretrained(run / "model_ema")
    assert_states_equal(exported.state_dict(), {k: v.cpu() for k, v in avg.items()})


# -- train.deterministic ------------------------------------------------------------------------
@pytest.fixture
def restore_switches():
    """Whatever a test does, the process-wide switches are as before afterwards."""
    saved = set_deterministic(False)
    yield saved
    restore_determinism(saved)
    assert torch.are_deterministic_algorithms_enabled() == saved.algorithms
    assert torch.backends.cudnn.benchmark == saved.cudnn_benchmark


def test_deterministic_sets_and_restores_the_switches(restore_switches, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    torch.backends.cudnn.benchmark = True
    saved = set_deterministic(True)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.backends.cudnn.benchmark is False and torch.backends.cudnn.deterministic is True
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == CUBLAS_WORKSPACE
    restore_determinism(saved)
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.benchmark is True and torch.backends.cudnn.deterministic is False
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    # a user's own workspace setting is kept
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    restore_determinism(set_deterministic(True))
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_trainer_turns_determinism_on_and_back_off(tiny_config, restore_switches):
    trainer = Trainer(tiny_config("det", **{"train.deterministic": "true"}), progress=False)
    try:
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
    finally:
        trainer.close()
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.deterministic == restore_switches.cudnn_deterministic
