from __future__ import annotations

import math

import pytest
import torch

from emanet.engine.config import Config
from emanet.engine.losses import build_loss, weighted_cross_entropy
from emanet.engine.ohem import ohem_weights


def _logits_with_probs(p_true: list[float], labels: list[int], num_classes: int = 2) -> torch.Tensor:
    """(1, C, 1, N) logits whose softmax gives each pixel's true class probability p_true (2 classes)."""
    assert num_classes == 2
    cols = []
    for p, y in zip(p_true, labels, strict=True):
        z = [0.0, 0.0]
        z[y] = math.log(p / (1 - p))  # softmax of (logit, 0) on the true class = p
        cols.append(z)
    return torch.tensor(cols, dtype=torch.float32).T.reshape(1, 2, 1, -1)


def test_ohem_keeps_pixels_below_threshold_when_enough():
    probs = [0.1, 0.5, 0.69, 0.71, 0.9, 0.95, 0.3, 0.99]
    labels = [0, 1, 0, 1, 0, 1, 255, 0]
    logits = _logits_with_probs(
        [p if y != 255 else 0.5 for p, y in zip(probs, labels, strict=True)], [y % 255 for y in labels]
    )
    label = torch.tensor(labels).reshape(1, 1, -1)
    w = ohem_weights(logits, label, 255, thresh=0.7, min_kept=2)
    # valid sorted: .1 .5 .69 .71 .9 .95 .99 -> sorted[2] = .69 < .7, cut = .7: keep .1 .5 .69
    assert w.reshape(-1).tolist() == [1, 1, 1, 0, 0, 0, 0, 0]


def test_ohem_raises_the_cut_to_keep_min_kept():
    probs = [0.1, 0.8, 0.85, 0.9, 0.95, 0.99]
    labels = [0, 1, 0, 1, 0, 1]
    logits = _logits_with_probs(probs, labels)
    label = torch.tensor(labels).reshape(1, 1, -1)
    w = ohem_weights(logits, label, 255, thresh=0.7, min_kept=4)
    # only .1 is below .7; cut = sorted[4] = .95: keep the 4 least confident
    assert w.reshape(-1).tolist() == [1, 1, 1, 1, 0, 0]
    # min_kept counts per image: a batch of 2 keeps min_kept * 2
    both = ohem_weights(logits.repeat(2, 1, 1, 1), label.repeat(2, 1, 1), 255, thresh=0.7, min_kept=2)
    assert both.sum() == 4 and both[:, 0, :4].sum() == 4


def test_ohem_without_threshold_keeps_largest_losses():
    probs = [0.6, 0.2, 0.9, 0.4]
    logits = _logits_with_probs(probs, [0, 0, 0, 0])
    w = ohem_weights(logits, torch.zeros(1, 1, 4, dtype=torch.long), 255, thresh=None, min_kept=2)
    assert w.reshape(-1).tolist() == [0, 1, 0, 1]


def test_weighted_cross_entropy_by_hand():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]]).T.reshape(1, 2, 1, 3)
    label = torch.tensor([[[0, 1, 255]]])
    w = torch.tensor([0.5, 3.0])
    ce0 = -math.log(math.exp(2) / (math.exp(2) + 1))
    ce1 = -math.log(math.e / (math.e + 1))
    all_px = weighted_cross_entropy(logits, label, 255, "all_pixels", w)
    assert all_px.item() == pytest.approx((0.5 * ce0 + 3.0 * ce1) / 3)
    valid = weighted_cross_entropy(logits, label, 255, "valid_pixels", w, torch.tensor([[[0.0, 1.0, 1.0]]]))
    assert valid.item() == pytest.approx(3.0 * ce1 / 2)


def test_build_loss_with_aux_and_ohem():
    cfg = Config()
    cfg.train.ohem, cfg.train.ohem_min_kept, cfg.train.aux_weight = True, 2, 0.4
    cfg.train.class_weights = None
    loss_fn = build_loss(cfg)
    torch.manual_seed(0)
    logits, aux = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    label = torch.randint(0, 3, (2, 4, 4))
    out = loss_fn(logits, label, aux)
    keep = ohem_weights(logits, label, 255, 0.7, 2)
    main = weighted_cross_entropy(logits, label, 255, "all_pixels", None, keep)
    plain_aux = weighted_cross_entropy(aux, label, 255, "all_pixels")
    assert out.main.item() == pytest.approx(main.item())
    assert out.aux.item() == pytest.approx(plain_aux.item())  # ohem_aux false: the aux head sees all
    assert out.total.item() == pytest.approx(main.item() + 0.4 * plain_aux.item())
    assert loss_fn(logits, label).aux.item() == 0.0
