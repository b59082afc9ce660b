"""Pictures of segmentations and of what the EM bases attend to.

Everything here takes and returns numpy arrays (torch tensors are accepted too) and uses only
numpy and Pillow, except the colour maps of `attention_grid` (any matplotlib colour map but
``"gray"``) and `figure_for_sample`, which need matplotlib: ``pip install emanet[plot]``.

    from emanet import viz
    rgb = viz.colorize(label)                              # (H, W) class ids -> (H, W, 3) uint8
    blend = viz.overlay(image, pred, alpha=0.5)            # prediction over the image
    grid = viz.attention_grid(attention[0])                # (K, h, w) -> tiles, one colour scale
    owner = viz.argmax_basis_map(attention[0])             # which basis owns each pixel
    fig = viz.figure_for_sample(image, label, pred, attention[0], class_names=names)
"""

from __future__ import annotations

import colorsys
import io
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "colorize",
    "overlay",
    "legend",
    "attention_grid",
    "argmax_basis_map",
    "distinct_colors",
    "grid_shape",
    "figure_for_sample",
    "figure_to_png",
    "default_palette",
]


def _require_matplotlib(what: str):
    try:
        import matplotlib
    except ImportError as e:  # optional extra
        raise ImportError(f"{what} needs matplotlib: pip install emanet[plot]") from e
    return matplotlib


def _numpy(x) -> np.ndarray:
    """A numpy view of an array or a (possibly GPU, possibly autograd) tensor."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def default_palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map, (n, 3) uint8: the palette used when none is given."""
    from .data.palette import voc_palette

    return np.asarray(voc_palette(n), dtype=np.uint8).reshape(-1, 3)


def _palette_array(palette, needed: int) -> np.ndarray:
    pal = default_palette(max(256, needed)) if palette is None else np.asarray(palette)
    pal = pal.astype(np.uint8).reshape(-1, 3)
    if len(pal) < needed:
        raise ValueError(f"palette has {len(pal)} colours but the mask has class id {needed - 1}")
    return pal


def colorize(
    mask,
    palette=None,
    ignore_index: int | None = 255,
    ignore_color: Sequence[int] = (255, 255, 255),
) -> np.ndarray:
    """Colour a mask of class ids.

    Args:
        mask: (H, W) integer class ids.
        palette: (N, 3) RGB colours, one per class id; default the VOC colour map.
        ignore_index: id painted with `ignore_color` instead of its palette colour (None: no
            special case).
        ignore_color: RGB of ignored pixels.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    mask = _numpy(mask)
    if mask.ndim != 2:
        raise ValueError(f"colorize expects an (H, W) mask of class ids, got shape {mask.shape}")
    mask = mask.astype(np.int64)
    ignored = mask == ignore_index if ignore_index is not None else np.zeros(mask.shape, dtype=bool)
    valid = mask[~ignored]
    if valid.size and valid.min() < 0:
        raise ValueError(f"mask has negative class id {int(valid.min())}")
    pal = _palette_array(palette, int(valid.max()) + 1 if valid.size else 0)
    out = pal[np.where(ignored, 0, mask)]
    out[ignored] = np.asarray(ignore_color, dtype=np.uint8)
    return out


def _resize_nearest(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    if arr.shape[:2] == (height, width):
        return arr
    if arr.ndim == 2:  # class ids may exceed 8 bits: resize an index map instead of the values
        rows = (np.arange(height) * arr.shape[0] // height).clip(0, arr.shape[0] - 1)
        cols = (np.arange(width) * arr.shape[1] // width).clip(0, arr.shape[1] - 1)
        return arr[rows[:, None], cols[None, :]]
    return np.asarray(Image.fromarray(arr).resize((width, height), Image.Resampling.NEAREST))


def _as_rgb_image(image) -> np.ndarray:
    """(H, W), (H, W, 1|3|4) uint8 or float in [0, 1] -> (H, W, 3) uint8."""
    image = _numpy(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
    if image.dtype != np.uint8:
        scale = 255.0 if image.max(initial=0) <= 1.0 else 1.0
        image = np.clip(np.round(image.astype(np.float64) * scale), 0, 255).astype(np.uint8)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return image[..., :3]


def overlay(image, mask, palette=None, alpha: float = 0.5, ignore_index: int | None = 255) -> np.ndarray:
    """Blend a mask over an image.

    Args:
        image: (H, W, 3) uint8 RGB (or float in [0, 1], or grey (H, W)).
        mask: (h, w) class ids, or an (h, w, 3) colour mask such as `colorize`'s output. A mask
            of another size is resized to (H, W) with nearest neighbour.
        palette: colours of class ids (default VOC); unused for a colour mask.
        alpha: weight of the mask; ignored pixels of a class-id mask keep the image.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    img = _as_rgb_image(image)
    h, w = img.shape[:2]
    mask = _numpy(mask)
    if mask.ndim == 2:
        ids = _resize_nearest(mask.astype(np.int64), h, w)
        colors = colorize(ids, palette, ignore_index=ignore_index)
        keep = ids == ignore_index if ignore_index is not None else np.zeros((h, w), dtype=bool)
    elif mask.ndim == 3 and mask.shape[2] == 3:
        colors = _resize_nearest(mask.astype(np.uint8), h, w)
        keep = np.zeros((h, w), dtype=bool)
    else:
        raise ValueError(f"overlay expects an (h, w) or (h, w, 3) mask, got shape {mask.shape}")
    blend = (1.0 - alpha) * img.astype(np.float32) + alpha * colors.astype(np.float32)
    out = np.clip(np.round(blend), 0, 255).astype(np.uint8)
    out[keep] = img[keep]
    return out


