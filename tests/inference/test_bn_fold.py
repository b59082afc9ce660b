import pytest
import torch
import torch.nn.functional as F
from torch import nn

from emanet.inference.bn_fold import fold_bn, foldable_bn


def _trained_bn(channels: int, affine: bool = True) -> nn.BatchNorm2d:
    """An eval-mode BN with non-trivial statistics and affine parameters."""
    gen = torch.Generator().manual_seed(0)
    bn = nn.BatchNorm2d(channels, affine=affine, eps=1e-3)
    bn.running_mean.copy_(torch.randn(channels, generator=gen))
    bn.running_var.copy_(torch.rand(channels, generator=gen) + 0.1)
    if affine:
        with torch.no_grad():
            bn.weight.copy_(torch.randn(channels, generator=gen))
            bn.bias.copy_(torch.randn(channels, generator=gen))
    return bn.eval()


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("kernel", [1, 3])
def test_fold_bn_equals_conv_then_bn(affine, with_bias, kernel):
    gen = torch.Generator().manual_seed(1)
    weight = torch.randn(6, 4, kernel, kernel, generator=gen, dtype=torch.float64)
    bias = torch.randn(6, generator=gen, dtype=torch.float64) if with_bias else None
    bn = _trained_bn(6, affine).double()
    x = torch.randn(2, 4, 7, 7, generator=gen, dtype=torch.float64)
    want = bn(F.conv2d(x, weight, bias, padding=kernel // 2))
    w, b = fold_bn(weight, bias, bn, torch.float64)
    torch.testing.assert_close(F.conv2d(x, w, b, padding=kernel // 2), want, rtol=1e-12, atol=1e-12)


def test_fold_bn_returns_the_weights_dtype_computed_in_the_given_one():
    bn = _trained_bn(3)
    weight = torch.randn(3, 2, 1, 1)
    w64, b64 = fold_bn(weight.double(), None, bn.double(), torch.float64)
    w, b = fold_bn(weight, None, bn, torch.float64)
    assert w.dtype == b.dtype == torch.float32
    assert torch.equal(w, w64.float()) and torch.equal(b, b64.float())  # rounded once, at the end


def test_foldable_bn_declines_what_it_cannot_fold():
    assert not foldable_bn(nn.Identity())
    assert not foldable_bn(_trained_bn(3).train())
    assert not foldable_bn(nn.BatchNorm2d(3, track_running_stats=False).eval())
    hooked = _trained_bn(3)
    hooked.register_forward_hook(lambda *args: None)
    assert not foldable_bn(hooked)
    assert foldable_bn(_trained_bn(3))
