"""`emanet bench`: parameters, multiply-adds, latency and peak memory.

emanet bench --preset table1 --no-latency         # paper Table 1 rows at 513×513 (fast)
emanet bench --preset scaling --json s.json --plot s.png
emanet bench emanet_r18 deeplabv3_r18 --size 257 --repeats 5
"""

from __future__ import annotations


def configure(parser) -> None:
    parser.add_argument("models", nargs="*", help="registered model names (see `emanet models`)")
    parser.add_argument(
        "--preset",
        choices=("table1", "scaling"),
        default=None,
        help="table1: the paper's Table 1 rows (R101, OS8); scaling: EMA vs Non-local over feature sizes",
    )
    parser.add_argument(
        "--size", type=int, default=513, help="input side for models and table1 (default 513)"
    )
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--num-classes", type=int, default=21)
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=None, help="feature sides for scaling (default 33 65 97 129)"
    )
    parser.add_argument("--scope", choices=("unit", "head"), default="unit", help="scaling: blocks or heads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after warm-up (median, min–max)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16"),
        default=None,
        help="models: time them through optimize_for_inference at this precision (default: plain eager)",
    )
    parser.add_argument("--no-latency", action="store_true", help="skip timing (counts and memory only)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--json", default=None, help="write the results as JSON here")
    parser.add_argument("--plot", default=None, help="write a PNG plot here (needs matplotlib)")


def run(args) -> int:
    import torch

    from .. import bench, bench_output
    from ..fileio import write_json

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"--device {args.device} asked for, but torch.cuda.is_available() is False")
    if not args.models and args.preset is None:
        raise ValueError("give model names (see `emanet models`) or --preset table1|scaling")
    if args.repeats < 1:
        raise ValueError(f"--repeats {args.repeats} is not valid; it must be >= 1")
    latency = not args.no_latency
    if args.preset == "table1":
        kind = "table1"
        rows = bench.table1(args.size, args.device, latency, args.repeats, args.warmup)
        title = f"Table 1 at {args.size}×{args.size}, OS8 (head rows: additions to the backbone)"
    elif args.preset == "scaling":
        kind = "scaling"
        sizes = tuple(args.sizes or bench.SCALING_SIZES)
        rows = bench.scaling(
            sizes, scope=args.scope, device=args.device, repeats=args.repeats, warmup=args.warmup
        )
        title = f"EMA vs Non-local ({args.scope}, C=512, batch 1)"
    else:
        kind = "models"
        rows = [
            bench.benchmark_model(
                name,
                args.size,
                args.batch,
                args.num_classes,
                args.device,
                latency,
                args.repeats,
                args.warmup,
                precision=args.precision,
            )
            for name in args.models
        ]
        title = f"{args.batch}×3×{args.size}×{args.size}" + (
            f", optimized {args.precision}" if args.precision else ""
        )
    print(title)
    print(bench_output.format_table(kind, rows))
    result = {"kind": kind, "title": title, "machine": bench.machine_info(args.device), "rows": rows}
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    if args.plot:
        bench_output.plot_results(kind, rows, args.plot, title)
        print(f"wrote {args.plot}")
    return 0
