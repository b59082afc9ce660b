"""Reduced-precision fidelity on a trained model: argmax agreement and logit error of
`optimize_for_inference` (fp32, bf16) against the eager fp32 model, over a validation split.

Agreement on random weights says little (their logits have small relative margins); this is
the figure that matters for a trained network. Images come from the dataset's validation split
(built-in synthetic scenes by default), optionally resized to --size (bilinear) to time a
network at the paper's 513×513 on scenes it was trained on at a smaller size.

    python benchmarks/bench_agreement.py runs/demo/emanet_r18                    # 100 scenes, 128×128
    python benchmarks/bench_agreement.py runs/r101_synth --size 513 --limit 20   # upsampled to 513×513
    python benchmarks/bench_agreement.py runs/r101_synth --compile               # + compiled variants
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

import emanet
from emanet.data.datasets import build_dataset
from emanet.data.transforms import eval_transforms
from emanet.engine.inference import load_model
from emanet.engine.metrics import ConfusionMatrix
from emanet.fileio import write_json
from emanet.inference.optimize import argmax_agreement


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", help="a run directory, checkpoint file or pretrained directory")
    p.add_argument("--dataset", default="synthetic")
    p.add_argument("--root", default=None)
    p.add_argument("--split", default="val")
    p.add_argument("--size", type=int, default=None, help="resize every image to size×size first")
    p.add_argument("--limit", type=int, default=None, help="the first N images only")
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--compile", action="store_true", help="also the compiled variant of each precision")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    model, meta = load_model(args.checkpoint)
    transform = eval_transforms(
        mean=meta.get("mean") or emanet.data.transforms.IMAGENET_MEAN,
        std=meta.get("std") or emanet.data.transforms.IMAGENET_STD,
        pad_mod=None,
    )
    dataset = build_dataset(args.dataset, args.root, args.split, transform)
    count = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    fast = {p: emanet.optimize_for_inference(model, p) for p in args.precisions}
    if args.compile:  # the first call of each compiles (its time is left out, see `warm`)
        fast.update(
            {f"{p} compiled": emanet.optimize_for_inference(model, p, compile=True) for p in args.precisions}
        )
    warm = set()
    agree = {p: 0.0 for p in fast}
    err2 = {p: 0.0 for p in fast}
    ref2 = 0.0
    seconds = {p: 0.0 for p in ["eager fp32", *fast]}
    pixels = 0
    reference = ConfusionMatrix(model.num_classes, dataset.ignore_index)  # the fp32 model vs the labels
    for i in tqdm(range(count), desc="images", unit="img"):
        sample = dataset[i]
        image, label = sample["image"][None], sample["label"][None]  # (1, 3, H, W), (1, H, W)
        if args.size:
            image = F.interpolate(image, size=(args.size, args.size), mode="bilinear", align_corners=False)
            label = F.interpolate(label[:, None].float(), size=(args.size, args.size), mode="nearest")
            label = label[:, 0].long()
        with torch.inference_mode():
            t0 = time.perf_counter()
            want = model(image)
            seconds["eager fp32"] += time.perf_counter() - t0
        n = want.shape[0] * want.shape[2] * want.shape[3]
        reference.update(want.argmax(dim=1), label)
        ref2 += float(want.double().pow(2).sum())
        for name, fn in fast.items():
            if name not in warm:
                fn(image)
                warm.add(name)
            t0 = time.perf_counter()
            got = fn(image)
            seconds[name] += time.perf_counter() - t0
            agree[name] += argmax_agreement(got, want) * n
            err2[name] += float((got.double() - want.double()).pow(2).sum())
        pixels += n
    h, w = want.shape[2:]
    accuracy = reference.compute()["pixel_acc"]
    print(
        f"{args.checkpoint}: {count} {args.split} images at {h}×{w}, {torch.get_num_threads()} threads; "
        f"eager fp32 pixel accuracy {100 * accuracy:.2f}%"
    )
    print(f"{'precision':14s} {'argmax agreement':>17s} {'rel L2':>9s} {'s/image':>8s}")
    print(f"{'eager fp32':14s} {'(reference)':>17s} {'':>9s} {seconds['eager fp32'] / count:8.3f}")
    rows = []
    for name in fast:
        row = {
            "precision": name,
            "argmax_agreement": agree[name] / pixels,
            "rel_l2": (err2[name] / ref2) ** 0.5,
            "seconds_per_image": seconds[name] / count,
        }
        rows.append(row)
        print(
            f"{name:14s} {100 * row['argmax_agreement']:16.3f}% {row['rel_l2']:9.1e} "
            f"{row['seconds_per_image']:8.3f}"
        )
    result = {"config": vars(args), "images": count, "size": [h, w], "pixel_accuracy": accuracy, "rows": rows}
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
