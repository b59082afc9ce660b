"""The `emanet` command.

Each subcommand is a module in `emanet/commands/` with `configure(parser)` and `run(args)`;
this file only builds the parser and turns errors into one line (`--debug` shows the traceback).
Command modules import torch inside `run` only, so `--help` and `--version` stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ._version import __version__

__all__ = ["main", "build_parser", "COMMANDS"]

# name -> (module in emanet.commands, one-line help)
COMMANDS = {
    "models": ("models", "list the registered models"),
    "demo": ("demo", "run the demo on the built-in data (no download)"),
    "bench": ("bench", "parameters, multiply-adds, latency and peak memory (paper Table 1)"),
    "export": ("export", "export a model to ONNX (dynamic height and width)"),
    "train": ("train", "train a model with a recipe and key=value overrides"),
    "eval": ("eval", "evaluate a checkpoint on a validation split"),
    "predict": ("predict", "segment images; write masks, overlays and attention maps"),
    "convert": ("convert", "import the authors' or OpenMMLab's EMANet checkpoint"),
    "report": ("report", "write RUN_DIR/report.html: curves, evaluation, samples, attention maps"),
    "data": ("data", "check a dataset before training: `emanet data check CONFIG [key=value ...]`"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emanet",
        description="Expectation-Maximization Attention Networks for semantic segmentation.",
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    parser.add_argument("--version", action="version", version=f"emanet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(f"emanet.commands.{module_name}")
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        module.configure(p)
        p.set_defaults(func=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may come after options too: `emanet train demo --no-progress train.iters=5`
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = list(args.overrides) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
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
