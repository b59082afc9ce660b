"""Winograd F(4×4, 3×3) convolution: against a float64 direct conv, the tile geometry of dilated
convs, the fallback to the direct conv, and the transformed weights following the weight."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from emanet.inference import winograd_conv
from emanet.inference.packed_conv import packing_available
from emanet.inference.winograd_conv import WinogradConv2d, release_scratch

pytestmark = pytest.mark.skipif(
    not packing_available(), reason="this torch build has no oneDNN weight packing"
)


def _conv(dilation=1, bias=True, c_in=512, c_out=256):
    torch.manual_seed(0)
    return (
        nn.Conv2d(c_in, c_out, 3, padding=dilation, dilation=dilation, bias=bias).eval().requires_grad_(False)
    )


def _rel_err_vs_float64(layer, x):
    conv = layer.conv
    with torch.inference_mode():
        got = layer(x)
        bias = conv.bias.double() if conv.bias is not None else None
        want = F.conv2d(x.double(), conv.weight.double(), bias, padding=conv.padding, dilation=conv.dilation)
    assert got.shape == want.shape and got.dtype == torch.float32
    assert got.is_contiguous(memory_format=torch.channels_last)
    return float((got.double() - want).norm() / want.norm())


@pytest.mark.parametrize(
    "dilation, size, batch, bias",
    [
        (1, (16, 12), 2, True),  # whole tiles
        (1, (15, 12), 1, False),  # a cropped last tile row
        (2, (16, 24), 2, True),  # 2×2 interleaved sub-grids
        (2, (15, 16), 1, True),  # sub-grids of unequal sizes (8 and 7 rows)
        (4, (16, 16), 1, False),
    ],
)
def test_matches_float64_direct_conv(dilation, size, batch, bias):
    layer = WinogradConv2d(_conv(dilation, bias))
    x = torch.randn(batch, 512, *size).contiguous(memory_format=torch.channels_last)
    err = _rel_err_vs_float64(layer, x)
    assert layer._packed_winograd is not None  # the Winograd path ran
    assert err < 2e-5  # measured ~2–5e-6; the direct fp32 conv ~1e-6


def test_falls_back_where_tiles_waste_work():
    """A large dilation on a small map (tiles mostly padding): the packed direct conv."""
    layer = WinogradConv2d(_conv(dilation=8))
    x = torch.randn(1, 512, 17, 17).contiguous(memory_format=torch.channels_last)
    assert _rel_err_vs_float64(layer, x) < 2e-6
    assert layer._packed_winograd is None and layer._packed is not None


def test_transformed_weights_follow_the_weight():
    layer = WinogradConv2d(_conv())
    x = torch.randn(1, 512, 8, 8).contiguous(memory_format=torch.channels_last)
    _rel_err_vs_float64(layer, x)
    first = layer._packed_winograd[1]
    _rel_err_vs_float64(layer, x)
    assert layer._packed_winograd[1] is first
    with torch.no_grad():
        layer.conv.weight.mul_(-0.5)
    assert _rel_err_vs_float64(layer, x) < 2e-5
    assert layer._packed_winograd[1] is not first
    clone = copy.deepcopy(layer)
    assert clone._packed_winograd is None and _rel_err_vs_float64(clone, x) < 2e-5


def test_applies_to():
    assert WinogradConv2d.applies_to(_conv(1))
    assert WinogradConv2d.applies_to(_conv(4))
    assert WinogradConv2d.applies_to(_conv(1, c_in=256, c_out=256))
    assert not WinogradConv2d.applies_to(_conv(1, c_in=256, c_out=128))  # too few channels to pay
    assert not WinogradConv2d.applies_to(nn.Conv2d(512, 512, 3, stride=2, padding=1))
    assert not WinogradConv2d.applies_to(nn.Conv2d(512, 512, 3, padding=1, dilation=2))  # not "same"
    assert not WinogradConv2d.applies_to(nn.Conv2d(512, 512, 5, padding=2))
    assert not WinogradConv2d.applies_to(nn.Conv2d(512, 512, 3, padding=1, groups=2))


def test_scratch_buffers_are_reused_and_released():
    """Buffers are reused across convs and shapes; nothing left in them (NaN here) leaks into a
    later call, whose padding must be zeroed again; release_scratch frees them."""
    big, small = WinogradConv2d(_conv(1)), WinogradConv2d(_conv(2, c_in=256, c_out=256))
    x_big = torch.randn(1, 512, 16, 20).contiguous(memory_format=torch.channels_last)
    x_small = torch.randn(2, 256, 15, 16).contiguous(memory_format=torch.channels_last)
    release_scratch()
    assert _rel_err_vs_float64(big, x_big) < 2e-5
    tiles = winograd_conv._scratch.gathered
    for buf in winograd_conv._scratch.__dict__.values():
        buf.fill_(float("nan"))
    assert _rel_err_vs_float64(small, x_small) < 2e-5  # another dilation, size and batch
    assert winograd_conv._scratch.gathered is tiles  # large enough: reused
    release_scratch()
    assert not hasattr(winograd_conv._scratch, "gathered")
    assert _rel_err_vs_float64(big, x_big) < 2e-5


def test_large_transforms_go_through_the_reused_buffer(monkeypatch):
    """Above the size glibc always maps, the input transform writes into a reused buffer."""
    monkeypatch.setattr(winograd_conv, "_ALWAYS_MAPPED_BYTES", 0)
    release_scratch()
    layer = WinogradConv2d(_conv(2))
    assert (
        _rel_err_vs_float64(layer, torch.randn(1, 512, 16, 16).contiguous(memory_format=torch.channels_last))
        < 2e-5
    )
    assert hasattr(winograd_conv._scratch, "transformed")


def test_inference_mode_then_no_grad():
    """Buffers first made under inference_mode are still writable under plain no_grad."""
    layer = WinogradConv2d(_conv())
    x = torch.randn(1, 512, 8, 8).contiguous(memory_format=torch.channels_last)
    release_scratch()
    with torch.inference_mode():
        first = layer(x)
    with torch.no_grad():
        second = layer(x)
    torch.testing.assert_close(first, second, rtol=0, atol=0)


def test_bad_input_gets_the_convs_own_error():
    layer = WinogradConv2d(_conv())
    x = torch.randn(1, 64, 8, 8).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), pytest.raises(RuntimeError, match="channels"):
        layer(x)
