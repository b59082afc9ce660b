"""Dilated ResNet: stems, output stride, contracted dilation and multi-grid (docs/method.md §4)."""

from __future__ import annotations

import pytest
import torch

import emanet
from emanet.models.resnet import ResNet, block_dilations


def _conv2_dilations(layer):
    return [blk.conv2.dilation[0] if hasattr(blk, "conv3") else blk.conv1.dilation[0] for blk in layer]


def test_authors_os8_dilations_resnet101():
    net = ResNet(101, "deep", 8)
    assert _conv2_dilations(net.layer3) == [1] + [2] * 22
    assert _conv2_dilations(net.layer4) == [2, 8, 16]
    assert [blk.conv2.stride[0] for blk in net.layer3] == [1] * 23
    assert net.layer2[0].conv2.stride == (2, 2)


def test_os16_dilations():
    net = ResNet(50, "deep", 16)
    assert _conv2_dilations(net.layer3) == [1] * 6
    assert net.layer3[0].conv2.stride == (2, 2)
    assert _conv2_dilations(net.layer4) == [1, 4, 8]


def test_os32_has_no_dilation():
    net = ResNet(50, "classic", 32)
    assert all(d == 1 for layer in net.dilations for d in layer)
    assert [f["reduction"] for f in net.feature_info] == [4, 8, 16, 32]


def test_mmseg_v1c_dilations_without_multigrid():
    net = ResNet(101, "deep_v1c", 8, multi_grid=None)
    assert _conv2_dilations(net.layer4) == [2, 4, 4]
    assert _conv2_dilations(net.layer3)[:3] == [1, 2, 2]


def test_block_dilations_helper():
    assert block_dilations(3, 4, (1, 2, 4), True) == [2, 8, 16]
    assert block_dilations(3, 4, None, False) == [4, 4, 4]
    assert block_dilations(2, 1, None, True) == [1, 1]


@pytest.mark.parametrize(
    "stem,first_convs,stem_channels",
    [
        ("deep", [(64, 3, 3), (64, 64, 3), (128, 64, 3)], 128),
        ("deep_v1c", [(32, 3, 3), (32, 32, 3), (64, 32, 3)], 64),
    ],
)
def test_deep_stems(stem, first_convs, stem_channels):
    net = ResNet(50, stem, 8)
    convs = [m for m in net.conv1 if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.in_channels, c.kernel_size[0]) for c in convs] == first_convs
    assert convs[0].stride == (2, 2) and convs[1].stride == (1, 1)
    assert net.bn1.num_features == stem_channels
    assert net.layer1[0].conv1.in_channels == stem_channels
    # BN-ReLU after the first two convs, the third's BN is bn1 (outside the Sequential)
    kinds = [type(m).__name__ for m in net.conv1]
    assert kinds == ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d", "ReLU", "Conv2d"]


def test_classic_stem():
    net = ResNet(18, "classic", 8)
    assert net.conv1.kernel_size == (7, 7) and net.conv1.stride == (2, 2)


@pytest.mark.parametrize("depth,channels", [(18, [64, 128, 256, 512]), (50, [256, 512, 1024, 2048])])
@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_feature_info_matches_outputs(depth, channels, output_stride):
    net = ResNet(depth, "deep", output_stride).eval()
    feats = net(torch.rand(1, 3, 65, 65))
    assert [f["num_chs"] for f in net.feature_info] == channels
    for f, info in zip(feats, net.feature_info, strict=True):
        assert f.shape[1] == info["num_chs"]
        assert f.shape[-1] == -(-65 // info["reduction"])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"depth": 77}, "depth=77"),
        ({"stem": "tiny"}, "stem='tiny'"),
        ({"output_stride": 4}, "output_stride=4"),
    ],
)
def test_invalid_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ResNet(**kwargs)


@pytest.mark.parametrize("depth", [18, 50])
def test_blocks_same_without_autograd_and_input_kept(depth):
    """Without autograd the residual join runs in place (one fused pass); the result is the
    same bit for bit, and no block writes into its input (a stage output may be reused)."""
    torch.manual_seed(0)
    model = ResNet(depth, output_stride=8).eval()
    x = torch.randn(1, 3, 40, 40)
    with torch.enable_grad():
        want = model(x)
    x_before = x.clone()
    with torch.no_grad():
        got = model(x)
    assert torch.equal(x, x_before)
    assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))


def test_widths_set_every_stage_and_the_head_input():
    net = ResNet(depth=18, stem="deep_v1c", widths=(8, 16, 24, 32))
    feats = net(torch.randn(1, 3, 33, 33))
    assert [f.shape[1] for f in feats] == [8, 16, 24, 32]
    assert [i["num_chs"] for i in net.feature_info] == [8, 16, 24, 32]
    model = emanet.create_model("emanet_r18", 3, widths=(8, 16, 24, 32), ema_channels=16, channels=8)
    assert model(torch.randn(1, 3, 33, 33)).shape == (1, 3, 33, 33)
    with pytest.raises(ValueError, match=r"widths=\(8, 16\) is not valid"):
        ResNet(depth=18, widths=(8, 16))
