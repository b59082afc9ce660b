"""Training step time: forward, backward and SGD step of one model, medians of timed steps.

    python benchmarks/bench_train_step.py --model emanet_r50 --size 256 --batch 2 --amp none

Prints the capability line (CPU, ISA, native bf16, threads) beside the figures. bf16 autocast on
a CPU without native bf16 is emulated (slow); the script runs it anyway when asked.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

import emanet


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="emanet_r50")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--amp", choices=("none", "bf16"), default="none")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        from emanet.capability import describe

        machine = describe()
    except ImportError:  # revisions before emanet.capability
        machine = f"torch ISA: {torch.backends.cpu.get_cpu_capability()}; threads: {torch.get_num_threads()}"
    torch.manual_seed(0)
    model = emanet.create_model(args.model, num_classes=21).train()
    opt = torch.optim.SGD([q for q in model.parameters() if q.requires_grad], lr=1e-3, momentum=0.9)
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, 21, (args.batch, args.size, args.size))
    times = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.amp == "bf16"):
            out = model(x)
        loss = F.cross_entropy(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    result = {
        "machine": machine,
        "config": vars(args),
        "median_s": statistics.median(times),
        "times_s": times,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
