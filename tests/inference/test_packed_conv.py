"""Convs on packed oneDNN weights: the wrapped conv's output, and a packed copy that follows the weight."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn

from emanet.inference.packed_conv import Conv1x1AsLinear, PackedConv2d, packing_available

pytestmark = pytest.mark.skipif(
    not packing_available(), reason="this torch build has no oneDNN weight packing"
)

# (wrapper, conv): a 1×1 conv with bias; 3×3 dilated, strided, grouped and 7×7 convs.
CASES = [
    (Conv1x1AsLinear, lambda: nn.Conv2d(16, 24, 1)),
    (PackedConv2d, lambda: nn.Conv2d(16, 24, 3, padding=2, dilation=2, bias=False)),
    (PackedConv2d, lambda: nn.Conv2d(16, 24, 3, stride=2, padding=1)),
    (PackedConv2d, lambda: nn.Conv2d(16, 24, 3, padding=1, groups=4)),
    (PackedConv2d, lambda: nn.Conv2d(16, 8, 7, stride=2, padding=3, bias=False)),
]


def _check(module, size, batch=2):
    x = torch.randn(batch, 16, *size).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        got, want = module(x), module.conv(x)
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("wrapper, make_conv", CASES)
def test_packs_once_and_follows_weight_changes(wrapper, make_conv):
    """The packed weight is made at the first call and reused for other sizes, remade when the
    weight changes in place, and dropped (then remade) by deepcopy and pickling."""
    torch.manual_seed(0)
    conv = make_conv().eval().requires_grad_(False)
    assert wrapper.applies_to(conv) and not (
        Conv1x1AsLinear if wrapper is PackedConv2d else PackedConv2d
    ).applies_to(conv)
    layer = wrapper(conv)
    _check(layer, (13, 11))
    packed = layer._packed[1]
    assert packed.is_mkldnn  # oneDNN's blocked copy, not the dense weight
    _check(layer, (9, 17), batch=1)  # another size: the same packed weight
    assert layer._packed[1] is packed
    with torch.no_grad():
        conv.weight.mul_(-2.0)  # e.g. load_state_dict writes in place
    _check(layer, (13, 11))
    assert layer._packed[1] is not packed
    for clone in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        assert clone._packed is None
        _check(clone, (6, 5))
    assert layer.out_channels == conv.out_channels  # the conv's attributes pass through


@pytest.mark.parametrize("wrapper, make_conv", CASES[:2])
def test_other_inputs_run_the_wrapped_conv(wrapper, make_conv):
    """NCHW input, autograd or bf16 autocast: the wrapped conv as it is, nothing packed."""
    conv = make_conv().eval()
    layer = wrapper(conv)
    x = torch.randn(1, 16, 8, 8)
    with torch.inference_mode():
        assert torch.equal(layer(x), conv(x))
        x_cl = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.equal(layer(x_cl), conv(x_cl))
    y = layer(x.contiguous(memory_format=torch.channels_last))
    assert y.requires_grad  # the conv's weight has a gradient
    assert layer._packed is None


@pytest.mark.slow
def test_compiled_traces_the_plain_conv():
    """Under torch.compile the wrapper is the plain conv (no graph break, nothing packed):
    Inductor packs weights itself."""
    conv = nn.Conv2d(16, 24, 3, padding=1).eval().requires_grad_(False)
    layer = PackedConv2d(conv)
    x = torch.randn(1, 16, 8, 8).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        got = torch.compile(layer, backend="eager", fullgraph=True)(x)
        torch.testing.assert_close(got, conv(x))
    assert layer._packed is None


def test_repack_after_writes_through_data():
    """`.data` writes bump no version; `repack()` drops the packed copy."""
    conv = nn.Conv2d(16, 24, 3, padding=1).eval().requires_grad_(False)
    layer = PackedConv2d(conv)
    _check(layer, (6, 6))
    conv.weight.data.mul_(3.0)
    layer.repack()
    assert layer._packed is None
    _check(layer, (6, 6))


def test_applies_only_to_plain_zero_padded_convs():
    assert not PackedConv2d.applies_to(nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"))
    assert not PackedConv2d.applies_to(nn.Conv2d(4, 4, 3, padding="same"))
    assert not Conv1x1AsLinear.applies_to(nn.Conv2d(4, 4, 1, stride=2))
    assert PackedConv2d.applies_to(nn.Conv2d(4, 4, 1, stride=2))
    assert not PackedConv2d.applies_to(nn.ConvTranspose2d(4, 4, 3))
    hooked = nn.Conv2d(4, 4, 3, padding=1)
    hooked.register_forward_pre_hook(lambda module, args: None)  # e.g. pruning's mask
    assert not PackedConv2d.applies_to(hooked)


@pytest.mark.parametrize("wrapper, make_conv", CASES[:2])
def test_bad_input_gets_the_convs_own_error(wrapper, make_conv):
    layer = wrapper(make_conv().eval().requires_grad_(False))
    x = torch.randn(1, 3, 8, 8).contiguous(memory_format=torch.channels_last)  # 3 channels, not 16
    with torch.inference_mode(), pytest.raises(RuntimeError, match="channels"):
        layer(x)
    with torch.inference_mode():
        empty = layer(torch.randn(0, 16, 8, 8).contiguous(memory_format=torch.channels_last))
    assert empty.shape[0] == 0
