"""The fused inference unit (inference/fused_ema.py) computes what `EMAU` computes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import emanet.inference.fused_ema as fused_ema
from emanet import EMAU, em_iterations
from emanet.inference.fused_ema import FusedEMAU, _mm_nt, fast_em_attention, fuse_ema_units

TOL = 1e-5
# (B, C, H, W, K, T): batch 1 and >1 (per-image bases after the first step), odd sizes, K > C.
SHAPES = [(1, 16, 5, 7, 4, 1), (2, 32, 9, 11, 8, 3), (3, 8, 6, 4, 16, 2), (1, 64, 13, 13, 64, 3)]


def _reference(x, bases, num_iters, **kw):
    """em_iterations on (B, C, N) + X~ = mu z^T, as the EMAU's reference path."""
    b, c, h, w = x.shape
    z, mu = em_iterations(x.flatten(2), bases, num_iters, **kw)
    recon = torch.bmm(mu, z.transpose(1, 2)).view(b, c, h, w)
    return z.transpose(1, 2).reshape(b, -1, h, w), mu, recon


def _bases(c, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(1, c, k, generator=g), dim=1)


def _close(a, b, tol=TOL):
    assert a.shape == b.shape and a.dtype == b.dtype
    torch.testing.assert_close(a, b, atol=tol, rtol=tol)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_fast_em_matches_em_iterations(shape, channels_last):
    b, c, h, w, k, t = shape
    torch.manual_seed(sum(shape))
    x = torch.randn(b, c, h, w)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    bases = _bases(c, k)
    for got, want in zip(fast_em_attention(x, bases, t), _reference(x, bases, t), strict=True):
        _close(got, want)


@pytest.mark.parametrize("shape", SHAPES[:3])
@pytest.mark.parametrize(
    "options",
    [
        {"temperature": 0.5},
        {"base_norm": "none"},
        {"eps_mode": "clamp"},
        {"base_norm": "layer", "temperature": 2.0},
    ],
)
def test_fast_em_options(shape, options):
    b, c, h, w, k, t = shape
    torch.manual_seed(1)
    x = torch.randn(b, c, h, w).relu()
    bases = _bases(c, k, seed=2)
    tol = 1e-4 if options.get("base_norm") == "layer" else TOL  # LayerNorm amplifies rounding
    for got, want in zip(
        fast_em_attention(x, bases, t, **options), _reference(x, bases, t, **options), strict=True
    ):
        _close(got, want, tol)


@pytest.mark.parametrize("shape", SHAPES)
def test_folded_projection_matches_conv_then_em(shape):
    """conv_in folded into the EM == conv_in computed, then the EM (per-image bases too)."""
    b, c, h, w, k, t = shape
    torch.manual_seed(3)
    f = torch.randn(b, c, h, w).relu()
    conv = torch.nn.Conv2d(c, c, 1)
    bases = _bases(c, k, seed=4).expand(b, -1, -1).contiguous()  # per-image bases given
    with torch.no_grad():
        want = _reference(conv(f), bases, t)
    got = fast_em_attention(f, bases, t, proj_weight=conv.weight, proj_bias=conv.bias)
    for g, wnt in zip(got, want, strict=True):
        _close(g, wnt)


def test_mm_nt_matches_mm():
    a, b, bias = torch.randn(37, 19), torch.randn(23, 19), torch.randn(23)
    _close(_mm_nt(a, b), a @ b.t())
    _close(_mm_nt(a, b.t().contiguous().t()), a @ b.t())  # b as a transposed view, read in place
    sliced = torch.randn(23, 40)[:, 3:22]  # neither row- nor column-major: falls back to mm
    _close(_mm_nt(a, sliced), a @ sliced.t())
    _close(_mm_nt(a, b, bias), a @ b.t() + bias)
    _close(_mm_nt(a, b, bias, relu=True), (a @ b.t() + bias).relu())
    _close(_mm_nt(a, sliced, bias, relu=True), (a @ sliced.t() + bias).relu())


def _unit(c, k, t, **kw):
    """An eval-mode EMAU with non-trivial BN statistics."""
    torch.manual_seed(5)
    unit = EMAU(c, num_bases=k, num_iters=t, **kw)
    with torch.no_grad():
        unit.bn_out.weight.uniform_(0.5, 1.5)
        unit.bn_out.bias.uniform_(-0.2, 0.2)
        unit.bn_out.running_mean.uniform_(-0.1, 0.1)
        unit.bn_out.running_var.uniform_(0.5, 2.0)
    return unit.eval()


def _rel_close(got, want, tol=TOL):
    """Within `tol` relative to the reference's scale (the fused unit rounds differently)."""
    assert got.shape == want.shape and got.dtype == want.dtype
    torch.testing.assert_close(got, want, atol=tol * float(want.abs().max()), rtol=tol)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_unit_equals_emau(shape, channels_last):
    """The unit swapped in by optimize_for_inference gives the EMAU's output and attention
    within 1e-5 relative, in fp32, in both memory layouts."""
    b, c, h, w, k, t = shape
    unit = _unit(c, k, t)
    fused = FusedEMAU(unit)
    x = torch.randn(b, c, h, w).relu()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        want, want_attn = unit(x, return_attention=True)
        got, got_attn = fused(x, return_attention=True)
    _rel_close(got, want)
    _close(got_attn, want_attn)
    assert got.is_contiguous(memory_format=torch.channels_last) == channels_last


def test_fused_unit_uses_eval_iters_and_copies_state():
    unit = _unit(16, 4, 3, eval_iters=5)
    fused = FusedEMAU(unit)
    assert fused.num_iters == 5
    x = torch.randn(2, 16, 6, 6).relu()
    with torch.no_grad():
        _rel_close(fused(x), unit(x))
        fused.bases.zero_()
    assert unit.bases.abs().sum() > 0  # the unit's buffers are not shared


