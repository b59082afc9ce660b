"""`emanet predict --checkpoint MODEL INPUTS... --out DIR`: files, folders (recursive), globs,
videos.

The output tree mirrors the inputs below their common folder. Each output name is the input's
whole file name, extension included, plus a suffix, so `a.jpg` and `a.png` never collide:

    a.jpg_mask.png      index PNG of class ids with the palette
    a.jpg_color.png     the mask in colour
    a.jpg_overlay.png   the mask over the image
    a.jpg_attention.png (--attention) the K responsibility maps on one colour scale, a colour bar
    a.jpg_bases.png     (--attention) which basis owns each pixel
    a.jpg_explore.html  (--html) the interactive page: hover a pixel, click a basis
    clip.mp4_overlay.mp4  a video's overlay video, same frame count and rate (`pip install emanet[video]`)

Unreadable files are skipped and listed in one summary line (exit status 1 if any was).
"""

__all__ = ["configure", "run"]


def configure(parser) -> None:
    parser.add_argument("inputs", nargs="+", help="image or video files, folders (recursive) or globs")
    parser.add_argument(
        "--checkpoint", required=True,
        help="checkpoint file, run directory, pretrained directory or published model name",
    )  # fmt: skip
    parser.add_argument("--out", required=True, help="output directory (mirrors the input tree)")
    parser.add_argument("--mode", choices=["whole", "slide"], default="whole", help="inference mode")
    parser.add_argument(
        "--crop", type=int, nargs=2, default=(513, 513), metavar=("H", "W"), help="slide window"
    )
    parser.add_argument(
        "--stride", type=int, nargs=2, default=(341, 341), metavar=("H", "W"), help="slide step"
    )
    parser.add_argument(
        "--ms-flip", action="store_true", help="multi-scale (0.5..1.75) + flip, as eval --ms-flip"
    )
    parser.add_argument(
        "--max-size", type=int, default=2048,
        help="resize images whose long side is larger to this, predict, resize back (0: never)",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=1, help="same-size images per forward pass")
    parser.add_argument("--pad-mod", type=int, default=None, help="pad to H, W = 1 (mod N) as eval.pad_mod")
    parser.add_argument(
        "--attention", action="store_true", help="also write the EM attention maps (EMA models)"
    )
    parser.add_argument("--html", action="store_true", help="also write the interactive explorer page")
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
    parser.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from ..inputs import expand_inputs, is_video
    from ..models.heads import EMAHead
    from ..predict import Predictor
    from .predict_writer import PredictionWriter

    predictor = Predictor(
        args.checkpoint, mode=args.mode, crop=args.crop, stride=args.stride, ms_flip=args.ms_flip,
        precision=args.precision, max_size=args.max_size or None, batch_size=args.batch_size,
        device=args.device, pad_mod=args.pad_mod, eval_iters=args.eval_iters,
    )  # fmt: skip
    wants_attention = args.attention or args.html
    if wants_attention and not isinstance(predictor.model.decode_head, EMAHead):
        raise ValueError(
            f"{predictor.model.name} has no EM attention maps; --attention/--html need an emanet_* model"
        )
    files, missing = expand_inputs(args.inputs)
    skipped = [(text, "") for text in missing]
    writer = PredictionWriter(Path(args.out), predictor, attention=args.attention, html=args.html)
    images = [f for f in files if not is_video(f.path)]
    videos = [f for f in files if is_video(f.path)]
    by_source = {str(f.path): f for f in images}
    done = 0
    bar = tqdm(total=len(files), desc="predict", unit="file", disable=args.no_progress)
    stream = predictor.iter_predict(
        [f.path for f in images], return_probs=args.html, return_attention=wants_attention, skip_errors=True
    )
    for pred in stream:
        bar.update(1)
        if pred.error is not None:
            skipped.append((pred.source, pred.error))
            continue
        writer.write(pred, by_source[pred.source].rel)
        done += 1
    for f in videos:
        from ..video import predict_video

        try:
            info = predict_video(predictor, f.path, writer.path_for(f.rel, "_overlay.mp4"), progress=False)
            tqdm.write(f"{f.path}: {info['frames']} frames at {info['fps']:.3g} fps")
            done += 1
        except (OSError, ValueError) as e:  # PyAV's errors are OSError/ValueError subclasses
            skipped.append((str(f.path), str(e).split("\n")[0]))
        bar.update(1)
    bar.close()
    line = f"predicted {done} of {len(files)} files into {args.out}"
    if skipped:
        listed = "; ".join(f"{p} ({why})" if why else p for p, why in skipped)
        line += f"; skipped {len(skipped)} unreadable: {listed}"
    print(line)
    return 1 if skipped else 0
