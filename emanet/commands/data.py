"""`emanet data check CONFIG [key=value ...]`: read every sample and report what is wrong."""

from __future__ import annotations

import argparse

__all__ = ["configure", "run"]


def configure(parser) -> None:
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    check = sub.add_parser(
        "check",
        help="read every train and val sample; report sizes, modes, mask values, problems; HTML page",
        description="Read every sample of the train and val splits and say what is wrong, file by "
        "file, with the fix. Exit status 1 when a problem is an error.",
    )
    check.add_argument("config", help="a shipped recipe name (e.g. folder) or a YAML file")
    check.add_argument("overrides", nargs="*", help="key=value, e.g. data.root=my_data")
    check.add_argument("--html", default=None, help="the HTML page (default: OUTPUT_DIR/data_check.html)")
    check.add_argument("--workers", type=int, default=8, help="threads reading files (default: 8)")
    check.add_argument("--no-progress", action="store_true", help="no progress bar")
    check.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def run(args) -> int:
    from pathlib import Path

    from ..data.check import check_dataset
    from ..engine.config import load_config
    from ..report.data_page import write_check_page

    cfg = load_config(args.config, list(args.overrides))
    report = check_dataset(cfg, workers=args.workers, progress=not args.no_progress)
    for line in report.lines():
        print(line)
    page = write_check_page(report, args.html or Path(cfg.output_dir) / "data_check.html")
    print(f"wrote {page}")
    return 0 if report.ok else 1
