"""Prediction throughput: images/s of `emanet.Predictor` over a folder, batch 1 vs batched, plain
model vs `optimize_for_inference` at precision "auto" and explicit "fp32" (and "bf16" only where
`emanet.capability.cpu_has_native_bf16()`: emulated bf16 is slow and says nothing).

With no folder, a folder of N random same-size images is made in a temporary directory; with no
checkpoint, a randomly initialised model (timing does not depend on the weights).

    python benchmarks/bench_predict.py                                   # emanet_r18, 24 × 128²
    python benchmarks/bench_predict.py --folder photos/ --checkpoint runs/voc/emanet_r101
    python benchmarks/bench_predict.py --model emanet_r50 --size 513 --num-images 8 --batch 4
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import emanet
from emanet import capability


def _make_folder(root: Path, n: int, size: int) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        small = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((size, size), Image.BILINEAR).save(root / f"img{i:03d}.png")
    return root


def _time(predictor: emanet.Predictor, folder: Path, repeat: int) -> float:
    """Best images/s over `repeat` passes, after one warm-up pass."""
    n = len(list(predictor.iter_predict(folder)))
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _pred in predictor.iter_predict(folder):
            pass
        best = min(best, time.perf_counter() - start)
    return n / best


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--folder", default=None, help="images to predict (default: generated)")
    p.add_argument("--checkpoint", default=None, help="run dir / checkpoint / pretrained dir / name")
    p.add_argument("--model", default="emanet_r18", help="without --checkpoint: a random model")
    p.add_argument("--options", default='{"ema_channels": 128, "channels": 128, "num_bases": 32}')
    p.add_argument("--size", type=int, default=128, help="generated image side")
    p.add_argument("--num-images", type=int, default=24)
    p.add_argument("--batch", type=int, default=8, help="the batched setting's batch size")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.checkpoint:
        model = args.checkpoint
    else:
        torch.manual_seed(0)
        model = emanet.create_model(args.model, 21, **json.loads(args.options)).eval()
    precisions = [None, "auto", "fp32"] + (["bf16"] if capability.cpu_has_native_bf16() else [])
    print(capability.describe())
    print(f"torch threads: {torch.get_num_threads()}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.folder) if args.folder else _make_folder(Path(tmp), args.num_images, args.size)
        for precision in precisions:
            for batch in (1, args.batch):
                predictor = emanet.Predictor(model, precision=precision, batch_size=batch, device="cpu")
                ips = _time(predictor, folder, args.repeat)
                row = {"precision": precision or "plain", "batch": batch, "images_per_s": round(ips, 2)}
                rows.append(row)
                print(f"{row['precision']:>6s}  batch {batch:2d}  {ips:8.2f} images/s")
    return rows


if __name__ == "__main__":
    main()