def test_fuse_ema_units_replaces_what_applies():
    model = torch.nn.Sequential(_unit(8, 4, 2), _unit(8, 4, 2), torch.nn.ReLU())
    model[1].bn_out = torch.nn.GroupNorm(2, 8)  # nothing to fold into conv_out: stays an EMAU
    assert fuse_ema_units(model) == 1
    assert isinstance(model[0], FusedEMAU) and isinstance(model[1], EMAU)
    assert not FusedEMAU.applies_to(_unit(8, 4, 2).train())  # train-mode BN: batch statistics


def test_fused_bf16_products_follow_the_capability(monkeypatch):
    """Without native bf16, no bf16 product goes to oneDNN's inner product (it cannot build
    one there); fp32 products still do. With native bf16 (real or forced where the CPU has it),
    bf16 products go to oneDNN."""
    calls = []
    real = fused_ema._linear_pointwise

    def recording(a, *args):
        calls.append(a.dtype)
        return real(a, *args)

    monkeypatch.setattr(fused_ema, "_linear_pointwise", recording)
    monkeypatch.setattr(fused_ema, "cpu_has_native_bf16", lambda: False)
    fused = FusedEMAU(_unit(32, 8, 3))
    x = torch.randn(2, 32, 9, 9).relu()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        fused(x)
    assert torch.bfloat16 not in calls
    with torch.no_grad():
        fused(x)
    assert calls.count(torch.float32) == len(calls) > 0 or not fused_ema._HAS_ONEDNN_LINEAR
    from emanet.capability import _probe_cpu_bf16

    if _probe_cpu_bf16() and fused_ema._HAS_ONEDNN_LINEAR:  # the native path, where the CPU has it
        calls.clear()
        monkeypatch.setattr(fused_ema, "cpu_has_native_bf16", lambda: True)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            fused(x)
        assert torch.bfloat16 in calls


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("native_bf16", [False, True])
def test_fused_under_bf16_autocast(channels_last, native_bf16, monkeypatch):
    """bf16 autocast on any CPU: the fallback (torch.mm in bf16) where bf16 is not native, and
    oneDNN where it is; both close to the EMAU's bf16 output."""
    from emanet.capability import _probe_cpu_bf16

    if native_bf16 and not _probe_cpu_bf16():
        native_bf16 = False  # forcing oneDNN bf16 on a CPU without it would crash inside oneDNN
    monkeypatch.setattr(fused_ema, "cpu_has_native_bf16", lambda: native_bf16)
    unit = _unit(32, 8, 3)
    fused = FusedEMAU(unit)
    x = torch.randn(2, 32, 9, 9).relu()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out_f, attn_f = fused(x, return_attention=True)
        out_r, attn_r = unit(x, return_attention=True)
    assert attn_f.dtype == torch.float32
    assert (out_f.float() - out_r.float()).abs().max() < 0.05 * out_r.float().abs().max()
    torch.testing.assert_close(attn_f.sum(1), torch.ones(2, 9, 9), atol=1e-4, rtol=0)


@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_bf16_input(channels_last):
    """bf16 features (what a conv under autocast hands the unit) give what the EMAU gives."""
    unit = _unit(32, 8, 3)
    fused = FusedEMAU(unit)
    x = torch.randn(2, 32, 9, 9).relu().bfloat16()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out_f = fused(x)
        out_r = unit(x)
    assert out_f.dtype == out_r.dtype == torch.bfloat16
    assert (out_f.float() - out_r.float()).abs().max() < 0.05 * out_r.float().abs().max()


@pytest.mark.slow
def test_custom_op_fake_matches_real():
    """The op that stands for the fused core in compiled graphs: its fake (tracing) outputs
    have the real shapes, dtypes and strides; schema and registrations checked by opcheck."""
    unit = _unit(16, 4, 2)
    bases, w_in, b_in = unit.bases, unit.conv_in.weight.detach(), unit.conv_in.bias.detach()
    w_out, b_out = unit.conv_out.weight.detach(), torch.randn(16)
    for x, dtype, autocast in [
        (torch.randn(2, 16, 5, 7), torch.float32, False),
        (torch.randn(1, 16, 6, 6).contiguous(memory_format=torch.channels_last), torch.float32, False),
        (torch.randn(2, 16, 5, 5).contiguous(memory_format=torch.channels_last), torch.bfloat16, True),
    ]:
        for out in [(None, None), (w_out, b_out)]:
            args = (x, bases, 2, 1.0, "l2", "add", w_in, b_in, *out, dtype, autocast)
            torch.library.opcheck(torch.ops.emanet.fast_em_attention.default, args)


@pytest.mark.slow
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_fused_unit_under_torch_compile(channels_last, precision, monkeypatch):
    """torch.compile keeps the fused core as one opaque op, with eager's results."""
    fused = FusedEMAU(_unit(32, 8, 3))
    x = torch.randn(2, 32, 9, 9).relu()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    with torch.no_grad(), autocast:
        want, want_attn = fused(x, return_attention=True)
    torch._dynamo.reset()
    compiled = torch.compile(fused, backend="aot_eager", fullgraph=True)
    monkeypatch.setattr(fused_ema, "_fast_em_core", lambda *a, **k: pytest.fail("eager core traced"))
    with torch.no_grad(), autocast:
        got, got_attn = compiled(x, return_attention=True)
    assert got.dtype == want.dtype and got_attn.dtype == want_attn.dtype
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(got_attn, want_attn, atol=1e-6, rtol=1e-6)
