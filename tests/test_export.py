"""ONNX export: onnxruntime matches PyTorch logits within 1e-4, at several input sizes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import emanet
from emanet.export import check_onnx, export_onnx, onnx_available

_OK, _WHY = onnx_available()
pytestmark = pytest.mark.skipif(not _OK, reason=f"ONNX export test skipped: {_WHY}")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = emanet.create_model("emanet_r18", num_classes=6, eval_iters=2)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.copy_(torch.rand(mod.num_features, generator=g) - 0.5)
                mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
    return m.eval()


@pytest.mark.slow
def test_onnx_matches_pytorch_with_dynamic_size(model, tmp_path):
    path = export_onnx(model, tmp_path / "m.onnx", sample_size=(64, 64))
    assert path.exists()
    for size in ((64, 64), (72, 96)):  # the second size was never traced: dynamic H and W
        images = torch.randn(1, 3, *size)
        result = check_onnx(model, path, images)
        assert result["shape"] == [1, 6, *size]
        with torch.no_grad():
            scale = max(1.0, float(model(images).abs().max()))
        assert result["max_abs_diff"] < 1e-4 * scale
        assert result["rel_l2"] < 1e-4


@pytest.mark.slow
def test_onnx_attention_output(model, tmp_path):
    import onnxruntime as ort

    path = export_onnx(model, tmp_path / "a.onnx", sample_size=(64, 64), return_attention=True)
    images = torch.randn(2, 3, 48, 56)
    logits, attention = ort.InferenceSession(str(path)).run(None, {"images": images.numpy()})
    with torch.no_grad():
        want = model(images, return_attention=True)
    torch.testing.assert_close(torch.from_numpy(attention), want["attention"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(torch.from_numpy(logits), want["out"], atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_cli_export(tmp_path, capsys):
    from emanet.cli import main

    out = tmp_path / "cli.onnx"
    assert (
        main(["export", "--onnx", str(out), "--model", "fcn_r18", "--num-classes", "3", "--size", "32", "32"])
        == 0
    )
    assert out.exists() and "wrote" in capsys.readouterr().out
