"""`emanet predict --checkpoint PATH IMAGES... --out DIR [--attention]`.

For each image: NAME_mask.png (index PNG with the dataset palette), NAME_color.png,
NAME_overlay.png and, with --attention, NAME_attention.png (one responsibility map per basis,
as a grid) and NAME_bases.png (which basis owns each pixel).
"""


def configure(parser) -> None:
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument(
        "--checkpoint", required=True, help="checkpoint file, run directory or pretrained directory"
    )
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--attention", action="store_true", help="also write the EM attention maps (EMA models)"
    )
    parser.add_argument(
        "--eval-iters", type=int, default=None, help="EM iterations at inference (EMA models)"
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16"),
        default=None,
        help="run through emanet.optimize_for_inference (BN folding, fused EM unit, channels_last, "
        "autocast); auto: bf16 where the device runs it natively, else fp32",
    )


def run(args) -> int:
    from pathlib import Path

    import numpy as np
    import torch
    from PIL import Image

    from .. import viz
    from ..data.base import read_image
    from ..data.palette import voc_palette
    from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from ..engine.builders import resolve_device
    from ..engine.inference import load_model
    from ..models.heads import EMAHead

    device = resolve_device(args.device)
    overrides = {"eval_iters": args.eval_iters} if args.eval_iters else {}
    model, meta = load_model(args.checkpoint, **overrides)
    model.to(device)
    if args.precision:
        from ..inference import optimize_for_inference

        model = optimize_for_inference(model, precision=args.precision)
    if args.attention and not isinstance(model.decode_head, EMAHead):
        raise ValueError(f"{model.name} has no EM attention maps; --attention needs an emanet_* model")
    palette = [tuple(c) for c in (meta.get("palette") or voc_palette(256))]
    mean = torch.tensor(meta.get("mean") or IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(meta.get("std") or IMAGENET_STD).view(1, 3, 1, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pal_flat = [v for c in palette for v in c][: 256 * 3]
    for path in args.images:
        image = read_image(path)
        x = torch.tensor(image).permute(2, 0, 1)[None].float() / 255.0
        x = ((x - mean) / std).to(device)
        with torch.inference_mode():
            result = model(x, return_attention=args.attention)
        logits = result["out"] if args.attention else result
        pred = logits.argmax(1)[0].cpu().numpy().astype(np.uint8)
        stem = Path(path).stem
        mask = Image.fromarray(pred, mode="P")
        mask.putpalette(pal_flat + [0] * (768 - len(pal_flat)))
        mask.save(out / f"{stem}_mask.png")
        Image.fromarray(viz.colorize(pred, palette)).save(out / f"{stem}_color.png")
        Image.fromarray(viz.overlay(image, pred, palette)).save(out / f"{stem}_overlay.png")
        written = [f"{stem}_mask.png", f"{stem}_color.png", f"{stem}_overlay.png"]
        if args.attention:
            attention = result["attention"][0].float().cpu()
            up = max(1, 256 // max(attention.shape[-2:]))
            Image.fromarray(viz.attention_grid(attention, upscale=up)).save(out / f"{stem}_attention.png")
            Image.fromarray(viz.argmax_basis_map(attention, upscale=8)).save(out / f"{stem}_bases.png")
            written += [f"{stem}_attention.png", f"{stem}_bases.png"]
        print(f"{path}: {', '.join(written)} -> {out}")
    return 0
