"""emanet_r101 has the paper's parameter and multiply-add counts (Table 1)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import emanet


def _params(*modules):
    return sum(p.numel() for m in modules for p in m.parameters())


def _gmacs(fn, *args):
    with FlopCounterMode(display=False) as counter:
        fn(*args)
    return counter.get_total_flops() / 2e9  # FLOPs = 2 × multiply-adds


@pytest.mark.slow
def test_parameter_counts():
    model = emanet.create_model("emanet_r101")
    assert round(_params(model.backbone) / 1e6, 2) == 42.62
    head = model.decode_head
    assert round(_params(head.fc0, head.emau) / 1e6, 2) == 9.96  # paper "+10.0 M"
    head256 = emanet.create_model("emanet_r101", ema_channels=256).decode_head
    assert round(_params(head256.fc0, head256.emau) / 1e6, 2) == 4.85  # paper "+4.87 M"


@pytest.mark.slow
def test_multiply_adds_at_513():
    with torch.device("meta"):
        model = emanet.create_model("emanet_r101").eval()
        image = torch.empty(1, 3, 513, 513)
        features = torch.empty(1, 2048, 65, 65)
    assert _gmacs(model.backbone, image) == pytest.approx(189.9, abs=1.0)  # paper: 190.6 G
    head = model.decode_head
    assert _gmacs(lambda f: head.emau(head.fc0(f)), features) == pytest.approx(43.06, abs=0.5)
    assert model.backbone(image)[-1].shape == (1, 2048, 65, 65)  # output stride 8
