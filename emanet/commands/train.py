"""`emanet train CONFIG [key=value ...]`: train with a recipe (works under torchrun)."""


def configure(parser) -> None:
    parser.add_argument(
        "config", nargs="?", default=None, help="a shipped recipe name (see --list) or a YAML file"
    )
    parser.add_argument("--list", action="store_true", help="list the shipped recipes and exit")
    parser.add_argument(
        "overrides", nargs="*", help="key=value, e.g. train.iters=100 data.root=/data/VOC2012"
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        help="continue from the latest checkpoint of output_dir (or from the given file)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from pathlib import Path

    from ..engine.config import load_config
    from ..engine.distributed import cleanup_distributed
    from ..engine.trainer import Trainer, TrainingStopped

    if args.list:
        from ..engine.config import list_recipes

        print("\n".join(list_recipes()))
        return 0
    if args.config is None:
        raise ValueError("emanet train needs a CONFIG: a recipe name (emanet train --list) or a YAML file")
    overrides, resume = list(args.overrides), args.resume
    if isinstance(resume, str) and "=" in resume and not Path(resume).exists():
        overrides, resume = [*overrides, resume], True  # `--resume key=value`: a bare --resume
    cfg = load_config(args.config, overrides)
    try:
        trainer = Trainer(cfg, resume=resume, progress=not args.no_progress)
        try:
            result = trainer.fit()
        except TrainingStopped as e:
            return e.exit_code  # the trainer printed where it stopped and how to resume
        if trainer.is_main:
            print(
                f"{cfg.model.name}: mIoU {100 * result['mIoU']:.2f}  "
                f"pixel acc {100 * result['pixel_acc']:.2f}  ({result['num_images']} images) "
                f"-> {cfg.output_dir}"
            )
    finally:
        cleanup_distributed()
    return 0
