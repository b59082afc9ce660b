"""emanet bench: counts match the paper's Table 1 arithmetic; memory tracking; CLI outputs."""

from __future__ import annotations

import json

import pytest
import torch

from emanet import bench
from emanet.nn import EMAU, NonLocal2d


def test_peak_memory_counts_live_tensors():
    def fn(x):
        a = torch.empty(1024, 256)  # 1 MiB
        b = torch.empty(2048, 256)  # 2 MiB, both alive: 3 MiB
        del a, b
        return x.clone()  # 4 bytes × x.numel()

    x = torch.zeros(16)
    peak = bench.measure_peak_memory(fn, x)
    assert peak == 3 * 2**20


def test_nonlocal_needs_more_memory_than_ema():
    x = torch.randn(1, 32, 24, 24)
    ema = bench.measure_peak_memory(EMAU(32, num_bases=8).eval(), x)
    nl = bench.measure_peak_memory(NonLocal2d(32).eval(), x)
    assert nl > 2 * (576 * 576 * 4) > ema  # the N×N map, twice (logits and softmax)


def test_latency_fields():
    r = bench.measure_latency(lambda x: x + 1, torch.zeros(4), repeats=3, warmup=1)
    assert r["min_ms"] <= r["median_ms"] <= r["max_ms"]


def test_table1_head_counts_match_paper():
    # Counting only (meta tensors): the paper's head additions at 513×513, OS8.
    builders = bench._context_builders()
    expected = {"DeepLabV3": (63.4, 15.5), "EMANet(256)": (21.1, 4.87), "EMANet(512)": (43.1, 10.0)}
    for method, (gmacs, params_m) in expected.items():
        with torch.device("meta"):
            module = builders[method]().eval()
            macs = bench.count_macs(module, torch.empty(1, 2048, 65, 65))
        assert macs / 1e9 == pytest.approx(gmacs, rel=0.03), method
        assert bench.count_params(module) / 1e6 == pytest.approx(params_m, rel=0.03), method


@pytest.mark.slow
def test_benchmark_model_splits_backbone_and_head():
    row = bench.benchmark_model("emanet_r18", size=33, latency=True, repeats=1, warmup=0)
    assert row["params"] == row["backbone_params"] + row["head_params"]
    assert row["gmacs"] == pytest.approx(row["backbone_gmacs"] + row["head_gmacs"])
    assert row["gflops"] == pytest.approx(2 * row["gmacs"])
    assert row["peak_mib"] > 0 and row["median_ms"] > 0


@pytest.mark.slow
def test_cli_scaling_json_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from emanet.cli import main

    js, png = tmp_path / "s.json", tmp_path / "s.png"
    argv = ["bench", "--preset", "scaling", "--sizes", "9", "13", "--repeats", "1", "--warmup", "0"]
    assert main(argv + ["--json", str(js), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "NL/EMA" in out
    result = json.loads(js.read_text())
    assert [r["size"] for r in result["rows"]] == [9, 13] and result["machine"]["torch"]
    assert png.stat().st_size > 1000


@pytest.mark.slow
def test_cli_models_table(capsys):
    from emanet.cli import main

    assert main(["bench", "fcn_r18", "--size", "33", "--no-latency"]) == 0
    assert "fcn_r18" in capsys.readouterr().out
    assert main(["bench", "emanet_r18", "--size", "33", "--repeats", "1", "--precision", "bf16"]) == 0
    assert "optimized bf16" in capsys.readouterr().out
