"""Foreign checkpoint layouts written out by hand (key names and shapes from each publisher's
format, random values), independently of the converters' tables. Shared by test_convert.py and
test_zoo.py.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "LAYERS",
    "C",
    "K",
    "N_CLS",
    "torchvision_sd",
    "encoding_sd",
    "mmseg_v1c_sd",
    "official_sd",
    "mmseg_sd",
]

LAYERS = {18: ("basic", (2, 2, 2, 2)), 50: ("bottleneck", (3, 4, 6, 3)), 101: ("bottleneck", (3, 4, 23, 3))}
C, K, N_CLS = 64, 8, 21  # small EMA head: the formats store C and K in the tensors


def _bn(prefix, c, counter=True):
    shapes = {f"{prefix}.{n}": (c,) for n in ("weight", "bias", "running_mean", "running_var")}
    if counter:
        shapes[f"{prefix}.num_batches_tracked"] = ()
    return shapes


def _stem(kind, counter=True):
    """classic: torchvision/timm; deep: PyTorch-Encoding (conv1.N, 64-64-128); deep32: timm
    resnet*c (conv1.N, 32-32-64); v1c: OpenMMLab (stem.N, 32-32-64)."""
    if kind == "classic":
        return {"conv1.weight": (64, 3, 7, 7), **_bn("bn1", 64, counter)}
    c1, c2 = (64, 128) if kind == "deep" else (32, 64)
    p, last_bn = ("stem", "stem.7") if kind == "v1c" else ("conv1", "bn1")
    return {
        f"{p}.0.weight": (c1, 3, 3, 3),
        **_bn(f"{p}.1", c1, counter),
        f"{p}.3.weight": (c1, c1, 3, 3),
        **_bn(f"{p}.4", c1, counter),
        f"{p}.6.weight": (c2, c1, 3, 3),
        **_bn(last_bn, c2, counter),
    }


def _layers(depth, inplanes, layer_name, counter=True):
    kind, counts = LAYERS[depth]
    shapes = {}
    for i, (planes, n) in enumerate(zip((64, 128, 256, 512), counts, strict=True)):
        out = planes * (4 if kind == "bottleneck" else 1)
        for j in range(n):
            p = f"{layer_name(i + 1)}.{j}"
            cin = inplanes if j == 0 else out
            if kind == "bottleneck":
                shapes[f"{p}.conv1.weight"] = (planes, cin, 1, 1)
                shapes |= _bn(f"{p}.bn1", planes, counter)
                shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                shapes |= _bn(f"{p}.bn2", planes, counter)
                shapes[f"{p}.conv3.weight"] = (out, planes, 1, 1)
                shapes |= _bn(f"{p}.bn3", out, counter)
            else:
                shapes[f"{p}.conv1.weight"] = (planes, cin, 3, 3)
                shapes |= _bn(f"{p}.bn1", planes, counter)
                shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                shapes |= _bn(f"{p}.bn2", planes, counter)
            if j == 0 and (i > 0 or cin != out):  # stride 2 or wider output
                shapes[f"{p}.downsample.0.weight"] = (out, cin, 1, 1)
                shapes |= _bn(f"{p}.downsample.1", out, counter)
        inplanes = out
    return shapes


def _random(shapes, seed):
    """Random values with sane scales: conv weights ~ He init, BN near identity."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(int(torch.randint(1, 1000, (), generator=g)))
        elif key.endswith("running_var"):
            sd[key] = torch.rand(shape, generator=g) + 0.5
        elif key.endswith(("running_mean", ".bias")):
            sd[key] = 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 1:  # BN weight
            sd[key] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 4:
            sd[key] = torch.randn(shape, generator=g) * math.sqrt(1.0 / math.prod(shape[1:]))
        else:  # bases (1, C, K), stored L2-normalised over C as both codebases keep them
            sd[key] = F.normalize(torch.randn(shape, generator=g), dim=1)
    return sd


def torchvision_sd(depth, counter=True, seed=0):
    shapes = _stem("classic", counter) | _layers(depth, 64, lambda i: f"layer{i}", counter)
    return _random(shapes | {"fc.weight": (1000, 512 * (4 if depth >= 50 else 1)), "fc.bias": (1000,)}, seed)


def encoding_sd(depth=50, seed=1, stem="deep"):
    shapes = _stem(stem) | _layers(depth, 128 if stem == "deep" else 64, lambda i: f"layer{i}")
    width = 512 * (4 if depth >= 50 else 1)
    return _random(shapes | {"fc.weight": (1000, width), "fc.bias": (1000,)}, seed)


def mmseg_v1c_sd(depth=50, seed=2):
    shapes = _stem("v1c") | _layers(depth, 64, lambda i: f"layer{i}")
    return _random(shapes | {"fc.weight": (1000, 2048), "fc.bias": (1000,)}, seed)


def official_sd(depth=50, num_classes=N_CLS, counter=True, seed=3):
    shapes = {
        k.replace("conv1.", "extractor.0.", 1).replace("bn1.", "extractor.1.", 1): v
        for k, v in _stem("deep", counter).items()
    }
    shapes |= _layers(depth, 128, lambda i: f"extractor.{i + 3}", counter)
    shapes |= {"fc0.conv.weight": (C, 2048, 3, 3), **_bn("fc0.bn", C, counter), "emau.mu": (1, C, K)}
    shapes |= {
        "emau.conv1.weight": (C, C, 1, 1),
        "emau.conv1.bias": (C,),
        "emau.conv2.0.weight": (C, C, 1, 1),
    }
    shapes |= (
        _bn("emau.conv2.1", C, counter)
        | {"fc1.0.conv.weight": (256, C, 3, 3)}
        | _bn("fc1.0.bn", 256, counter)
    )
    shapes |= {"fc2.weight": (num_classes, 256, 1, 1), "fc2.bias": (num_classes,)}
    return _random(shapes, seed)


def mmseg_sd(depth=50, num_classes=19, aux=True, seed=4):
    shapes = {
        f"backbone.{k}": v for k, v in (_stem("v1c") | _layers(depth, 64, lambda i: f"layer{i}")).items()
    }
    d = "decode_head"
    shapes |= {f"{d}.ema_in_conv.conv.weight": (C, 2048, 3, 3), **_bn(f"{d}.ema_in_conv.bn", C)}
    shapes |= {f"{d}.ema_mid_conv.conv.weight": (C, C, 1, 1), f"{d}.ema_mid_conv.conv.bias": (C,)}
    shapes |= {f"{d}.ema_module.bases": (1, C, K), f"{d}.ema_out_conv.conv.weight": (C, C, 1, 1)}
    shapes |= _bn(f"{d}.ema_out_conv.bn", C) | {f"{d}.bottleneck.conv.weight": (256, C, 3, 3)}
    shapes |= _bn(f"{d}.bottleneck.bn", 256) | {f"{d}.conv_cat.conv.weight": (256, 2048 + 256, 3, 3)}
    shapes |= _bn(f"{d}.conv_cat.bn", 256) | {f"{d}.conv_seg.weight": (num_classes, 256, 1, 1)}
    shapes |= {f"{d}.conv_seg.bias": (num_classes,)}
    if aux:
        shapes |= {"auxiliary_head.convs.0.conv.weight": (256, 1024, 3, 3)}
        shapes |= _bn("auxiliary_head.convs.0.bn", 256)
        shapes |= {"auxiliary_head.conv_seg.weight": (num_classes, 256, 1, 1)}
        shapes |= {"auxiliary_head.conv_seg.bias": (num_classes,)}
    return _random(shapes, seed)
