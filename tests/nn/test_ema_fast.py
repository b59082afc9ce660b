"""The fast EM path (ema_fast.py) computes what `em_iterations` + the reconstruction compute."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from emanet import EMAU, em_iterations
from emanet.nn.ema_fast import _mm_nt, fast_em_attention

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


def _unit_pair(c, k, t, **kw):
    torch.manual_seed(5)
    fast = EMAU(c, num_bases=k, num_iters=t, **kw)
    with torch.no_grad():
        fast.bn_out.weight.uniform_(0.5, 1.5)
        fast.bn_out.bias.uniform_(-0.2, 0.2)
        fast.bn_out.running_mean.uniform_(-0.1, 0.1)
        fast.bn_out.running_var.uniform_(0.5, 2.0)
    ref = copy.deepcopy(fast)
    ref.use_fast_path = False
    assert fast.use_fast_path
    return fast, ref


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_emau_fast_equals_reference(shape, mode):
    b, c, h, w, k, t = shape
    fast, ref = _unit_pair(c, k, t)
    fast.train(mode == "train")
    ref.train(mode == "train")
    x = torch.randn(b, c, h, w).relu()
    out_f, attn_f = fast(x, return_attention=True)
    out_r, attn_r = ref(x, return_attention=True)
    # In training, BN divides by the per-channel batch std of conv_out's output, which
    # amplifies the ~1e-7 rounding differences of the reconstruction: compare the EM results
    # at 1e-5 and the unit's output at 1e-5 relative to its scale.
    _close(attn_f, attn_r)
    _close(out_f, out_r, TOL if mode == "eval" else TOL * float(out_r.detach().abs().max()) * 10)
    _close(fast(x), ref(x), TOL if mode == "eval" else TOL * float(out_r.detach().abs().max()) * 10)
    # The moving average of mu^(0) (train) or its absence (eval) is the same.
    _close(fast.bases, ref.bases)
    _close(fast.bn_out.running_mean, ref.bn_out.running_mean)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_emau_fast_inference(shape, channels_last):
    """Without autograd the fast path also computes conv_out(ReLU(X~)) itself."""
    b, c, h, w, k, t = shape
    fast, ref = _unit_pair(c, k, t)
    fast.eval()
    ref.eval()
    x = torch.randn(b, c, h, w).relu()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        out_f, attn_f = fast(x, return_attention=True)
        out_r, attn_r = ref(x, return_attention=True)
    _close(out_f, out_r)
    _close(attn_f, attn_r)


@pytest.mark.parametrize("shape", SHAPES[:3])
def test_emau_gradients_unchanged(shape):
    b, c, h, w, k, t = shape
    fast, ref = _unit_pair(c, k, t)
    # Training-mode EM (T iterations, moving average) with BN on its running statistics: batch
    # statistics divide by per-channel stds that can be tiny on these small maps and turn
    # 1e-7 rounding differences into 1e-3 gradient differences, hiding what is tested here.
    for unit in (fast, ref):
        unit.bn_out.eval()
    x = torch.randn(b, c, h, w).relu()
    grads = []
    for unit in (fast, ref):
        xi = x.clone().requires_grad_(True)
        out = unit(xi)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads.append(
            [xi.grad] + [p.grad for p in (unit.conv_out.weight, unit.bn_out.weight, unit.bn_out.bias)]
        )
        assert unit.conv_in.weight.grad is None
    for g_fast, g_ref in zip(*grads, strict=True):
        _close(g_fast, g_ref)


def test_emau_fast_path_where_it_is_not_exact():
    """'learned' bases need autograd through the EM: the reference path must run."""
    unit = EMAU(8, num_bases=4, maintenance="learned")
    out = unit(torch.randn(2, 8, 5, 5))
    out.sum().backward()
    assert unit.bases.grad is not None and unit.bases.grad.abs().sum() > 0


@pytest.mark.parametrize("channels_last", [False, True])
def test_emau_fast_under_bf16_autocast(channels_last):
    fast, ref = _unit_pair(32, 8, 3)
    fast.eval()
    ref.eval()
    x = torch.randn(2, 32, 9, 9).relu()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out_f, attn_f = fast(x, return_attention=True)
        out_r, attn_r = ref(x, return_attention=True)
    assert attn_f.dtype == torch.float32
    assert (out_f.float() - out_r.float()).abs().max() < 0.05 * out_r.float().abs().max()
    torch.testing.assert_close(attn_f.sum(1), torch.ones(2, 9, 9), atol=1e-4, rtol=0)


@pytest.mark.parametrize("channels_last", [False, True])
def test_emau_fast_bf16_input(channels_last):
    """bf16 features (what a conv under autocast hands the unit) give what the reference gives."""
    fast, ref = _unit_pair(32, 8, 3)
    fast.eval()
    ref.eval()
    x = torch.randn(2, 32, 9, 9).relu().bfloat16()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out_f = fast(x)
        out_r = ref(x)
    assert out_f.dtype == out_r.dtype == torch.bfloat16
    assert (out_f.float() - out_r.float()).abs().max() < 0.05 * out_r.float().abs().max()


def test_custom_op_fake_matches_real():
    """The op that stands for the fast path in compiled graphs: its fake (tracing) outputs have
    the real shapes, dtypes and strides; schema and registrations checked by opcheck."""
    unit = _unit_pair(16, 4, 2)[0].eval()
    bases, w_in, b_in = unit.bases, unit.conv_in.weight.detach(), unit.conv_in.bias.detach()
    w_out, b_out = unit.conv_out.weight.detach(), torch.randn(16)  # always called without autograd
    for x, dtype, autocast in [
        (torch.randn(2, 16, 5, 7), torch.float32, False),
        (torch.randn(1, 16, 6, 6).contiguous(memory_format=torch.channels_last), torch.float32, False),
        (torch.randn(2, 16, 5, 5).contiguous(memory_format=torch.channels_last), torch.bfloat16, True),
    ]:
        for out in [(None, None), (w_out, b_out)]:
            args = (x, bases, 2, 1.0, "l2", "add", w_in, b_in, *out, dtype, autocast)
            torch.library.opcheck(torch.ops.emanet.fast_em_attention.default, args)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_emau_fast_path_under_torch_compile(channels_last, precision, monkeypatch):
    """torch.compile keeps the fast path (one opaque op), with eager's results."""
    import emanet.nn.ema as ema

    unit = _unit_pair(32, 8, 3)[0].eval()
    x = torch.randn(2, 32, 9, 9).relu()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    with torch.no_grad(), autocast:
        want, want_attn = unit(x, return_attention=True)
    torch._dynamo.reset()
    compiled = torch.compile(unit, backend="aot_eager", fullgraph=True)
    # The reference EM never runs in the compiled graph.
    monkeypatch.setattr(ema, "em_iterations", lambda *a, **k: pytest.fail("reference EM traced"))
    with torch.no_grad(), autocast:
        got, got_attn = compiled(x, return_attention=True)
    assert got.dtype == want.dtype and got_attn.dtype == want_attn.dtype
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(got_attn, want_attn, atol=1e-6, rtol=1e-6)


def test_emau_fast_path_under_torch_compile_training():
    """Training under torch.compile: same output, gradients and moving average of the bases."""
    fast = _unit_pair(32, 8, 3)[0].train()
    eager = copy.deepcopy(fast)
    torch._dynamo.reset()
    compiled = torch.compile(fast, backend="aot_eager", fullgraph=True)
    x = torch.randn(2, 32, 9, 9).relu()
    results = []
    for fn in (compiled, eager):
        xi = x.clone().requires_grad_(True)
        out = fn(xi)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results.append((out.detach(), xi.grad))
    unit_grads = [(u.conv_out.weight.grad, u.bn_out.weight.grad) for u in (fast, eager)]
    for got, want in zip(
        results[0] + unit_grads[0] + (fast.bases,), results[1] + unit_grads[1] + (eager.bases,), strict=True
    ):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
