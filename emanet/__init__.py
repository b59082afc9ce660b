"""emanet: Expectation-Maximization Attention Networks for semantic segmentation in PyTorch."""

from typing import TYPE_CHECKING, Any

from .models import (
    Segmentor,
    create_model,
    describe_model,
    from_pretrained,
    list_models,
    load_mmseg,
    load_official,
    model_options,
)
from .nn import EMAU, em_iterations

if TYPE_CHECKING:
    from .inference import optimize_for_inference
    from .predict import Prediction, Predictor

__version__ = "0.1.0"

__all__ = [
    "EMAU",
    "em_iterations",
    "Segmentor",
    "create_model",
    "list_models",
    "model_options",
    "describe_model",
    "from_pretrained",
    "load_official",
    "load_mmseg",
    "optimize_for_inference",
    "Predictor",
    "Prediction",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # The inference package (private torch ops, packed kernels) loads on first use only.
    if name == "optimize_for_inference":
        from .inference import optimize_for_inference

        return optimize_for_inference
    if name in ("Predictor", "Prediction"):  # loads the engine (evaluation code) on first use
        from . import predict

        return getattr(predict, name)
    raise AttributeError(f"module 'emanet' has no attribute {name!r}")
