"""`emanet report RUN_DIR [--out FILE]`: one self-contained HTML page about a run."""


def configure(parser) -> None:
    parser.add_argument("run_dir", help="a run directory written by `emanet train` (partial runs are fine)")
    parser.add_argument("--out", default=None, help="output HTML file (default: RUN_DIR/report.html)")
    parser.add_argument("--max-samples", type=int, default=6, help="validation samples to show (default: 6)")


def run(args) -> int:
    from ..report import write_report

    path = write_report(args.run_dir, args.out, max_samples=args.max_samples)
    print(f"wrote {path} (open it in a browser: file://{path.resolve()})")
    return 0
