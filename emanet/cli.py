"""The `emanet` command. Each subcommand lives in the module that does the work; this file
only parses arguments and turns errors into one line (`--debug` shows the traceback)."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main", "build_parser"]


def _cmd_models(args) -> int:
    from .models import describe_model, list_models

    for name in list_models(args.pattern):
        print(f"{name:16s} {describe_model(name)}")
    return 0


def _cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(args.out, seed=args.seed)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emanet", description="Expectation-Maximization Attention Networks for semantic segmentation."
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("models", help="list the registered models")
    p.add_argument("pattern", nargs="?", default=None, help='shell-style filter, e.g. "emanet_*"')
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("demo", help="run the demo on the built-in data (no download)")
    p.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("emanet: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # one actionable line; --debug for the traceback
        if args.debug:
            raise
        print(f"emanet: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
