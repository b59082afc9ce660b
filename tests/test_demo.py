"""`emanet demo` end to end on a tiny budget: table, pictures, report."""

from __future__ import annotations

import json

import pytest
import torch

from emanet.demo import DEMO_MODELS, run_demo

# The slow tier: `make test` runs it, `make test-fast` (-m "not slow") does not.
pytestmark = pytest.mark.slow


def test_demo_writes_table_pictures_and_report(tmp_path, capsys):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows = run_demo(
            tmp_path,
            iters=2,
            progress=False,
            overrides=[
                'data.options={"size": 48, "length": 6}',
                "data.crop_size=[48, 48]",
                "eval.num_samples=2",
            ],
        )
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert [r["model"] for r in rows] == [name for name, _ in DEMO_MODELS]
    for key in ("mIoU", "params_M", "GMACs@48", "time_s"):
        assert key in out and all(key in r for r in rows)
    assert json.loads((tmp_path / "results.json").read_text()) == rows
    pictures = sorted(p.name for p in (tmp_path / "predictions").iterdir())
    assert sum(p.endswith("_emanet_r18_attention.png") for p in pictures) == 2
    assert sum(p.endswith("_fcn_r18.png") for p in pictures) == 2
    report = tmp_path / "emanet_r18" / "report.html"
    assert report.is_file() and "report:" in out
    html = report.read_text()
    assert "fcn_r18" in html and "mIoU" in html  # the comparison table is in the report
