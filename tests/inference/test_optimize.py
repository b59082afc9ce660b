"""optimize_for_inference: same logits (fp32), argmax agreement (bf16), original untouched."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import emanet
from emanet.inference.fused_ema import FusedEMAU, fuse_ema_units
from emanet.inference.optimize import (
    Conv1x1AsLinear,
    PackedConv2d,
    argmax_agreement,
    fold_conv_bn,
    optimize_for_inference,
)
from emanet.inference.packed_conv import packing_available
from emanet.nn import EMAU


def _randomise_bn(model):
    # Non-trivial statistics, so that folding is really exercised.
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
    return model.eval()


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 3, 48, 56, generator=torch.Generator().manual_seed(1))


def _rel_l2(a, b):
    return float((a.float() - b).norm() / b.norm())


@pytest.mark.parametrize(
    "name, channels_last",
    [
        ("emanet_r18", True),
        ("emanet_r18", False),
        ("deeplabv3_r18", True),
        ("nonlocal_r18", True),
        ("fcn_r18", True),
    ],
)
@pytest.mark.slow
def test_fp32_matches_plain_model(name, channels_last, images):
    torch.manual_seed(0)
    model = _randomise_bn(emanet.create_model(name, num_classes=7))
    before = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        want = model(images)
    fast = optimize_for_inference(model, precision="fp32", channels_last=channels_last)
    got = fast(images)
    assert got.shape == want.shape and got.dtype == torch.float32
    assert _rel_l2(got, want) < 1e-4
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())  # every BN folded
    # Every EMA unit fused (it holds no conv modules).
    assert not any(isinstance(m, EMAU) for m in fast.modules())
    assert any(isinstance(m, FusedEMAU) for m in fast.modules()) == name.startswith("emanet")
    # channels_last: every conv on packed weights (none left plain).
    packed = [m for m in fast.modules() if isinstance(m, (Conv1x1AsLinear, PackedConv2d))]
    assert bool(packed) == (channels_last and packing_available())
    if packed:
        wrapped = {id(m.conv) for m in packed}
        plain = [m for m in fast.modules() if type(m) is nn.Conv2d and id(m) not in wrapped]
        assert not plain
    # The original model is untouched: same weights, buffers, BN layers and mode.
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.slow
def test_compiled_fp32_matches_plain_model(images):
    """compile=True (Inductor with freezing: folded, prepacked weights, fused convs) keeps the
    fp32 logits; the original model keeps its weights (freezing works on the copy)."""
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    model = _randomise_bn(emanet.create_model("emanet_r18", num_classes=7))
    before = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        want = model(images)
    counters.clear()
    got = optimize_for_inference(model, precision="fp32", compile=True)(images)
    # Freezing really happened: Inductor packed the conv weights for oneDNN (it does so only
    # for frozen weights; `torch.compile(options={"freezing": True})` alone packed none).
    # The residual joins reach Inductor as add + ReLU, which it fuses into the conv before them.
    if torch.backends.mkldnn.is_available():
        assert counters["inductor"]["mkldnn_conv_weight_pack_matcher_count"] > 0
        assert counters["inductor"]["mkldnn_conv_binary_unary_fusion_matcher_count"] > 0
    assert got.shape == want.shape and got.dtype == torch.float32
    assert _rel_l2(got, want) < 1e-4
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_return_attention_and_passthrough(images):
    model = _randomise_bn(emanet.create_model("emanet_r18", num_classes=5))
    with torch.no_grad():
        want = model(images, return_attention=True)
    fast = optimize_for_inference(model)
    got = fast(images, return_attention=True)
    assert set(got) == {"out", "attention"}
    assert _rel_l2(got["out"], want["out"]) < 1e-4
    # Folding moves the features by ~1e-7 relative; the softmax of the E-step amplifies it a little.
    assert _rel_l2(got["attention"], want["attention"]) < 1e-4
    assert fast.num_classes == 5 and fast.name == "emanet_r18" and not fast.training
    assert fast.decode_head is fast.model.decode_head  # Segmentor attributes pass through
    with pytest.raises(RuntimeError, match="cannot be trained"):
        fast.train()


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_agrees(precision, images):
    model = _randomise_bn(emanet.create_model("emanet_r18", num_classes=7))
    with torch.no_grad():
        want = model(images)
    got = optimize_for_inference(model, precision=precision)(images)
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    assert argmax_agreement(got, want) > 0.9  # reported, not a speed or accuracy target
    assert _rel_l2(got, want) < 0.05


@pytest.mark.slow
def test_reduced_precision_stores_conv_weights_once(images):
    """bf16 conv weights are cast once, not by autocast on every forward: same logits as
    autocast over the fp32-weight model, bit for bit; fused EMA units keep fp32 weights."""
    model = _randomise_bn(emanet.create_model("emanet_r18", num_classes=7))
    fast = optimize_for_inference(model, precision="bf16")
    assert fast.model.backbone.conv1[0].weight.dtype == torch.bfloat16
    assert fast.model.decode_head.classifier.weight.dtype == torch.bfloat16
    assert fast.model.decode_head.emau.in_weight.dtype == torch.float32
    assert fast.model.backbone.conv1[0].weight.is_contiguous(memory_format=torch.channels_last)
    autocast_only = copy.deepcopy(model)
    fold_conv_bn(autocast_only)
    fuse_ema_units(autocast_only)
    autocast_only = autocast_only.to(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        want = autocast_only(images.contiguous(memory_format=torch.channels_last)).float()
    assert torch.equal(fast(images), want)


def test_fold_conv_bn_counts_and_is_exact():
    block = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
    _randomise_bn(block)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        want = block(x)
        assert fold_conv_bn(block) == 1
        torch.testing.assert_close(block(x), want, atol=1e-5, rtol=1e-5)
    assert isinstance(block[1], nn.Identity)


def test_bad_precision():
    with pytest.raises(ValueError, match="precision='int8' is not valid"):
        optimize_for_inference(nn.Identity(), precision="int8")


@pytest.mark.slow
@pytest.mark.parametrize("native", [False, True])
def test_auto_precision_follows_the_capability(native, images, monkeypatch):
    """ "auto" is bf16 where bf16 is native and fp32 elsewhere; an explicit bf16 on a CPU without
    native bf16 runs (emulated, correct) with a warning instead of a oneDNN error."""
    import emanet.capability as capability
    import emanet.inference.fused_ema as fused_ema

    monkeypatch.setattr(capability, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(fused_ema, "cpu_has_native_bf16", lambda: native)
    model = _randomise_bn(emanet.create_model("emanet_r18", num_classes=7))
    # Deciding runs nothing (a CPU without bf16 could not run oneDNN's bf16 products if forced).
    assert optimize_for_inference(model, precision="auto").precision == ("bf16" if native else "fp32")
    if not native:
        capability._warn_once.cache_clear()
        with pytest.warns(RuntimeWarning, match="no native bf16"):
            fast = optimize_for_inference(model, precision="bf16")
        with torch.no_grad():
            want = model(images)
        assert argmax_agreement(fast(images), want) > 0.9