def legend(
    class_names: Sequence[str],
    palette=None,
    present: Sequence[int] | None = None,
    swatch: int = 14,
    cols: int = 1,
) -> np.ndarray:
    """A legend image: one colour swatch and name per class.

    Args:
        class_names: name of each class id.
        palette: colours of class ids (default VOC).
        present: the class ids to list (default all), e.g. the ids found in a mask.
        swatch: swatch size in pixels.
        cols: number of columns.

    Returns:
        (H, W, 3) uint8 RGB on white.
    """
    ids = list(range(len(class_names))) if present is None else sorted({int(i) for i in present})
    ids = [i for i in ids if 0 <= i < len(class_names)]
    pal = _palette_array(palette, len(class_names))
    font = ImageFont.load_default()
    text_w = max([int(font.getlength(class_names[i])) for i in ids] + [1])
    cell_w, cell_h = swatch + 6 + text_w + 12, swatch + 6
    rows = max(1, math.ceil(len(ids) / cols))
    canvas = Image.new("RGB", (cols * cell_w + 4, rows * cell_h + 4), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for n, i in enumerate(ids):
        r, c = n % rows, n // rows
        x, y = 4 + c * cell_w, 4 + r * cell_h
        draw.rectangle(
            [x, y, x + swatch - 1, y + swatch - 1], fill=tuple(int(v) for v in pal[i]), outline=(0, 0, 0)
        )
        top, bottom = font.getbbox(class_names[i])[1::2]
        ty = y + (swatch - (bottom - top)) / 2 - top  # centre the ink on the swatch
        draw.text((x + swatch + 6, ty), class_names[i], fill=(0, 0, 0), font=font)
    return np.asarray(canvas)


def _attention_array(attention) -> np.ndarray:
    att = _numpy(attention).astype(np.float32)
    if att.ndim == 4 and att.shape[0] == 1:
        att = att[0]
    if att.ndim != 3:
        raise ValueError(f"expected attention of shape (K, h, w), got {att.shape}")
    return np.nan_to_num(att, nan=0.0, posinf=0.0, neginf=0.0)


def _apply_cmap(values: np.ndarray, cmap: str | None) -> np.ndarray:
    """Values in [0, 1] -> uint8 RGB through a matplotlib colour map ("gray"/None: no matplotlib)."""
    if cmap in (None, "gray", "grey"):
        v = np.round(values * 255).astype(np.uint8)
        return np.repeat(v[..., None], 3, axis=-1)
    mpl = _require_matplotlib(f"attention_grid(cmap={cmap!r})")
    lut = mpl.colormaps[cmap].resampled(256)(np.linspace(0.0, 1.0, 256))[:, :3]
    lut = np.round(lut * 255).astype(np.uint8)
    return lut[np.round(values * 255).astype(np.int64)]


def grid_shape(k: int, cols: int | None = None) -> tuple[int, int]:
    """(rows, cols) of the tiling used for K maps: cols = ceil(sqrt(K)), rows = ceil(K / cols)."""
    return max(1, math.ceil(k / (cols := cols or max(1, math.ceil(math.sqrt(k)))))), cols


def attention_grid(
    attention,
    cols: int | None = None,
    pad: int = 1,
    cmap: str | None = "viridis",
    upscale: int = 1,
    pad_color: Sequence[int] = (255, 255, 255),
    scale: str = "shared",
    annotate: bool = True,
) -> np.ndarray:
    """Tile the K responsibility maps of one image: which pixels each basis claims.

    Map i sits at row i // cols, column i % cols; in the tiles' block its top-left pixel is at
    (pad + row * (h * upscale + pad), pad + col * (w * upscale + pad)); the rest is `pad_color`.

    Args:
        attention: (K, h, w) responsibilities (or (1, K, h, w)).
        cols: tiles per row; default ceil(sqrt(K)) (K = 64 -> 8 x 8, K = 7 -> 3 x 3).
        pad: pixels between and around tiles.
        cmap: matplotlib colour map name, or "gray" (no matplotlib needed).
        upscale: integer nearest-neighbour magnification of each map.
        scale: "shared": one colour scale, 0 to the largest responsibility (a flat map looks
            flat); "per_map": each map to its own max (a nearly flat map looks high everywhere).
        annotate: a title naming the scale, a caption left of every strip (its basis ids) and,
            for "shared", a colour bar with its end values. False: the bare tiles.

    Returns:
        (H, W, 3) uint8 RGB; without `annotate`, H = rows * (h * upscale + pad) + pad and
        W = cols * (w * upscale + pad) + pad.
    """
    if scale not in ("shared", "per_map"):
        raise ValueError(f"attention_grid scale={scale!r} is not valid; choose 'shared' or 'per_map'")
    att = _attention_array(attention)
    (k, h, w), (rows, cols) = att.shape, grid_shape(att.shape[0], cols)
    th, tw = h * upscale, w * upscale
    maxima = att.reshape(k, -1).max(axis=1) if att.size else np.zeros(k)
    top = float(maxima.max()) if k else 0.0
    denom = np.maximum(maxima, 1e-12)[:, None, None] if scale == "per_map" else max(top, 1e-12)
    tiles = _apply_cmap(np.clip(att / denom, 0.0, 1.0), cmap)
    if upscale > 1:
        tiles = tiles.repeat(upscale, axis=1).repeat(upscale, axis=2)
    grid = np.empty((rows * (th + pad) + pad, cols * (tw + pad) + pad, 3), dtype=np.uint8)
    grid[:] = np.asarray(pad_color, dtype=np.uint8)
    for i in range(k):
        r, c = divmod(i, cols)
        y, x = pad + r * (th + pad), pad + c * (tw + pad)
        grid[y : y + th, x : x + tw] = tiles[i]
    if not annotate:
        return grid
    return _annotate_grid(grid, k, rows, cols, th + pad, pad, cmap, scale, top)


def _annotate_grid(grid, k, rows, cols, step, pad, cmap, scale, top) -> np.ndarray:
    """Title, one caption per strip (row of tiles) and, for a shared scale, a colour bar."""
    font = ImageFont.load_default()
    captions = [f"b{r * cols}-{min(k, (r + 1) * cols) - 1}" for r in range(rows)]
    left = max(int(font.getlength(c)) for c in captions) + 6
    shared = f"one colour scale 0-{top:.2f}"
    title = f"K={k} responsibilities, " + (shared if scale == "shared" else "each map scaled to its own max")
    bar_w, head = (46 if scale == "shared" else 0), 14
    width = max(left + grid.shape[1] + bar_w, int(font.getlength(title)) + 4)
    canvas = Image.new("RGB", (width, head + grid.shape[0]), (255, 255, 255))
    canvas.paste(Image.fromarray(grid), (left, head))
    draw = ImageDraw.Draw(canvas)
    draw.text((2, 1), title, fill=(0, 0, 0), font=font)
    for r, caption in enumerate(captions):
        y = head + pad + r * step + max(0, (step - pad - 11) // 2)
        draw.text((2, y), caption, fill=(0, 0, 0), font=font)
    if bar_w:
        x0, bar_h = left + grid.shape[1] + 4, max(grid.shape[0] - 2, 8)
        values = np.linspace(1.0, 0.0, bar_h)[:, None].repeat(10, axis=1)
        canvas.paste(Image.fromarray(_apply_cmap(values, cmap)), (x0, head + 1))
        draw.text((x0 + 12, head), f"{top:.2f}", fill=(0, 0, 0), font=font)
        draw.text((x0 + 12, head + bar_h - 10), "0", fill=(0, 0, 0), font=font)
    return np.asarray(canvas)


def distinct_colors(n: int) -> np.ndarray:
    """n distinct colours, (n, 3) uint8: golden-ratio hues, cycling saturation and brightness."""
    colors = []
    for i in range(n):
        hue = (i * 0.6180339887) % 1.0
        sat = (0.9, 0.55, 0.75)[i % 3]
        val = (0.95, 0.7, 0.85, 0.55)[(i // 3) % 4]
        colors.append(colorsys.hsv_to_rgb(hue, sat, val))
    return np.round(np.asarray(colors, dtype=np.float64).reshape(-1, 3) * 255).astype(np.uint8)


def argmax_basis_map(attention, colors=None, upscale: int = 1) -> np.ndarray:
    """Which basis owns each pixel: the argmax over K of the responsibilities, coloured.

    Args:
        attention: (K, h, w) responsibilities (or (1, K, h, w)).
        colors: (K, 3) colours, one per basis; default `distinct_colors(K)`.
        upscale: integer nearest-neighbour magnification.

    Returns:
        (h * upscale, w * upscale, 3) uint8 RGB.
    """
    att = _attention_array(attention)
    colors = distinct_colors(att.shape[0]) if colors is None else np.asarray(colors, dtype=np.uint8)
    out = colors[att.argmax(axis=0)]
    if upscale > 1:
        out = out.repeat(upscale, axis=0).repeat(upscale, axis=1)
    return out


def figure_for_sample(
    image,
    label,
    pred,
    attention=None,
    class_names: Sequence[str] | None = None,
    palette=None,
    ignore_index: int = 255,
    alpha: float = 0.5,
):
    """One figure for one image: image, ground truth, prediction, overlay, and (with attention)
    the responsibility grid and the argmax-basis map, with a legend of the classes present.

    Args:
        image: (H, W, 3) uint8 RGB.
        label: (H, W) ground-truth ids (`ignore_index` shown white), or None.
        pred: (H, W) predicted ids.
        attention: optional (K, h, w) responsibilities.
        class_names: names of the class ids (default "class i").
        palette: colours of class ids (default VOC).

    Returns:
        a `matplotlib.figure.Figure` (made without pyplot: no global state, no window);
        `figure_to_png(fig)` gives PNG bytes.
    """
    _require_matplotlib("figure_for_sample")
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    img = _as_rgb_image(image)
    pred = _numpy(pred).astype(np.int64)
    panels = [("image", img)]
    if label is not None:
        label = _numpy(label).astype(np.int64)
        panels.append(("ground truth", colorize(label, palette, ignore_index)))
    panels.append(("prediction", colorize(pred, palette, ignore_index)))
    panels.append(("overlay", overlay(img, pred, palette, alpha=alpha, ignore_index=ignore_index)))
    if attention is not None:
        att = _attention_array(attention)
        panels.append((f"responsibilities (K={att.shape[0]})", attention_grid(att)))
        panels.append(("argmax basis", argmax_basis_map(att)))

    fig = Figure(figsize=(2.6 * len(panels), 3.3), layout="constrained")
    axes = fig.subplots(1, len(panels))
    for ax, (title, arr) in zip(np.atleast_1d(axes), panels, strict=True):
        ax.imshow(arr, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()

    present = np.unique(np.concatenate([pred.ravel(), label.ravel() if label is not None else []]))
    ids = [int(i) for i in present if i != ignore_index and i >= 0]
    names = (
        list(class_names) if class_names is not None else [f"class {i}" for i in range(max(ids + [0]) + 1)]
    )
    pal = _palette_array(palette, max(ids + [0]) + 1)
    handles = [
        Patch(facecolor=pal[i] / 255.0, edgecolor="black", label=names[i] if i < len(names) else str(i))
        for i in ids
    ]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 8), fontsize=8)
    return fig


def figure_to_png(fig, dpi: int = 100) -> bytes:
    """PNG bytes of a matplotlib figure (works for figures made without pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # attaches itself to the figure
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
