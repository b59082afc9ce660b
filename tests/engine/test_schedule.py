from __future__ import annotations

import pytest

import emanet
from emanet.engine.schedule import param_groups, poly_lr


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


def test_poly_lr_updated_every_10():
    assert poly_lr(0.009, 0, 30000, 0.9, 10) == 0.009
    assert poly_lr(0.009, 9, 30000, 0.9, 10) == 0.009
    assert poly_lr(0.009, 15, 30000, 0.9, 10) == pytest.approx(0.009 * (1 - 10 / 30000) ** 0.9)
    assert poly_lr(0.009, 30000, 30000) == 0.0
