"""Whole-model inference speed: plain eager fp32 against the fast paths, interleaved.

Variants (same weights, batch 1, eval):
- "eager fp32, reference EM": the model with `EMAU.use_fast_path = False` (the code before
  the fast EM core; the baseline of the targets);
- "eager fp32": the model as created (fast EM core on by default);
- "optimized fp32": `optimize_for_inference(model)` (conv–BN folding, channels_last);
- "optimized bf16": the same under CPU autocast bf16;
- "compiled fp32" and "compiled bf16" with --compile (`optimize_for_inference(..., compile=True)`:
  torch.compile with Inductor freezing; the first call compiles and is excluded).
Rounds run every variant once, in turn; medians and ratios to the baseline are printed, plus
the relative L2 error and argmax agreement of each variant's logits against the baseline.

    python benchmarks/bench_model.py --model emanet_r101 --size 513 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import emanet
from emanet.fileio import write_json
from emanet.inference.optimize import argmax_agreement
from emanet.nn import EMAU


def _set_fast_em(model, enabled: bool) -> None:
    for m in model.modules():
        if isinstance(m, EMAU):
            m.use_fast_path = enabled


def _randomise_bn(model, seed: int = 0) -> None:
    # Random but plausible running statistics, so BN folding is not the identity.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_((torch.rand(m.num_features, generator=g) - 0.5) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="emanet_r101")
    p.add_argument("--pretrained", default=None, help="a save_pretrained directory instead of random weights")
    p.add_argument("--size", type=int, default=513)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--compile", action="store_true", help="add torch.compile fp32 and bf16 variants")
    p.add_argument(
        "--bn-stats",
        choices=("random", "default"),
        default="random",
        help="random running statistics (folding exercised) or the init's mean 0 / var 1",
    )
    p.add_argument("--skip", nargs="*", default=[], help="variant names to leave out")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    if args.pretrained:
        model = emanet.from_pretrained(args.pretrained).eval()
        args.model = model.name
    else:
        model = emanet.create_model(args.model, num_classes=21).eval()
        if args.bn_stats == "random":
            _randomise_bn(model)
    x = torch.randn(1, 3, args.size, args.size)

    def eager(fast_em: bool):
        def run(images):
            _set_fast_em(model, fast_em)
            with torch.inference_mode():
                return model(images)

        return run

    variants = {
        "eager fp32, reference EM": eager(False),
        "eager fp32": eager(True),
        "optimized fp32": emanet.optimize_for_inference(model, "fp32"),
        "optimized bf16": emanet.optimize_for_inference(model, "bf16"),
    }
    if args.compile:
        variants["compiled fp32"] = emanet.optimize_for_inference(model, "fp32", compile=True)
        variants["compiled bf16"] = emanet.optimize_for_inference(model, "bf16", compile=True)
    for name in args.skip:
        variants.pop(name, None)

    base_name = next(iter(variants))
    outputs, compile_s = {}, {}
    for name, fn in variants.items():
        t0 = time.perf_counter()
        outputs[name] = fn(x).float()
        compile_s[name] = time.perf_counter() - t0
    times = {name: [] for name in variants}
    for r in range(args.warmup + args.rounds):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            fn(x)
            if r >= args.warmup:
                times[name].append(time.perf_counter() - t0)

    want = outputs[base_name]
    base = statistics.median(times[base_name])
    print(
        f"{args.model} 1×3×{args.size}×{args.size}, {torch.get_num_threads()} threads, "
        f"{args.rounds} interleaved rounds after {args.warmup} warm-up"
    )
    header = f"{'variant':26s} {'median s':>9s} {'min–max s':>13s} "
    header += f"{'speed-up':>9s} {'rel L2':>9s} {'argmax':>8s}"
    print(header)
    rows = []
    for name, ts in times.items():
        med = statistics.median(ts)
        got = outputs[name]
        row = {
            "variant": name,
            "median_s": med,
            "min_s": min(ts),
            "max_s": max(ts),
            "first_call_s": compile_s[name],
            "speedup": base / med,
            "rel_l2": float((got - want).norm() / want.norm()),
            "argmax_agreement": argmax_agreement(got, want),
        }
        rows.append(row)
        print(
            f"{name:26s} {med:9.3f} {min(ts):6.3f}–{max(ts):<6.3f} {base / med:8.2f}× "
            f"{row['rel_l2']:9.1e} {row['argmax_agreement']:8.4f}"
        )
    result = {"config": vars(args), "rows": rows}
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
