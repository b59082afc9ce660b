"""`emanet convert --from official|mmseg SRC OUT_DIR`: a foreign EMANet checkpoint ->
config.json + model.safetensors that `emanet.from_pretrained` loads."""

from typing import cast


def configure(parser) -> None:
    parser.add_argument(
        "--from",
        dest="source_format",
        required=True,
        choices=("official", "mmseg"),
        help="official: the authors' EMANet ({'net': ..., 'step': ...}); mmseg: OpenMMLab EMANet",
    )
    parser.add_argument("src", help="the checkpoint file (.pth), loaded with torch.load(weights_only=True)")
    parser.add_argument("out_dir", help="output directory for config.json + model.safetensors")
    parser.add_argument("--num-classes", type=int, default=None, help="check the class count in the file")


def run(args) -> int:
    from ..models.convert import load_mmseg, load_official
    from ..nn.ema import EMAU

    load = load_official if args.source_format == "official" else load_mmseg
    model = load(args.src, num_classes=args.num_classes)
    model.save_pretrained(args.out_dir, class_names=model.class_names, palette=model.palette)
    emau = cast(EMAU, model.decode_head.emau)  # both loaders build an EMAHead
    print(
        f"wrote {args.out_dir} ({model.name}, {model.num_classes} classes, ema_channels={emau.channels}, "
        f"num_bases={emau.num_bases}); load it with emanet.from_pretrained({str(args.out_dir)!r})"
    )
    return 0
