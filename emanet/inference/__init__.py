"""Inference-only speed-ups, loaded lazily: `import emanet` imports none of this package.

`optimize_for_inference` makes an eval-only copy of a model with BN folded, the EMA units
fused (`FusedEMAU`), channels_last, packed oneDNN weights, autocast and
optionally torch.compile. These modules use private PyTorch ops (oneDNN packing and inner
products): each is probed once and falls back to plain ops where it is missing or unsafe.
"""

from .optimize import InferenceModel, argmax_agreement, fold_conv_bn, optimize_for_inference

__all__ = ["optimize_for_inference", "InferenceModel", "fold_conv_bn", "argmax_agreement"]
