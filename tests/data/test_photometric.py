"""PhotoMetricDistortion and RandomCrop(cat_max_ratio) against hand computations for scripted draws."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest

from emanet.data.photometric import PhotoMetricDistortion, hsv_to_rgb_u8, rgb_to_hsv_u8
from emanet.data.transforms import RandomCrop, RandomScale


class Scripted:
    """A stand-in Generator that returns the given draws in order and checks what was asked."""

    def __init__(self, draws):
        self.draws = list(draws)

    def integers(self, lo, hi=None):
        kind, value = self.draws.pop(0)
        assert kind == ("int", lo, hi), (kind, lo, hi)
        return value

    def uniform(self, lo, hi):
        kind, value = self.draws.pop(0)
        assert kind == ("uniform", lo, hi), (kind, lo, hi)
        return value


COIN = ("int", 2, None)


def _u8(x):  # OpenMMLab's convert: float32, clip to 0..255, truncate to uint8
    return np.clip(np.float32(x), 0, 255).astype(np.uint8)


def _hsv_by_hand(rgb):
    """OpenCV 8-bit HSV from colorsys: H = deg / 2, S, V on 0..255, rounded."""
    out = np.zeros_like(rgb)
    for i, j in np.ndindex(rgb.shape[:2]):
        h, s, v = colorsys.rgb_to_hsv(*(rgb[i, j] / 255.0))
        out[i, j] = [round(h * 360 / 2) % 180 if s > 0 else 0, round(s * 255), round(v * 255)]
    return out


def _rgb_by_hand(hsv):
    out = np.zeros_like(hsv)
    for i, j in np.ndindex(hsv.shape[:2]):
        h, s, v = hsv[i, j] / np.array([180.0, 255.0, 255.0])
        out[i, j] = [round(c * 255) for c in colorsys.hsv_to_rgb(h, s, v)]
    return out


IMAGE = np.array(
    [[[200, 30, 40], [10, 250, 120], [90, 90, 90]], [[0, 0, 0], [255, 255, 255], [60, 120, 240]]],
    dtype=np.uint8,
)


def test_hsv_round_trip_matches_colorsys():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
    hsv = rgb_to_hsv_u8(img)
    np.testing.assert_array_equal(hsv, _hsv_by_hand(img))
    back = hsv_to_rgb_u8(hsv)
    np.testing.assert_allclose(back.astype(int), _rgb_by_hand(hsv).astype(int), atol=1)


def test_all_four_distortions_contrast_last():
    draws = [
        (COIN, 1),
        (("uniform", -32, 32), 20.7),  # brightness +20.7
        (COIN, 0),  # mode 0: contrast last
        (COIN, 1),
        (("uniform", 0.5, 1.5), 1.3),  # saturation ×1.3
        (COIN, 1),
        (("int", -18, 18), -7),  # hue −7
        (COIN, 1),
        (("uniform", 0.5, 1.5), 0.6),  # contrast ×0.6
    ]
    rng = Scripted(draws)
    label = np.zeros((2, 3), dtype=np.int64)
    out, lab = PhotoMetricDistortion()(IMAGE, label, rng)
    assert not rng.draws and lab is label
    x = _u8(IMAGE.astype(np.float32) + 20.7)
    hsv = _hsv_by_hand(x)
    hsv[..., 1] = _u8(hsv[..., 1].astype(np.float32) * 1.3)
    x = _rgb_by_hand(hsv)
    hsv = _hsv_by_hand(x)
    hsv[..., 0] = (hsv[..., 0].astype(int) - 7) % 180
    x = _rgb_by_hand(hsv)
    x = _u8(x.astype(np.float32) * 0.6)
    assert out.dtype == np.uint8
    np.testing.assert_allclose(out.astype(int), x.astype(int), atol=1)  # ±1: float vs colorsys rounding


def test_contrast_first_and_skipped_steps():
    draws = [(COIN, 0), (COIN, 1), (COIN, 1), (("uniform", 0.5, 1.5), 1.45), (COIN, 0), (COIN, 0)]
    rng = Scripted(draws)
    out, _ = PhotoMetricDistortion()(IMAGE.astype(np.float32) + 0.4, np.zeros((2, 3)), rng)
    assert not rng.draws
    np.testing.assert_array_equal(out, _u8(IMAGE.astype(np.float32) * 1.45))  # 0.4 rounds away first


def test_cat_max_ratio_redraws_a_crop_one_class_dominates():
    label = np.zeros((4, 8), dtype=np.int64)
    label[:, 6:] = 1  # columns 6, 7 are class 1
    label[0, 0] = 255
    image = np.arange(4 * 8 * 3, dtype=np.uint8).reshape(4, 8, 3)
    # crop 4×4: x = 0 → class 0 only (ignored pixel excluded): re-draw; x = 4 → 2 cols of 1 of 4:
    # 0.5 < 0.75 passes
    draws = [(("int", 0, 1), 0), (("int", 0, 5), 0), (("int", 0, 1), 0), (("int", 0, 5), 4)]
    rng = Scripted(draws)
    img, lab = RandomCrop((4, 4), cat_max_ratio=0.75)(image, label, rng)
    assert not rng.draws
    np.testing.assert_array_equal(lab, label[:, 4:8])
    np.testing.assert_array_equal(img, image[:, 4:8])


def test_cat_max_ratio_gives_up_after_ten_redraws():
    label = np.zeros((4, 8), dtype=np.int64)  # one class everywhere: no crop passes
    draws = [d for x in range(11) for d in ((("int", 0, 1), 0), (("int", 0, 5), x % 5))]
    rng = Scripted(draws)
    _, lab = RandomCrop((4, 4), cat_max_ratio=0.75)(np.zeros((4, 8, 3), np.uint8), label, rng)
    assert not rng.draws  # 1 + 10 draws, the last one used
    assert lab.shape == (4, 4)


def test_resize_base_keeps_ratio_as_mmcv():
    image = np.zeros((300, 500, 3), dtype=np.uint8)
    label = np.zeros((300, 500), dtype=np.int64)
    rng = Scripted([(("uniform", 0.5, 2.0), 1.5)])
    t = RandomScale({"range": [0.5, 2.0]}, base=(2048, 512))
    out, lab = t(image, label, rng)
    # target (3072, 768); f = min(3072 / 500, 768 / 300) = 2.56; size (int(300 f + .5), int(500 f + .5))
    assert out.shape[:2] == lab.shape == (768, 1280) and out.dtype == np.uint8


@pytest.mark.parametrize("pipeline", ["authors", "openmmlab"])
def test_openmmlab_pipeline_pads_after_the_distortion(pipeline):
    from emanet.data.transforms import train_transforms

    t = train_transforms((8, 8), scales=None, pipeline=pipeline, cat_max_ratio=0.75, photometric=True)
    img, lab = t(np.full((4, 6, 3), 100, np.uint8), np.zeros((4, 6), np.int64), np.random.default_rng(1))
    assert img.shape == (3, 8, 8) and lab.shape == (8, 8)
    assert (lab[4:] == 255).all() and (lab[:, 6:] == 255).all()
    if pipeline == "openmmlab":  # padding normalises to exactly 0, never distorted or flipped
        assert (img[:, 4:] == 0).all() and (img[:, :, 6:] == 0).all()
