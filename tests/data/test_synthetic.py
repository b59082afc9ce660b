"""The built-in synthetic dataset: deterministic, >= 6 classes, ignore pixels, no files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emanet.data import build_dataset, train_transforms
from emanet.data.synthetic import SyntheticDataset


def test_deterministic_and_splits_differ():
    a, b = SyntheticDataset("train", size=64), SyntheticDataset("train", size=64)
    for i in (0, 5, 1999):
        ia, la = a.load(i)
        ib, lb = b.load(i)
        assert np.array_equal(ia, ib) and np.array_equal(la, lb)
    assert not np.array_equal(a.load(0)[0], SyntheticDataset("val", size=64).load(0)[0])
    assert not np.array_equal(a.load(0)[0], SyntheticDataset("train", size=64, seed=1).load(0)[0])


def test_classes_ignore_and_shapes():
    ds = SyntheticDataset("val", size=96, length=40)
    assert ds.num_classes >= 6 and len(ds.CLASSES) == len(ds.PALETTE) == ds.num_classes
    seen = set()
    for i in range(len(ds)):
        image, label = ds.load(i)
        assert image.shape == (96, 96, 3) and image.dtype == np.uint8 and label.shape == (96, 96)
        seen |= set(np.unique(label).tolist())
    assert seen == set(range(ds.num_classes)) | {255}
    sample = ds[0]
    assert sample["image"].shape == (3, 96, 96) and sample["image"].dtype == torch.float32
    assert sample["label"].dtype == torch.int64 and sample["orig_size"] == (96, 96)


def test_each_image_has_one_object_class():
    # the object class is a property of the whole scene, read from context far away
    ds = SyntheticDataset("train", size=64, length=20)
    for i in range(20):
        _, label = ds.load(i)
        assert len(set(np.unique(label).tolist()) - {0, 255}) == 1


def test_build_dataset_and_transforms():
    t = train_transforms(48, scales=[0.75, 1.25])
    ds = build_dataset("synthetic", None, "train", transform=t, size=64, length=10)
    s1, s2 = ds[(3, 11)], ds[(3, 11)]
    assert s1["image"].shape == (3, 48, 48) and torch.equal(s1["image"], s2["image"])
    assert torch.equal(s1["label"], s2["label"])


@pytest.mark.parametrize("kwargs,match", [({"split": "test"}, "split='test'"), ({"size": 16}, "size=16")])
def test_invalid_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SyntheticDataset(**kwargs)
