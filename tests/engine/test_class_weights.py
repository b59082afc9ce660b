from __future__ import annotations

import numpy as np
import pytest
import torch

from emanet.data.fake import write_fake_dataset
from emanet.engine.class_weights import class_pixel_counts, median_frequency_weights, resolve_class_weights
from emanet.engine.config import load_config
from emanet.engine.losses import build_loss, weighted_cross_entropy


def test_median_frequency_by_hand():
    labels = [np.array([[0, 0, 0, 1], [255, 2, 2, 0]]), np.array([[0, 1, 7, 255]])]
    counts = class_pixel_counts(labels, num_classes=4, ignore_index=255)
    assert counts.tolist() == [5, 2, 2, 0]  # 7 is out of range, 255 ignored
    # f = 5/9, 2/9, 2/9, 0; median over present = 2/9; w = (2/5, 1, 1, 0)
    assert median_frequency_weights(counts).tolist() == pytest.approx([0.4, 1.0, 1.0, 0.0])


def test_class_weights_list_and_errors():
    assert resolve_class_weights([1, 2.5], 2).tolist() == [1.0, 2.5]
    assert resolve_class_weights(None, 2) is None
    with pytest.raises(ValueError, match="give 3"):
        resolve_class_weights([1, 2], 3)
    with pytest.raises(ValueError, match="auto"):
        resolve_class_weights("median", 3)


def test_auto_class_weights_from_the_training_split(tmp_path):
    root = write_fake_dataset("voc_aug", tmp_path / "voc", num_images=2)
    cfg = load_config("voc_aug_r101_os8_paper", [f"data.root={root}", "train.class_weights=auto"])
    from emanet.data import build_dataset

    ds = build_dataset("voc_aug", root, "trainaug")
    counts = np.zeros(ds.num_classes, dtype=np.int64)
    for i in range(len(ds)):  # hand count over the raw labels
        lab = ds.load(i)[1]
        for c in range(ds.num_classes):
            counts[c] += int((lab == c).sum())
    f = counts / counts.sum()
    med = np.median(f[f > 0])
    expected = np.where(f > 0, med / np.where(f > 0, f, 1), 0.0)
    loss_fn = build_loss(cfg)
    logits = torch.randn(1, ds.num_classes, 3, 3)
    label = torch.tensor([[[0, 1, 15], [20, 255, 0], [1, 1, 15]]])
    want = weighted_cross_entropy(
        logits, label, 255, "all_pixels", torch.tensor(expected, dtype=torch.float32)
    )
    assert loss_fn(logits, label).main.item() == pytest.approx(want.item(), rel=1e-6)
