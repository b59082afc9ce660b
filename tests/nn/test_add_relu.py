"""add_relu_ and residual_relu: ReLU(out + other), equal to the unfused ops in every dtype."""

from __future__ import annotations

import pytest
import torch

from emanet.nn.add_relu import add_relu_, residual_relu


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


def test_residual_relu_in_place_without_autograd():
    g = torch.Generator().manual_seed(1)
    out, identity = torch.randn(2, 5, 3, 4, generator=g), torch.randn(2, 5, 3, 4, generator=g)
    want = torch.relu(out + identity)
    with torch.no_grad():
        got = residual_relu(out, identity)
    assert got is out and torch.equal(got, want)


def test_residual_relu_with_autograd_leaves_out_alone():
    g = torch.Generator().manual_seed(2)
    out = torch.randn(2, 5, 3, 4, generator=g, requires_grad=True)
    identity = torch.randn(2, 5, 3, 4, generator=g, requires_grad=True)
    out_before = out.detach().clone()
    got = residual_relu(out, identity)
    want = torch.relu(out.detach() + identity.detach())
    assert got is not out and torch.equal(out.detach(), out_before)
    assert torch.equal(got.detach(), want)
    got.sum().backward()
    positive = (want > 0).float()  # d ReLU(a + b) / da = d ReLU(a + b) / db = [a + b > 0]
    assert torch.equal(out.grad, positive) and torch.equal(identity.grad, positive)


def test_residual_relu_promotes_mixed_dtypes():
    # bf16 out (autocast) + fp32 identity: the sum in fp32, as the unfused ops give it.
    g = torch.Generator().manual_seed(3)
    out = torch.randn(2, 5, 3, 4, generator=g).bfloat16()
    identity = torch.randn(2, 5, 3, 4, generator=g)
    with torch.no_grad():
        got = residual_relu(out, identity)
    assert got.dtype == torch.float32
    assert torch.equal(got, torch.relu(out + identity))
