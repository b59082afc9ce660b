from __future__ import annotations

import pytest
import torch

import emanet
from emanet.engine.schedule import build_optimizer, param_groups, poly_lr


def test_authors_parameter_groups():
    model = emanet.create_model("emanet_r18", num_classes=3, ema_channels=32, channels=16)
    groups = {g["group"]: g for g in param_groups(model, lr=0.01, weight_decay=1e-4)}
    ids = {name: {id(p) for p in g["params"]} for name, g in groups.items()}
    named = dict(model.named_parameters())
    assert id(named["decode_head.fc0.conv.weight"]) in ids["weights"]
    assert id(named["decode_head.fc0.bn.weight"]) in ids["norm"]
    assert id(named["decode_head.fc0.bn.bias"]) in ids["bias"]
    assert id(named["decode_head.classifier.bias"]) in ids["bias"]
    assert id(named["decode_head.emau.conv_in.weight"]) not in set().union(*ids.values())  # frozen
    assert groups["weights"]["weight_decay"] == 1e-4 and groups["weights"]["lr"] == 0.01
    assert groups["norm"]["weight_decay"] == 0 and groups["norm"]["lr"] == 0.01
    assert groups["bias"]["weight_decay"] == 0 and groups["bias"]["lr"] == pytest.approx(0.02)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert set().union(*ids.values()) == trainable


def _authors_lrs(base_lr, max_iter, lr_decay_iter, power, mults=(1.0, 1.0, 2.0)):
    """Their train.py, re-typed: groups start at (1, 1, 2) × LR; `step` runs 1..ITER_MAX and
    `poly_lr_scheduler` rewrites the groups' rates when `step % LR_DECAY == 0`."""
    groups = [m * base_lr for m in mults]
    used = []
    for step in range(1, max_iter + 1):
        if not (step % lr_decay_iter or step > max_iter):
            new_lr = base_lr * (1 - float(step) / max_iter) ** power
            groups = [m * new_lr for m in mults]
        used.append(list(groups))  # the rates this step trains with
    return used


def test_poly_lr_equals_the_authors_at_every_iteration_and_group():
    model = emanet.create_model("emanet_r18", num_classes=3, ema_channels=32, channels=16)
    mults = [g["lr_mult"] for g in param_groups(model, lr=0.009, weight_decay=1e-4)]
    assert mults == [1.0, 1.0, 2.0]
    reference = _authors_lrs(0.009, 30000, 10, 0.9)
    assert len(reference) == 30000
    for iteration, expected in enumerate(reference):  # emanet's 0-based iteration = their step - 1
        lr = poly_lr(0.009, iteration, 30000, 0.9, 10)
        assert [lr * m for m in mults] == expected, iteration
    # the points the issue names: their 10th step already decays; their last step trains with 0
    assert poly_lr(0.009, 8, 30000, 0.9, 10) == 0.009
    assert poly_lr(0.009, 9, 30000, 0.9, 10) == 0.009 * (1 - 10 / 30000) ** 0.9
    assert poly_lr(0.009, 29999, 30000, 0.9, 10) == 0.0


@pytest.mark.slow
def test_poly_lr_equals_mmengine_polylr():
    """mmengine PolyParamScheduler, chainable form, T = end - begin - 1, stepped after each iteration."""
    base, eta_min, power, iters = 0.01, 1e-4, 0.9, 80000
    total = iters - 1
    lr = base
    for last_step in range(iters):
        if last_step > 0:
            lr = (lr - eta_min) * (1 - 1 / (total - last_step + 1)) ** power + eta_min
        ours = poly_lr(base, last_step, iters, power, eta_min=eta_min, style="mmengine")
        assert ours == pytest.approx(lr, rel=1e-9, abs=1e-15), last_step
    assert poly_lr(base, iters - 1, iters, power, eta_min=eta_min, style="mmengine") == eta_min


def test_poly_lr_rejects_unknown_style():
    with pytest.raises(ValueError, match="authors"):
        poly_lr(0.01, 0, 10, style="paddle")


def test_decay_all_puts_weight_decay_on_every_group():
    model = emanet.create_model("emanet_r18", num_classes=3, ema_channels=32, channels=16)
    groups = param_groups(model, lr=0.01, weight_decay=5e-4, bias_lr_mult=1.0, decay_all=True)
    assert {g["weight_decay"] for g in groups} == {5e-4}


@pytest.mark.parametrize(("name", "kind"), [("sgd", torch.optim.SGD), ("adamw", torch.optim.AdamW)])
def test_build_optimizer_keeps_the_groups_for_either_optimizer(name, kind):
    model = emanet.create_model("emanet_r18", num_classes=3, ema_channels=32, channels=16)
    opt = build_optimizer(model, lr=1e-3, momentum=0.9, weight_decay=1e-4, bias_lr_mult=2.0, name=name)
    assert type(opt) is kind
    assert [(g["group"], g["lr"], g["weight_decay"]) for g in opt.param_groups] == [
        ("weights", 1e-3, 1e-4),
        ("norm", 1e-3, 0.0),
        ("bias", 2e-3, 0.0),
    ]


def test_adamw_step_follows_the_decoupled_update():
    """One step on one weight against AdamW's formula (Loshchilov & Hutter, as torch documents it):
    w <- w - lr*wd*w - lr * m_hat / (sqrt(v_hat) + eps), m_hat = g, v_hat = g^2 after one step."""
    conv = torch.nn.Conv2d(2, 2, 1, bias=False)
    before = conv.weight.detach().clone()
    opt = build_optimizer(conv, lr=0.01, momentum=0.9, weight_decay=0.1, bias_lr_mult=2.0, name="adamw")
    conv(torch.randn(1, 2, 3, 3)).square().sum().backward()
    grad = conv.weight.grad.clone()
    opt.step()
    expected = before * (1 - 0.01 * 0.1) - 0.01 * grad / (grad.abs() + 1e-8)
    torch.testing.assert_close(conv.weight.detach(), expected)


def test_build_optimizer_rejects_unknown_name():
    with pytest.raises(ValueError, match="sgd, adamw"):
        build_optimizer(torch.nn.Linear(2, 2), 0.1, 0.9, 0.0, 1.0, name="lamb")
