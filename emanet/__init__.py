"""emanet: Expectation-Maximization Attention Networks for semantic segmentation in PyTorch.

Public names load on first use (PEP 562), so `emanet --help` and `emanet --version` do not
import torch; `emanet.create_model` etc. work as usual.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .inference import optimize_for_inference
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
    from .predict import Prediction, Predictor

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

# public name -> the submodule that defines it
_LAZY = {
    "EMAU": ".nn",
    "em_iterations": ".nn",
    "optimize_for_inference": ".inference",
    "Predictor": ".predict",  # loads the engine (evaluation code) on first use
    "Prediction": ".predict",
    **{
        name: ".models"
        for name in (
            "Segmentor",
            "create_model",
            "list_models",
            "model_options",
            "describe_model",
            "from_pretrained",
            "load_official",
            "load_mmseg",
        )
    },
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'emanet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
