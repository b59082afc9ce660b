"""RunDir: what a run writes, what a resume keeps, and that other ranks write nothing."""

from __future__ import annotations

import json

import torch
import yaml

from emanet.engine.config import load_config
from emanet.engine.run_dir import RunDir


def test_open_log_and_resume_trims_metrics(tmp_path):
    cfg = load_config("demo", [f"output_dir={tmp_path / 'run'}"])
    run = RunDir(cfg.output_dir)
    run.open(cfg, torch.device("cpu"), 1, start_iter=0)
    assert yaml.safe_load((run.path / "config.yaml").read_text())["output_dir"] == cfg.output_dir
    assert json.loads((run.path / "env.json").read_text())["world_size"] == 1
    for it in (1, 2, 3):
        run.log({"type": "train", "iter": it, "loss": 1.0 / it})
    with open(run.metrics, "a") as f:
        f.write('{"type": "train", "it')  # a line cut by an interruption
    RunDir(cfg.output_dir).open(cfg, torch.device("cpu"), 1, start_iter=2)
    assert [json.loads(x)["iter"] for x in run.metrics.read_text().splitlines()] == [1, 2]


def test_disabled_writes_nothing(tmp_path):
    cfg = load_config("demo", [f"output_dir={tmp_path / 'run'}"])
    run = RunDir(cfg.output_dir, enabled=False)
    run.open(cfg, torch.device("cpu"), 2, start_iter=0)
    run.log({"type": "train", "iter": 1})
    run.write_eval({"mIoU": 0.5}, palette=[[0, 0, 0]])
    assert run.write_skipped([("a.png", "truncated")]) is None
    assert not run.path.exists()


def test_skipped_file(tmp_path):
    run = RunDir(tmp_path)
    assert run.write_skipped([]) is None
    path = run.write_skipped([("a.png", "truncated"), ("b.png", "empty")])
    assert path.read_text() == "a.png\ttruncated\nb.png\tempty\n"
