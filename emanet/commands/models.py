"""`emanet models [PATTERN] [--pretrained]`: the registered models, or the published weights."""


def configure(parser) -> None:
    parser.add_argument("pattern", nargs="?", default=None, help='shell-style filter, e.g. "emanet_*"')
    parser.add_argument(
        "--pretrained",
        action="store_true",
        help="list published weights (full models and ImageNet backbones): accuracy, licence, cache",
    )


def _size(path) -> str:
    return f"{path.stat().st_size / 2**20:.0f} MiB" if path.is_file() else "-"


def run(args) -> int:
    if args.pretrained:
        import fnmatch

        from ..models import zoo

        rows = [(name, e) for name, e in zoo.PRETRAINED.items()]
        rows += [
            (f"backbone_weights=imagenet stem={s} depth={d}", e)
            for (s, d), e in zoo.IMAGENET_BACKBONES.items()
        ]
        print(f"cache: {zoo.cache_dir()} (EMANET_HOME; offline: EMANET_OFFLINE=1)")
        for name, entry in rows:
            if args.pattern and not fnmatch.fnmatch(name, args.pattern):
                continue
            path = zoo.cached_path(entry)
            cached = f"cached {_size(path)}" if path.is_file() else "not cached"
            print(
                f"{name}\n    {entry.url}\n    accuracy: {entry.accuracy or 'not stated by the publisher'}; "
                f"licence: {entry.licence}; {cached}"
            )
        print(f"manual: {zoo.MANUAL}")
        return 0
    from ..models import describe_model, list_models

    for name in list_models(args.pattern):
        print(f"{name:16s} {describe_model(name)}")
    return 0
