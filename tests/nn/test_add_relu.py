"""add_relu_: ReLU(out + other) in place, equal to the unfused ops in every dtype."""

from __future__ import annotations

import pytest
import torch

from emanet.nn.add_relu import add_relu_


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("other_shape", [(2, 5, 3, 4), (1, 5, 1, 1)])
def test_equals_add_then_relu_in_place(dtype, other_shape):
    g = torch.Generator().manual_seed(0)
    out = torch.randn(2, 5, 3, 4, generator=g).to(dtype)
    other = torch.randn(other_shape, generator=g).to(dtype)
    want = torch.relu(out + other)
    got = add_relu_(out, other)
    assert got is out  # in place
    assert torch.equal(got, want)
    assert (got == 0).any() and (got > 0).any()  # both sides of the ReLU exercised


def test_channels_last_and_views():
    # A permuted view (what the 1×1-conv-as-linear path returns) is updated in place.
    base = torch.randn(1, 6, 7, 8)
    out = base.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # channels_last strides
    other = torch.randn(1, 6, 7, 8).contiguous(memory_format=torch.channels_last)
    want = torch.relu(out + other)
    assert torch.equal(add_relu_(out, other), want)
