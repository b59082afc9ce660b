"""`emanet demo`: a forward pass of emanet_r18 on a made-up scene, with its attention maps.

(The training demo on the built-in synthetic dataset replaces this once it lands.)
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .models import create_model

__all__ = ["run_demo", "attention_grid"]


def attention_grid(attention: torch.Tensor, cols: int | None = None, pad: int = 1) -> np.ndarray:
    """Tile K responsibility maps (K, h, w) into one grey-scale uint8 image, each map
    scaled to its own [0, max]."""
    k, h, w = attention.shape
    cols = cols or int(np.ceil(np.sqrt(k)))
    rows = int(np.ceil(k / cols))
    grid = np.zeros((rows * (h + pad) + pad, cols * (w + pad) + pad), dtype=np.uint8)
    maps = attention.detach().float().cpu().numpy()
    for i in range(k):
        r, c = divmod(i, cols)
        m = maps[i] / max(float(maps[i].max()), 1e-12)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y : y + h, x : x + w] = np.round(m * 255).astype(np.uint8)
    return grid


def _scene(size: int, seed: int) -> torch.Tensor:
    """A few coloured discs and boxes on a noisy background, normalised like ImageNet."""
    rng = np.random.default_rng(seed)
    img = rng.uniform(0.3, 0.5, (size, size, 3))
    yy, xx = np.mgrid[:size, :size]
    for _ in range(4):
        cy, cx, r = rng.integers(0, size, 2).tolist() + [int(rng.integers(size // 10, size // 4))]
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 1, 3)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    return torch.tensor(((img - mean) / std).transpose(2, 0, 1)[None], dtype=torch.float32)


def run_demo(out: str | Path = "runs/demo", seed: int = 0, size: int = 129) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = create_model("emanet_r18", num_classes=6).eval()
    image = _scene(size, seed)
    start = time.perf_counter()
    with torch.inference_mode():
        result = model(image, return_attention=True)
    elapsed = time.perf_counter() - start
    path = out / "attention.png"
    Image.fromarray(attention_grid(result["attention"][0])).resize((512, 512), Image.NEAREST).save(path)
    print(
        f"emanet_r18 forward at {size}x{size}: logits {tuple(result['out'].shape)}, "
        f"attention {tuple(result['attention'].shape)} in {elapsed * 1000:.0f} ms"
    )
    print(f"wrote {path}")
    return path
