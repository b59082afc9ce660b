"""`emanet demo`: the main job on the built-in synthetic data (no download)."""


def configure(parser) -> None:
    parser.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
    parser.add_argument("--seed", type=int, default=66)
    parser.add_argument(
        "--iters", type=int, default=None, help="training iterations per model (default: recipe)"
    )
    parser.add_argument("--no-report", action="store_true", help="skip the HTML report")
    parser.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    from ..demo import run_demo

    run_demo(
        args.out, seed=args.seed, iters=args.iters, report=not args.no_report, progress=not args.no_progress
    )
    return 0
