"""emanet.viz: palette, colourised masks, overlays, responsibility grids, sample figures."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from emanet import viz
from emanet.data.palette import voc_palette

# PASCAL VOC's colour map as published with the VOC devkit (classes 0..20).
VOC_21 = [
    (0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128), (0, 128, 128),
    (128, 128, 128), (64, 0, 0), (192, 0, 0), (64, 128, 0), (192, 128, 0), (64, 0, 128), (192, 0, 128),
    (64, 128, 128), (192, 128, 128), (0, 64, 0), (128, 64, 0), (0, 192, 0), (128, 192, 0), (0, 64, 128),
]  # fmt: skip


def _devkit_colormap(n: int) -> list[tuple[int, int, int]]:
    """The devkit's bit-interleaving recipe, written independently of the library."""
    out = []
    for i in range(n):
        r = g = b = 0
        c = i
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        out.append((r, g, b))
    return out


def test_voc_palette_is_the_standard_colour_map():
    pal = np.asarray(voc_palette(256)).reshape(-1, 3)
    assert pal.shape == (256, 3)
    assert [tuple(int(v) for v in c) for c in pal[:21]] == VOC_21
    assert tuple(int(v) for v in pal[255]) == (224, 224, 192)  # the "void" boundary colour
    assert [tuple(int(v) for v in c) for c in pal] == _devkit_colormap(256)
    assert np.array_equal(viz.default_palette(256), pal)


def test_colorize_palette_and_ignore():
    mask = np.array([[0, 1, 2], [255, 20, 1]])
    rgb = viz.colorize(mask)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3)
    assert tuple(rgb[0, 1]) == (128, 0, 0) and tuple(rgb[1, 1]) == (0, 64, 128)
    assert tuple(rgb[1, 0]) == (255, 255, 255)  # ignore -> ignore_color, not palette[255]
    assert tuple(viz.colorize(mask, ignore_color=(1, 2, 3))[1, 0]) == (1, 2, 3)
    assert tuple(viz.colorize(mask, ignore_index=None)[1, 0]) == (224, 224, 192)
    custom = viz.colorize(torch.tensor([[0, 1]]), palette=[(9, 9, 9), (7, 7, 7)])  # tensors work too
    assert custom.tolist() == [[[9, 9, 9], [7, 7, 7]]]
    with pytest.raises(ValueError, match="palette has 2 colours"):
        viz.colorize(np.array([[2]]), palette=[(0, 0, 0), (1, 1, 1)])
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        viz.colorize(np.zeros((1, 2, 3), int))


def test_overlay_odd_sizes_and_resized_mask():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    mask = np.zeros((19, 27), np.int64)  # another size: resized with nearest neighbour
    mask[:, 14:] = 1
    mask[0, 0] = 255
    out = viz.overlay(image, mask, alpha=0.5)
    assert out.shape == (37, 53, 3) and out.dtype == np.uint8
    # right half blended with red (128, 0, 0), left with black; the ignored corner keeps the image
    expected = np.round(0.5 * image[30, 50].astype(float) + 0.5 * np.array([128, 0, 0])).astype(np.uint8)
    assert np.array_equal(out[30, 50], expected)
    assert np.array_equal(out[30, 2], np.round(0.5 * image[30, 2].astype(float)).astype(np.uint8))
    assert np.array_equal(out[0, 0], image[0, 0])
    # nearest resize keeps class boundaries sharp: only the two blended colours per pixel
    rgb_mask = viz.colorize(mask)
    out_rgb = viz.overlay(image, rgb_mask, alpha=1.0)
    assert set(map(tuple, out_rgb.reshape(-1, 3))) <= {(0, 0, 0), (128, 0, 0), (255, 255, 255)}
    # same-size mask, grey float image, alpha 0 gives back the image
    grey = rng.random((37, 53))
    assert viz.overlay(grey, np.ones((37, 53), int), alpha=0.0).shape == (37, 53, 3)


