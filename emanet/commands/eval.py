"""`emanet eval CONFIG --checkpoint PATH`: evaluate on the recipe's validation split."""


def configure(parser) -> None:
    parser.add_argument("config", help="a shipped recipe name or a YAML file (data and eval sections)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. data.root=/data/VOC2012")
    parser.add_argument(
        "--checkpoint", required=True, help="checkpoint file, run directory or pretrained directory"
    )
    parser.add_argument(
        "--mode", choices=["whole", "slide"], default=None, help="inference mode (default: recipe)"
    )
    parser.add_argument("--ms-flip", action="store_true", help="multi-scale (eval.ms_flip_scales) + flip")
    parser.add_argument(
        "--eval-iters", type=int, default=None, help="EM iterations at inference (EMA models)"
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16"),
        default=None,
        help="run through emanet.optimize_for_inference (BN folding, fused EM unit, channels_last, "
        "autocast); auto: bf16 where the device runs it natively, else fp32",
    )
    parser.add_argument("--out", default=None, help="write the metrics JSON here")
    parser.add_argument("--no-progress", action="store_true")


def run(args) -> int:

    from ..data.preflight import unlabelled_split_message
    from ..engine.builders import build_val_loader, resolve_device
    from ..engine.config import load_config
    from ..engine.distributed import cleanup_distributed, init_distributed
    from ..engine.evaluate import EvalSettings, evaluate
    from ..engine.inference import load_model
    from ..fileio import write_json

    cfg = load_config(args.config, args.overrides)
    device = resolve_device(cfg.train.device)
    info = init_distributed(device)
    try:
        overrides = {"eval_iters": args.eval_iters} if args.eval_iters else {}
        model, meta = load_model(args.checkpoint, **overrides)
        model.to(device)
        if args.precision:
            from ..inference import optimize_for_inference

            model = optimize_for_inference(model, precision=args.precision)
        dataset, loader = build_val_loader(cfg, info.rank, info.world_size)
        names = list(getattr(dataset, "CLASSES", []) or meta.get("class_names") or [])
        if model.num_classes != dataset.num_classes:
            raise ValueError(
                f"{args.checkpoint} predicts {model.num_classes} classes but {cfg.data.name} has "
                f"{dataset.num_classes}; evaluate it on the dataset it was trained for"
            )
        settings = EvalSettings.from_config(
            cfg,
            dataset.num_classes,
            names,
            mode=args.mode,
            ms_flip=args.ms_flip,
            amp="none" if args.precision else None,  # optimize_for_inference autocasts itself
            progress=info.is_main and not args.no_progress,
        )
        result = evaluate(model, loader, settings, device)
        if info.is_main:
            print(_table(result))
            unlabelled = unlabelled_split_message(result, cfg.data.val_split)
            if unlabelled:
                print(f"warning: {unlabelled}")
            if args.out:
                write_json(args.out, result, indent=1)
    finally:
        cleanup_distributed()
    return 0


def _table(result) -> str:
    lines = [f"{'class':24s} {'IoU':>7s} {'acc':>7s}"]
    for name, iou, acc in zip(
        result["class_names"], result["per_class_iou"], result["per_class_acc"], strict=True
    ):
        fmt = lambda v: "    n/a" if v is None else f"{100 * v:7.2f}"  # noqa: E731
        lines.append(f"{name:24s} {fmt(iou)} {fmt(acc)}")
    lines.append(
        f"mIoU {100 * result['mIoU']:.2f}  pixel acc {100 * result['pixel_acc']:.2f}  "
        f"mean acc {100 * result['mean_acc']:.2f}  ({result['num_images']} images, {result['mode']}"
        f"{', MS+flip' if result['ms_flip'] else ''})"
    )
    if result["absent_classes"]:
        lines.append(
            "left out of the means (absent from both prediction and ground truth): "
            + ", ".join(result["absent_classes"])
        )
    return "\n".join(lines)
