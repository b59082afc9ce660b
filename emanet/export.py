"""ONNX export with dynamic batch, height and width.

The EM loop is a Python loop over T (the EMAU's `eval_iters`), so tracing unrolls it to T
fixed rounds; every shape depends on the input only through H and W, which stay symbolic.
The exporter sees the EMA unit's own ops (bmm, softmax, sums): export the model as created,
not an `optimize_for_inference` copy.

    emanet.export.export_onnx(model, "emanet.onnx", sample_size=(513, 513))
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

__all__ = ["export_onnx", "check_onnx", "onnx_available", "DEFAULT_OPSET"]

DEFAULT_OPSET = 17


def onnx_available() -> tuple[bool, str]:
    """Whether onnx and onnxruntime import, and if not, why."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        return False, f"{e.name or 'onnx'} is not installed: pip install 'emanet[onnx]'"
    return True, ""


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    sample_size: tuple[int, int] = (64, 64),
    opset: int = DEFAULT_OPSET,
    dynamic: bool = True,
    return_attention: bool = False,
) -> Path:
    """Write `model` (eval mode, on a CPU copy) as ONNX to `path`.

    Args:
        model: a Segmentor; its weights are not changed.
        path: output file.
        sample_size: (H, W) of the example input used for tracing.
        opset: ONNX opset.
        dynamic: batch, height and width symbolic (else fixed to the sample shape).
        return_attention: also output the EM responsibilities "attention" (B, K, h, w).

    Returns:
        The path written. Inputs: "images" (B, C, H, W) float32; outputs: "logits"
        (B, classes, H, W) [and "attention"].
    """
    model = copy.deepcopy(model).cpu().float().eval()
    # A Segmentor's ResNet: nn.Module types unknown attributes as Tensor | Module.
    in_channels: int = cast(Any, model.backbone).in_channels if hasattr(model, "backbone") else 3
    images = torch.randn(1, in_channels, *sample_size)
    outputs = ["logits", "attention"] if return_attention else ["logits"]

    class _Wrapper(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            if return_attention:
                out = self.inner(x, return_attention=True)
                return out["out"], out["attention"]
            return self.inner(x)

    axes = {"images": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch", 2: "height", 3: "width"}}
    if return_attention:
        axes["attention"] = {0: "batch", 2: "feat_height", 3: "feat_width"}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python-side shape checks
        # The TorchScript-based exporter: needs only onnx (the dynamo one also needs onnxscript).
        torch.onnx.export(
            _Wrapper(model),
            (images,),
            str(tmp),
            input_names=["images"],
            output_names=outputs,
            opset_version=opset,
            dynamic_axes=axes if dynamic else None,
            dynamo=False,
            do_constant_folding=True,
        )
    os.replace(tmp, path)  # atomic: a failed export leaves no half-written file
    return path


def check_onnx(model: nn.Module, path: str | os.PathLike, images: torch.Tensor) -> dict:
    """Run `path` in onnxruntime and compare with `model` on `images` (B, C, H, W).

    Returns:
        {"max_abs_diff", "rel_l2", "argmax_agreement", "shape"} for the logits.
    """
    ok, why = onnx_available()
    if not ok:
        raise RuntimeError(why)
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"images": images.numpy()})[0])
    with torch.inference_mode():
        want = copy.deepcopy(model).eval()(images)
    return {
        "max_abs_diff": float((got - want).abs().max()),
        "rel_l2": float((got - want).norm() / want.norm().clamp_min(1e-12)),
        "argmax_agreement": float((got.argmax(1) == want.argmax(1)).float().mean()),
        "shape": list(got.shape),
    }
