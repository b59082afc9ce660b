"""EMAU speed: the authors' formulation against ours, interleaved in one process.

The authors' formulation is written out here from docs/method.md §2–3 (conv_in, permute, bmm,
softmax over K, L1 over N, bmm, L2 over C, bmm reconstruction, ReLU, conv_out, BN, residual,
ReLU), sharing the weights of an `emanet.EMAU`, so all variants compute the same function.
Variants run round-robin, one call each per round, and medians are reported: the machine's
load drifts, so only ratios from the same process mean anything.

    python benchmarks/bench_emau.py                       # C=512 K=64 T=3, 65×65, batch 1, fp32
    python benchmarks/bench_emau.py --size 129 --batch 2 --rounds 10
    python benchmarks/bench_emau.py --products            # + each product of the fast path alone
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from emanet.nn.ema_fast import _mm_nt

from emanet import EMAU
from emanet.fileio import write_json


def authors_emau(unit: EMAU, x: torch.Tensor, num_iters: int) -> torch.Tensor:
    """The authors' EMAU forward (eval), (B, C, H, W) -> (B, C, H, W)."""
    identity = x
    x = unit.conv_in(x)
    b, c, h, w = x.shape
    x = x.view(b, c, h * w)  # (B, C, N)
    mu = unit.bases.repeat(b, 1, 1)  # (B, C, K)
    with torch.no_grad():
        for _ in range(num_iters):
            x_t = x.permute(0, 2, 1)  # (B, N, C)
            z = torch.bmm(x_t, mu)  # (B, N, K)
            z = F.softmax(z, dim=2)
            z_ = z / (1e-6 + z.sum(dim=1, keepdim=True))
            mu = torch.bmm(x, z_)  # (B, C, K)
            mu = mu / (1e-6 + mu.norm(dim=1, keepdim=True))
    z_t = z.permute(0, 2, 1)  # (B, K, N)
    x = mu.matmul(z_t).view(b, c, h, w)
    x = F.relu(x, inplace=True)
    x = unit.bn_out(unit.conv_out(x))
    return F.relu(x + identity, inplace=True)


def conv_variant_emau(unit: EMAU, x: torch.Tensor, num_iters: int) -> torch.Tensor:
    """The alternative issue 6 suggests, kept here to compare: conv_in folded as in ours, but
    the E-step and the reconstruction as 1×1 convolutions with mu as the weight (oneDNN conv)
    and the M-step as `torch.mm`. Batch 1, NCHW, eps "add", L2 bases."""
    identity = x
    _, c, h, w = x.shape
    weight = unit.conv_in.weight.view(c, c)
    bias = unit.conv_in.bias
    f = x[0].reshape(c, h * w)  # (C, N)
    mu = unit.bases[0]  # (C, K)
    k = mu.shape[1]
    for _ in range(num_iters):
        logits = F.conv2d(x, (weight.t() @ mu).t().reshape(k, c, 1, 1), bias @ mu)  # (1, K, H, W)
        z = logits.softmax(dim=1).view(k, h * w)
        s = z.sum(dim=1, keepdim=True)
        m = torch.mm(f, (z / (1e-6 + s)).t())  # (C, K)
        mu = weight @ m + bias[:, None] * (s / (1e-6 + s)).t()
        mu = mu / (1e-6 + mu.norm(dim=0, keepdim=True))
    recon = F.conv2d(z.view(1, k, h, w), mu.reshape(c, k, 1, 1)).relu_()
    out = unit.bn_out(unit.conv_out(recon))
    return F.relu(out + identity, inplace=True)