@pytest.mark.parametrize(("k", "rows", "cols"), [(64, 8, 8), (7, 3, 3), (16, 4, 4), (1, 1, 1)])
def test_attention_grid_layout(k, rows, cols):
    h, w, pad, up = 5, 7, 2, 3
    assert viz.grid_shape(k) == (rows, cols)
    # map i is constant i + 1 except one brighter pixel -> after per-map scaling each tile is
    # distinguishable; use gray so values are exact
    att = np.zeros((k, h, w), np.float32)
    for i in range(k):
        att[i] = 0.5
        att[i, i % h, i % w] = 1.0
    grid = viz.attention_grid(
        torch.from_numpy(att),
        pad=pad,
        cmap="gray",
        upscale=up,
        pad_color=(255, 0, 0),
        scale="per_map",
        annotate=False,
    )
    th, tw = h * up, w * up
    assert grid.shape == (rows * (th + pad) + pad, cols * (tw + pad) + pad, 3) and grid.dtype == np.uint8
    for i in range(k):
        r, c = divmod(i, cols)
        y, x = pad + r * (th + pad), pad + c * (tw + pad)
        tile = grid[y : y + th, x : x + tw, 0]
        assert tile.max() == 255, i  # each map scaled to its own max
        peak = np.argwhere(tile == 255)
        assert (peak.min(axis=0) == [(i % h) * up, (i % w) * up]).all(), i  # map i sits at tile i
        assert (tile == 128).sum() == th * tw - up * up
    # padding and unused tiles are the pad colour
    assert (grid[0] == [255, 0, 0]).all() and (grid[:, 0] == [255, 0, 0]).all()
    if rows * cols > k:
        r, c = divmod(rows * cols - 1, cols)
        y, x = pad + r * (th + pad), pad + c * (tw + pad)
        assert (grid[y : y + th, x : x + tw] == [255, 0, 0]).all()


def test_attention_grid_k64_colour_and_defaults():
    att = torch.softmax(torch.randn(1, 64, 9, 11), dim=1)
    grid = viz.attention_grid(att, annotate=False)  # batch of one accepted; viridis; pad 1
    assert grid.shape == (8 * 10 + 1, 8 * 12 + 1, 3)
    assert viz.attention_grid(att[0], cols=16, annotate=False).shape == (4 * 10 + 1, 16 * 12 + 1, 3)
    annotated = viz.attention_grid(att)  # title above, strip captions left, colour bar right
    assert annotated.shape[0] > grid.shape[0] and annotated.shape[1] > grid.shape[1] + 40
    with pytest.raises(ValueError, match=r"\(K, h, w\)"):
        viz.attention_grid(torch.zeros(2, 3, 4, 4))


def test_argmax_basis_map():
    att = np.zeros((7, 4, 6), np.float32)
    owner = np.arange(24).reshape(4, 6) % 7
    np.put_along_axis(att, owner[None], 1.0, axis=0)
    colors = viz.distinct_colors(7)
    assert len({tuple(c) for c in colors}) == 7
    out = viz.argmax_basis_map(att, upscale=2)
    assert out.shape == (8, 12, 3) and out.dtype == np.uint8
    assert np.array_equal(out[::2, ::2], colors[owner])
    assert len({tuple(c) for c in viz.distinct_colors(64)}) == 64


def test_legend_image():
    names = ["background", "aeroplane", "bicycle"]
    full = viz.legend(names)
    some = viz.legend(names, present=[1])
    assert full.dtype == np.uint8 and full.ndim == 3 and some.shape[0] < full.shape[0]
    assert (full == np.array([128, 0, 0], np.uint8)).all(axis=-1).any()  # aeroplane swatch


def test_figure_for_sample():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    label = rng.integers(0, 3, (37, 53))
    label[:2] = 255
    pred = rng.integers(0, 3, (37, 53))
    att = torch.softmax(torch.randn(16, 5, 7), dim=0)
    fig = viz.figure_for_sample(image, label, pred, att, class_names=["bg", "a", "b"])
    assert len(fig.axes) == 6
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["bg", "a", "b"]
    png = viz.figure_to_png(fig, dpi=50)
    assert Image.open(io.BytesIO(png)).size[0] > 100
    assert len(viz.figure_for_sample(image, None, pred).axes) == 3


def test_attention_grid_shared_scale_keeps_flat_maps_flat():
    """A nearly flat map is dark beside a peaked one on the shared scale, bright on per-map."""
    att = np.full((2, 6, 6), 0.1, np.float32)
    att[0, 0, 0] = 0.11  # nearly flat, low
    att[1, 2, 2] = 0.9  # one strong pixel
    shared = viz.attention_grid(att, cmap="gray", pad=0, cols=2, annotate=False)
    per_map = viz.attention_grid(att, cmap="gray", pad=0, cols=2, scale="per_map", annotate=False)
    assert shared[1:, 1:6, 0].max() == round(0.1 / 0.9 * 255)  # flat map: 0.1 of the top 0.9
    assert per_map[1:, 1:6, 0].max() == round(0.1 / 0.11 * 255)  # looks "high everywhere"
    # the annotated picture names its scale and has a caption strip and a colour bar
    annotated = viz.attention_grid(att, cmap="gray", pad=0, cols=2, upscale=8)
    levels = len(np.unique(annotated[..., 0]))
    assert levels > 30 > len(np.unique(shared))  # the colour bar's gradient (and text) was added
    with pytest.raises(ValueError, match="shared"):
        viz.attention_grid(att, scale="log")
