"""Dilated ResNets, heads, the segmentor and the model registry."""

from .convert import export_mmseg, export_official, load_mmseg, load_official
from .heads import ASPPHead, DecodeHead, EMAHead, FCNHead, NonLocalHead
from .pretrained import from_pretrained
from .registry import create_model, describe_model, list_models, model_options
from .resnet import ResNet
from .segmentor import Segmentor
from .weights import save_pretrained

__all__ = [
    "ResNet",
    "DecodeHead",
    "EMAHead",
    "FCNHead",
    "ASPPHead",
    "NonLocalHead",
    "Segmentor",
    "create_model",
    "list_models",
    "model_options",
    "describe_model",
    "save_pretrained",
    "from_pretrained",
    "load_official",
    "load_mmseg",
    "export_official",
    "export_mmseg",
]
