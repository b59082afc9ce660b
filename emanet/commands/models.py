"""`emanet models [PATTERN]`: list the registered models."""


def configure(parser) -> None:
    parser.add_argument("pattern", nargs="?", default=None, help='shell-style filter, e.g. "emanet_*"')


def run(args) -> int:
    from ..models import describe_model, list_models

    for name in list_models(args.pattern):
        print(f"{name:16s} {describe_model(name)}")
    return 0
