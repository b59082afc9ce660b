"""The EM core and the EMA unit against an independent NumPy implementation of docs/method.md §2–3."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from emanet import EMAU, em_iterations


def numpy_em(x, mu0, num_iters, lam=1.0, base_norm="l2", eps_mode="add"):
    """Reference EM, one image at a time, written from the paper's equations.

    x: (C, N) features; mu0: (C, K). Returns z (N, K) of the last E-step and mu (C, K).
    """
    x = np.asarray(x, dtype=np.float64)
    mu = np.asarray(mu0, dtype=np.float64).copy()
    n, k = x.shape[1], mu.shape[1]
    for _ in range(num_iters):
        # E-step: z_nk = exp(lam x_n . mu_k) / sum_j exp(lam x_n . mu_j)
        z = np.empty((n, k))
        for i in range(n):
            a = lam * (x[:, i] @ mu)
            a = np.exp(a - a.max())
            z[i] = a / a.sum()
        # M-step: mu_k = sum_n z_nk x_n / sum_n z_nk, then normalised over C
        new_mu = np.empty_like(mu)
        for j in range(k):
            denom = z[:, j].sum()
            weights = z[:, j] / (1e-6 + denom) if eps_mode == "add" else z[:, j] / max(denom, 1e-12)
            m = x @ weights
            if base_norm == "l2":
                norm = np.sqrt((m**2).sum())
                m = m / (1e-6 + norm) if eps_mode == "add" else m / max(norm, 1e-12)
            elif base_norm == "layer":
                m = (m - m.mean()) / np.sqrt(m.var() + 1e-5)
            new_mu[:, j] = m
        mu = new_mu
    return z, mu


def _random_problem(rng, b, c, n, k, scale=1.0):
    x = rng.standard_normal((b, c, n)) * scale
    mu0 = rng.standard_normal((1, c, k))
    mu0 /= 1e-6 + np.linalg.norm(mu0, axis=1, keepdims=True)
    return x, mu0


SHAPES = [(1, 8, 30, 4, 1), (2, 16, 49, 8, 3), (3, 32, 100, 64, 3), (2, 5, 17, 3, 6), (1, 64, 1, 7, 2)]


def _check_against_numpy(shape, base_norm, dtype, tol):
    b, c, n, k, t = shape
    rng = np.random.default_rng(b * 1000 + c + n + k + t)
    x, mu0 = _random_problem(rng, b, c, n, k, scale=0.5)
    z, mu = em_iterations(
        torch.tensor(x, dtype=dtype), torch.tensor(mu0, dtype=dtype), t, base_norm=base_norm
    )
    assert z.shape == (b, n, k) and mu.shape == (b, c, k)
    for i in range(b):
        z_ref, mu_ref = numpy_em(x[i], mu0[0], t, base_norm=base_norm)
        np.testing.assert_allclose(z[i].numpy(), z_ref, atol=tol, rtol=0)
        np.testing.assert_allclose(mu[i].numpy(), mu_ref, atol=tol, rtol=tol)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("base_norm", ["l2", "none"])
def test_em_matches_numpy_float32(shape, base_norm):
    _check_against_numpy(shape, base_norm, torch.float32, 1e-5)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("base_norm", ["l2", "layer", "none"])
def test_em_matches_numpy_float64(shape, base_norm):
    # LayerNorm divides by the spread over C, which is tiny for bases that own few pixels:
    # float32 rounding is amplified there, so that variant is compared in float64.
    _check_against_numpy(shape, base_norm, torch.float64, 1e-9)


@pytest.mark.parametrize("eps_mode", ["add", "clamp"])
def test_eps_handling_matches_numpy_on_tiny_features(eps_mode):
    # Features of norm ~1e-7: the eps terms decide the result, so "add" and "clamp" differ.
    rng = np.random.default_rng(0)
    x, mu0 = _random_problem(rng, 1, 6, 20, 4, scale=1e-7)
    x64, mu64 = torch.tensor(x), torch.tensor(mu0)
    z, mu = em_iterations(x64, mu64, 2, eps_mode=eps_mode)
    z_ref, mu_ref = numpy_em(x[0], mu0[0], 2, eps_mode=eps_mode)
    np.testing.assert_allclose(z[0].numpy(), z_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(mu[0].numpy(), mu_ref, rtol=1e-8, atol=1e-12)
    norms = np.linalg.norm(mu_ref, axis=0)
    if eps_mode == "add":
        assert (norms < 0.95).all()  # 1e-7-scale bases are shrunk by the added 1e-6
    else:
        np.testing.assert_allclose(norms, 1.0, rtol=1e-6)


def test_temperature_is_inverse_lambda():
    rng = np.random.default_rng(1)
    x, mu0 = _random_problem(rng, 2, 8, 40, 5)
    z, mu = em_iterations(torch.tensor(x), torch.tensor(mu0), 3, temperature=0.25)
    for i in range(2):
        z_ref, mu_ref = numpy_em(x[i], mu0[0], 3, lam=4.0)
        np.testing.assert_allclose(z[i].numpy(), z_ref, atol=1e-10)
        np.testing.assert_allclose(mu[i].numpy(), mu_ref, atol=1e-10)


def _vmf_objective(x, mu, lam):
    """Log-likelihood of a vMF mixture with equal priors and a shared concentration, up to a
    constant: sum_n log sum_k exp(lam x_n . mu_k). x: (C, N) unit columns; mu: (C, K)."""
    a = lam * (x.T @ mu)
    m = a.max(axis=1, keepdims=True)
    return float((m[:, 0] + np.log(np.exp(a - m).sum(axis=1))).sum())


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    c=st.integers(2, 12),
    n=st.integers(1, 60),
    k=st.integers(1, 10),
    lam=st.floats(0.1, 30.0),
    clustered=st.booleans(),
)
def test_em_round_never_decreases_vmf_objective(seed, c, n, k, lam, clustered):
    rng = np.random.default_rng(seed)
    if clustered:  # points around a few directions, where EM has something to find
        centres = rng.standard_normal((c, 3))
        x = centres[:, rng.integers(0, 3, n)] + 0.3 * rng.standard_normal((c, n))
    else:
        x = rng.standard_normal((c, n))
    x /= np.linalg.norm(x, axis=0, keepdims=True)
    mu = rng.standard_normal((c, k))
    mu /= np.linalg.norm(mu, axis=0, keepdims=True)
    xt = torch.tensor(x[None])
    before = _vmf_objective(x, mu, lam)
    for _ in range(4):
        _, mu_t = em_iterations(xt, torch.tensor(mu[None]), 1, temperature=1.0 / lam)
        mu = mu_t[0].numpy()
        after = _vmf_objective(x, mu, lam)
        # The added eps (1e-6) shrinks each basis by at most 1e-6 relative: slack lam*n*1e-6.
        assert after >= before - lam * n * 2e-6 - 1e-9
        before = after


def _unit(channels=16, **kwargs):
    torch.manual_seed(0)
    return EMAU(channels, num_bases=kwargs.pop("num_bases", 8), **kwargs)


def test_no_gradient_through_em_core():
    unit = _unit()
    x = torch.rand(2, 16, 5, 7, requires_grad=True)
    y = unit(x)
    y.sum().backward()
    assert not unit.conv_in.weight.requires_grad and not unit.conv_in.bias.requires_grad
    assert unit.conv_in.weight.grad is None and unit.conv_in.bias.grad is None
    for p in (unit.conv_out.weight, unit.bn_out.weight, unit.bn_out.bias):
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert isinstance(unit.bases, torch.Tensor) and not unit.bases.requires_grad
    # The input's gradient equals the one through the residual + conv_out branch alone,
    # i.e. d(recon)/dx contributes nothing: recompute with the reconstruction detached by hand.
    unit.eval()
    x2 = x.detach().clone().requires_grad_(True)
    feats = unit.conv_in(x2).flatten(2)
    z, mu = em_iterations(feats, unit.bases, unit.num_iters)
    recon = torch.bmm(mu, z.transpose(1, 2)).view_as(x2)
    assert recon.requires_grad  # without no_grad, EM would carry a gradient ...
    y_eval = unit(x2)
    (g,) = torch.autograd.grad(y_eval.sum(), x2)
    ref = torch.nn.functional.relu(unit.bn_out(unit.conv_out(torch.relu(recon.detach()))) + x2)
    (g_ref,) = torch.autograd.grad(ref.sum(), x2)
    torch.testing.assert_close(g, g_ref)  # ... but the unit's does not


def test_learned_bases_get_gradient():
    unit = _unit(maintenance="learned")
    assert isinstance(unit.bases, torch.nn.Parameter)
    before = unit.bases.detach().clone()
    unit(torch.rand(2, 16, 4, 4)).sum().backward()
    assert unit.bases.grad is not None and unit.bases.grad.abs().sum() > 0
    torch.testing.assert_close(unit.bases.detach(), before)  # no moving average


def _expected_bases_after_forward(unit, x, renormalize=False):
    with torch.no_grad():
        feats = unit.conv_in(x).flatten(2).double().numpy()
    mu0 = unit.bases.detach().double().numpy()[0]
    mus = [numpy_em(feats[i], mu0, unit.num_iters)[1] for i in range(x.shape[0])]
    mean = np.mean(mus, axis=0)
    if renormalize:
        mean = mean / np.linalg.norm(mean, axis=0, keepdims=True)
    return (1 - unit.momentum) * mu0 + unit.momentum * mean


@pytest.mark.parametrize("renormalize", [False, True])
def test_moving_average_exact_update(renormalize):
    unit = _unit(renormalize_mean=renormalize).train()
    x = torch.rand(3, 16, 6, 5)
    expected = _expected_bases_after_forward(unit, x, renormalize)
    unit(x)
    np.testing.assert_allclose(unit.bases[0].double().numpy(), expected, atol=1e-6)
    if not renormalize:  # the authors do not renormalise: the blend is not unit-norm
        norms = np.linalg.norm(expected, axis=0)
        assert not np.allclose(norms, 1.0, atol=1e-4)


def test_momentum_follows_batchnorm_convention():
    unit = _unit(momentum=0.0).train()
    before = unit.bases.clone()
    unit(torch.rand(2, 16, 4, 4))
    torch.testing.assert_close(unit.bases, before)  # momentum 0: new value ignored
    unit = _unit(momentum=1.0).train()
    x = torch.rand(2, 16, 4, 4)
    expected = _expected_bases_after_forward(unit, x)
    unit(x)
    np.testing.assert_allclose(unit.bases[0].double().numpy(), expected, atol=1e-6)


def test_no_update_in_eval_or_fixed():
    unit = _unit().eval()
    before = unit.bases.clone()
    unit(torch.rand(2, 16, 4, 4))
    torch.testing.assert_close(unit.bases, before)
    fixed = _unit(maintenance="fixed").train()
    before = fixed.bases.clone()
    fixed(torch.rand(2, 16, 4, 4))
    torch.testing.assert_close(fixed.bases, before)


def test_eval_iters_changes_inference_only():
    unit = _unit(num_iters=3, eval_iters=1)
    x = torch.rand(2, 16, 5, 5)
    bases0 = unit.bases.clone()
    unit.eval()
    _, attn = unit(x, return_attention=True)
    feats = unit.conv_in(x).flatten(2)
    z1, _ = em_iterations(feats, bases0, 1)
    torch.testing.assert_close(attn.flatten(2).transpose(1, 2), z1)
    unit.train()
    _, attn_train = unit(x, return_attention=True)
    z3, _ = em_iterations(feats, bases0, 3)
    torch.testing.assert_close(attn_train.flatten(2).transpose(1, 2), z3)


def test_attention_shape_and_normalisation():
    unit = _unit(channels=16, num_bases=5).eval()
    y, attn = unit(torch.rand(2, 16, 9, 7), return_attention=True)
    assert y.shape == (2, 16, 9, 7) and attn.shape == (2, 5, 9, 7)
    torch.testing.assert_close(attn.sum(1), torch.ones(2, 9, 7))
    assert (attn >= 0).all()


def test_unit_output_matches_numpy_pipeline():
    unit = _unit().eval()
    x = torch.rand(2, 16, 4, 6)
    y = unit(x)
    with torch.no_grad():
        feats = unit.conv_in(x).flatten(2).double().numpy()
        outs = []
        for i in range(2):
            z, mu = numpy_em(feats[i], unit.bases[0].double().numpy(), unit.num_iters)
            recon = np.maximum(mu @ z.T, 0).reshape(16, 4, 6)
            outs.append(recon)
        recon = torch.tensor(np.stack(outs), dtype=torch.float32)
        ref = torch.relu(unit.bn_out(unit.conv_out(recon)) + x)
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)


def test_initial_bases_are_unit_norm_and_saved():
    unit = _unit(channels=32, num_bases=64)
    assert unit.bases.shape == (1, 32, 64)
    torch.testing.assert_close(unit.bases.norm(dim=1), torch.ones(1, 64), atol=1e-5, rtol=0)
    assert "bases" in unit.state_dict()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_bases": 0}, "num_bases=0"),
        ({"num_iters": 0}, "num_iters=0"),
        ({"eval_iters": 0}, "eval_iters=0"),
        ({"base_norm": "batch"}, "base_norm='batch'.*'l2', 'layer', 'none'"),
        ({"maintenance": "ema"}, "maintenance='ema'.*'moving_average', 'learned', 'fixed'"),
        ({"temperature": 0.0}, "temperature=0.0"),
        ({"momentum": 1.5}, "momentum=1.5"),
    ],
)
def test_invalid_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EMAU(16, **kwargs)


def test_wrong_input_shape():
    with pytest.raises(ValueError, match=r"\(B, 16, H, W\); got \(2, 8, 4, 4\)"):
        _unit()(torch.rand(2, 8, 4, 4))


@pytest.mark.parametrize("training", [True, False])
def test_unit_forward_is_em_iterations_plus_reconstruction_exactly(training):
    """The unit's forward is the reference dataflow itself, bit for bit: conv_in, then
    `em_iterations`, X~ = mu z^T, ReLU, conv_out, BN, + x, ReLU (and the moving average)."""
    torch.manual_seed(0)
    unit = EMAU(16, num_bases=4, num_iters=3, eval_iters=2).train(training)
    x = torch.randn(2, 16, 5, 7).relu()
    bases_before = unit.bases.clone()
    bn = torch.nn.BatchNorm2d(16).train(training)
    bn.load_state_dict(unit.bn_out.state_dict())
    with torch.no_grad():
        feats = unit.conv_in(x).flatten(2)
        z, mu = em_iterations(feats, bases_before, 3 if training else 2)
        recon = torch.bmm(mu, z.transpose(1, 2)).view(2, 16, 5, 7)
        want = torch.relu(bn(unit.conv_out(torch.relu(recon))) + x)
    out, attention = unit(x, return_attention=True)
    assert torch.equal(out.detach(), want)
    assert torch.equal(attention, z.transpose(1, 2).reshape(2, 4, 5, 7))
    if training:
        # (the update's own arithmetic is pinned by test_moving_average_exact_update)
        torch.testing.assert_close(unit.bases, 0.9 * bases_before + 0.1 * mu.mean(0, keepdim=True))
    else:
        assert torch.equal(unit.bases, bases_before)