def time_products(channels: int, bases: int, size: int, rounds: int) -> list[dict]:
    """Each product of the fast path (channels_last, batch 1) alone, repeated on the same
    operands: what the unit's time would be made of if nothing else cost anything."""
    n = size * size
    feats = torch.randn(n, channels)  # (N, C) rows, as channels_last gives them
    weight = torch.randn(bases, channels)  # (K, C) E-step weight
    z = torch.rand(n, bases).softmax(dim=1)  # (N, K)
    z_l1 = (z / z.sum(dim=0)).t().contiguous()  # (K, N)
    mu = torch.randn(channels, bases)  # (C, K)
    recon = torch.rand(n, channels)  # (N, C)
    w_out = torch.randn(channels, channels) / channels**0.5  # (C, C)
    products = {  # name: (function, multiply-adds)
        "E-step x mu^T": (lambda: _mm_nt(feats, weight), n * channels * bases),
        "M-step z^T x": (lambda: _mm_nt(z_l1, feats.t()), n * channels * bases),
        "reconstruction + ReLU": (lambda: _mm_nt(z, mu, relu=True), n * channels * bases),
        "conv_out": (lambda: _mm_nt(recon, w_out), n * channels * channels),
    }
    rows = []
    print(f"\neach product alone, {rounds} calls, {torch.get_num_threads()} threads")
    print(f"{'product':34s} {'median ms':>10s} {'GFLOP/s':>9s}")
    for name, (fn, macs) in products.items():
        for _ in range(5):
            fn()
        ts = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        med = statistics.median(ts)
        rows.append({"product": name, "median_ms": med * 1e3, "gflops": 2 * macs / med / 1e9})
        print(f"{name:34s} {med * 1e3:10.3f} {rows[-1]['gflops']:9.0f}")
    return rows


def _ours(unit: EMAU, fast: bool):
    def run(x):
        unit.use_fast_path = fast
        return unit(x)

    return run


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--channels", type=int, default=512)
    p.add_argument("--bases", type=int, default=64)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--size", type=int, default=65, help="feature map side (65 = 513 input at OS8)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--channels-last", action="store_true", help="also time ours on channels_last input")
    p.add_argument("--conv-variant", action="store_true", help="also time the 1×1-conv formulation")
    p.add_argument("--bf16", action="store_true", help="also time ours under CPU autocast bf16")
    p.add_argument("--products", action="store_true", help="also time each product of the fast path alone")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    unit = EMAU(args.channels, num_bases=args.bases, num_iters=args.iters).eval()
    x = torch.randn(args.batch, args.channels, args.size, args.size).relu()
    variants = {
        "authors (bmm)": lambda x: authors_emau(unit, x, args.iters),
        "ours, reference path": _ours(unit, False),
        "ours, fast path": _ours(unit, True),
    }
    inputs = dict.fromkeys(variants, x)
    if args.conv_variant and args.batch == 1:
        variants["1×1-conv variant"] = lambda x: conv_variant_emau(unit, x, args.iters)
        inputs["1×1-conv variant"] = x
    if args.channels_last:
        variants["ours, fast path, channels_last"] = _ours(unit, True)
        inputs["ours, fast path, channels_last"] = x.contiguous(memory_format=torch.channels_last)
    if args.bf16:
        fast = _ours(unit, True)

        def bf16(x):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return fast(x)

        variants["ours, fast path, bf16 autocast"] = bf16
        inputs["ours, fast path, bf16 autocast"] = x

    with torch.inference_mode():
        reference = variants["authors (bmm)"](x.clone())
        errors = {}
        for name, fn in variants.items():
            out = fn(inputs[name].clone()).float()
            errors[name] = float((out - reference).abs().max())
        times = {name: [] for name in variants}
        for r in range(args.warmup + args.rounds):
            for name, fn in variants.items():
                xin = inputs[name].clone()  # the authors' ReLU is in place
                t0 = time.perf_counter()
                fn(xin)
                if r >= args.warmup:
                    times[name].append(time.perf_counter() - t0)

    base = statistics.median(times["authors (bmm)"])
    rows = []
    print(
        f"EMAU C={args.channels} K={args.bases} T={args.iters} {args.size}×{args.size} "
        f"batch {args.batch} eval, "
        f"{torch.get_num_threads()} threads, {args.rounds} interleaved rounds"
    )
    print(f"{'variant':34s} {'median ms':>10s} {'min–max ms':>16s} {'speed-up':>9s} {'max |err|':>10s}")
    for name, ts in times.items():
        med = statistics.median(ts)
        rows.append(
            {
                "variant": name,
                "median_ms": med * 1e3,
                "min_ms": min(ts) * 1e3,
                "max_ms": max(ts) * 1e3,
                "speedup_vs_authors": base / med,
                "max_abs_err_vs_authors": errors[name],
            }
        )
        print(
            f"{name:34s} {med * 1e3:10.2f} {min(ts) * 1e3:7.2f}–{max(ts) * 1e3:<8.2f} {base / med:8.2f}× "
            f"{errors[name]:10.2e}"
        )
    result = {"config": vars(args), "rows": rows}
    if args.products:
        with torch.inference_mode():
            result["products"] = time_products(args.channels, args.bases, args.size, args.rounds)
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
