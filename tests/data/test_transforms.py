"""Paired transforms: fill values, pairing of image and label, scale, eval padding, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from emanet.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Compose,
    DataError,
    Normalize,
    PadBottomRight,
    PadToMultiple,
    RandomCrop,
    RandomHorizontalFlip,
    RandomScale,
    eval_transforms,
    train_transforms,
)


def _sample(h=24, w=32, seed=0, values=(0, 1, 5, 255)):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    label = rng.choice(np.asarray(values, dtype=np.int64), size=(h, w))
    return image, label


def _rng(seed=0):
    return np.random.default_rng(seed)


def test_pad_bottom_right_fills():
    image, label = _sample(10, 12)
    out_i, out_l = PadBottomRight((16, 20), image_fill=7, label_fill=255)(image, label, _rng())
    assert out_i.shape == (16, 20, 3) and out_l.shape == (16, 20)
    assert out_i.dtype == np.uint8
    np.testing.assert_array_equal(out_i[:10, :12], image)
    np.testing.assert_array_equal(out_l[:10, :12], label)
    assert (out_i[10:] == 7).all() and (out_i[:, 12:] == 7).all()
    assert (out_l[10:] == 255).all() and (out_l[:, 12:] == 255).all()
    # already large enough: unchanged
    same_i, same_l = PadBottomRight(8)(image, label, _rng())
    assert same_i is image and same_l is label


def test_pad_with_mean_colour_normalises_to_zero():
    """The factories pad with mean*255: zero after Normalize, as the authors pad the normalised image."""
    image, label = _sample(5, 6)
    t = train_transforms(crop_size=9, scales=None, flip=False)
    img, lab = t(image, label, _rng())
    assert img.shape == (3, 9, 9) and lab.shape == (9, 9)
    assert torch.allclose(img[:, 5:, :], torch.zeros(3, 4, 9), atol=1e-6)
    assert torch.allclose(img[:, :, 6:], torch.zeros(3, 9, 3), atol=1e-6)
    assert (lab[5:] == 255).all() and (lab[:, 6:] == 255).all()


def test_random_crop_size_and_pairing():
    image, label = _sample(24, 32)
    # encode the position in both so pairing is checkable
    label = np.arange(24 * 32, dtype=np.int64).reshape(24, 32)
    image[..., 0] = (label % 256).astype(np.uint8)
    for seed in range(5):
        ci, cl = RandomCrop((8, 16))(image, label, _rng(seed))
        assert ci.shape == (8, 16, 3) and cl.shape == (8, 16)
        np.testing.assert_array_equal(ci[..., 0], (cl % 256).astype(np.uint8))
    # a crop larger than the image keeps the whole side
    ci, cl = RandomCrop(40)(image, label, _rng())
    assert cl.shape == (24, 32)


def test_flip_pairs_image_and_label():
    image, label = _sample()
    fi, fl = RandomHorizontalFlip(p=1.0)(image, label, _rng())
    np.testing.assert_array_equal(fi, image[:, ::-1])
    np.testing.assert_array_equal(fl, label[:, ::-1])
    ni, nl = RandomHorizontalFlip(p=0.0)(image, label, _rng())
    assert ni is image and nl is label


def test_random_scale_keeps_label_values_and_matches_authors():
    image, label = _sample(24, 32, values=(0, 3, 7, 255))
    for s in (0.5, 0.75, 1.5, 2.0):
        si, sl = RandomScale([s])(image, label, _rng())
        assert sl.shape == (int(24 * s), int(32 * s)) and si.shape == (*sl.shape, 3)
        assert si.dtype == np.float32 and sl.dtype == np.int64
        assert set(np.unique(sl)) <= {0, 3, 7, 255}
        # bilinear align_corners=True on the float image, nearest on the label (authors' dataset.py)
        ref = F.interpolate(
            torch.from_numpy(image).float().permute(2, 0, 1)[None],
            scale_factor=s,
            mode="bilinear",
            align_corners=True,
        )
        np.testing.assert_allclose(si, ref[0].permute(1, 2, 0).numpy(), rtol=0, atol=1e-4)
        ref_l = F.interpolate(torch.from_numpy(label).float()[None, None], scale_factor=s, mode="nearest")
        np.testing.assert_array_equal(sl, ref_l[0, 0].long().numpy())


def test_random_scale_choices_and_range():
    choices = RandomScale([0.5, 1.0, 2.0])
    drawn = {choices.sample(_rng(i)) for i in range(50)}
    assert drawn == {0.5, 1.0, 2.0}
    rng_scale = RandomScale((0.5, 2.0))
    assert rng_scale.is_range
    draws = [rng_scale.sample(_rng(i)) for i in range(50)]
    assert all(0.5 <= d <= 2.0 for d in draws) and len(set(draws)) == 50
    assert RandomScale({"range": [0.5, 2.0]}).is_range
    assert not RandomScale([0.5, 2.0]).is_range  # a list is a set of choices
    with pytest.raises(DataError):
        RandomScale([0.0, 1.0])
    with pytest.raises(DataError):
        RandomScale((2.0, 0.5))


@pytest.mark.parametrize("h,w", [(24, 32), (17, 17), (1, 9), (513, 500), (375, 500)])
def test_pad_to_multiple_gives_1_mod_8(h, w):
    image, label = _sample(h, w)
    pi, pl = PadToMultiple(8)(image, label, _rng())
    assert pl.shape[0] % 8 == 1 and pl.shape[1] % 8 == 1
    assert pl.shape[0] - h < 8 and pl.shape[1] - w < 8
    np.testing.assert_array_equal(pl[:h, :w], label)
    assert (pl[h:] == 255).all() and (pl[:, w:] == 255).all()
    ni, nl = PadToMultiple(None)(image, label, _rng())
    assert nl.shape == (h, w)


def test_normalize_output():
    image, label = _sample()
    img, lab = Normalize()(image, label, _rng())
    assert img.dtype == torch.float32 and img.shape == (3, 24, 32)
    assert lab.dtype == torch.int64 and lab.shape == (24, 32)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    expect = (torch.from_numpy(image).permute(2, 0, 1).float() / 255 - mean) / std
    assert torch.allclose(img, expect, atol=1e-6)


def test_eval_transforms_pad_and_none():
    image, label = _sample(20, 30)
    img, lab = eval_transforms(pad_mod=8)(image, label, _rng())
    assert img.shape == (3, 25, 33) and lab.shape == (25, 33)
    assert (lab[20:] == 255).all()
    img, lab = eval_transforms(pad_mod=None)(image, label, _rng())
    assert img.shape == (3, 20, 30)


def test_train_transforms_deterministic_per_seed():
    image, label = _sample(24, 32)
    t = train_transforms(crop_size=(16, 20), scales=[0.5, 0.75, 1.0, 1.5, 2.0])
    a = t(image, label, _rng(3))
    b = t(image, label, _rng(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[0].shape == (3, 16, 20) and a[1].shape == (16, 20)
    outs = [t(image, label, _rng(s)) for s in range(6)]
    assert any(not torch.equal(outs[0][0], o[0]) for o in outs[1:])
    assert set(torch.unique(a[1]).tolist()) <= {0, 1, 5, 255}


def test_compose_skips_none_and_applies_in_order():
    image, label = _sample(10, 10)
    t = Compose([None, PadBottomRight(12), None, RandomCrop(12)])
    _, lab = t(image, label, _rng())
    assert lab.shape == (12, 12)
    assert "PadBottomRight" in repr(t)


def test_bad_sizes_are_data_errors():
    with pytest.raises(DataError):
        RandomCrop((0, 5))
    with pytest.raises(DataError):
        PadToMultiple(0)
