"""mIoU against hand computations."""

from __future__ import annotations

import pytest
import torch

from emanet.engine.metrics import ConfusionMatrix


def test_hand_computed_case_with_ignore_and_absent_class():
    # 4 classes; class 3 appears nowhere. GT / prediction over 8 pixels, one ignored.
    gt = torch.tensor([0, 0, 0, 1, 1, 2, 2, 255])
    pred = torch.tensor([0, 0, 1, 1, 1, 2, 0, 3])
    cm = ConfusionMatrix(4)
    cm.update(pred, gt)
    r = cm.compute(["a", "b", "c", "d"])
    # class 0: tp 2, gt 3, pred 3 -> 2/4; class 1: tp 2, gt 2, pred 3 -> 2/3;
    # class 2: tp 1, gt 2, pred 1 -> 1/2
    assert r["per_class_iou"][:3] == pytest.approx([0.5, 2 / 3, 0.5])
    assert r["per_class_iou"][3] is None and r["absent_classes"] == ["d"]  # the ignored pixel's 3 not counted
    assert r["mIoU"] == pytest.approx((0.5 + 2 / 3 + 0.5) / 3)
    assert r["pixel_acc"] == pytest.approx(5 / 7)
    assert r["mean_acc"] == pytest.approx((2 / 3 + 1 + 0.5) / 3)
    assert r["confusion_matrix"][0] == [2, 1, 0, 0] and r["num_pixels"] == 7


def test_class_only_predicted_counts_with_zero_iou():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([[0, 2]]), torch.tensor([[0, 0]]))
    r = cm.compute()
    assert r["per_class_iou"] == [pytest.approx(0.5), None, 0.0]
    assert r["mIoU"] == pytest.approx(0.25) and r["absent_classes"] == ["1"]


def test_accumulates_over_updates_and_rejects_shape_mismatch():
    cm = ConfusionMatrix(2)
    cm.update(torch.tensor([0, 1]), torch.tensor([0, 1]))
    cm.update(torch.tensor([1, 1]), torch.tensor([0, 1]))
    assert cm.matrix.tolist() == [[1, 1], [0, 2]]
    with pytest.raises(ValueError, match="differ in shape"):
        cm.update(torch.zeros(3), torch.zeros(2))
