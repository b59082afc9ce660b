"""emanet: Expectation-Maximization Attention Networks for semantic segmentation in PyTorch."""

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
from .optimize import optimize_for_inference

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
    "__version__",
]
