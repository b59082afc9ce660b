"""`emanet demo`: the main job on the built-in data (no download)."""


def configure(parser) -> None:
    parser.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
    parser.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    from ..demo import run_demo

    run_demo(args.out, seed=args.seed)
    return 0
