"""`emanet export --onnx OUT.onnx`: a model as ONNX with dynamic height and width.

emanet export --onnx emanet_r101.onnx --model emanet_r101
emanet export --onnx model.onnx --checkpoint runs/voc  # a run, checkpoint or pretrained directory
"""

from __future__ import annotations


def configure(parser) -> None:
    parser.add_argument("--onnx", required=True, metavar="OUT", help="ONNX file to write")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="registered model name, with random weights")
    src.add_argument(
        "--checkpoint",
        "--pretrained",
        dest="checkpoint",
        metavar="PATH",
        help="a training checkpoint, run directory or save_pretrained directory",
    )
    parser.add_argument("--num-classes", type=int, default=21, help="with --model")
    parser.add_argument("--size", type=int, nargs=2, default=(64, 64), metavar=("H", "W"), help="trace size")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    parser.add_argument("--static", action="store_true", help="fix batch, height and width to --size")
    parser.add_argument("--attention", action="store_true", help="also output the EM attention maps")
    parser.add_argument("--check", action="store_true", help="compare onnxruntime with PyTorch afterwards")


def run(args) -> int:
    import torch

    from .. import export

    ok, why = export.onnx_available()
    if not ok:
        raise RuntimeError(f"emanet export needs the onnx extra ({why})")
    if args.checkpoint:
        from ..engine.inference import load_model

        model, _ = load_model(args.checkpoint)
    else:
        from ..models import create_model

        model = create_model(args.model, num_classes=args.num_classes).eval()
    path = export.export_onnx(
        model,
        args.onnx,
        sample_size=tuple(args.size),
        opset=args.opset or export.DEFAULT_OPSET,
        dynamic=not args.static,
        return_attention=args.attention,
    )
    print(f"wrote {path}")
    if args.check:
        h, w = args.size
        for size in ((h, w), (h + 8, w + 16)) if not args.static else ((h, w),):
            images = torch.randn(1, model.backbone.in_channels, *size)
            result = export.check_onnx(model, path, images)
            print(
                f"onnxruntime vs PyTorch at {size[0]}×{size[1]}: max |diff| {result['max_abs_diff']:.2e}, "
                f"relative L2 {result['rel_l2']:.2e}, argmax agreement {result['argmax_agreement']:.4f}"
            )
    return 0
