"""Dilated ResNets for segmentation, in the layout of timm's / torchvision's resnet.py.

Stems:
    "deep"      authors' EMANet / PyTorch-Encoding "deep base": conv 3->64 s2, BN, ReLU,
                conv 64->64, BN, ReLU, conv 64->128, then bn1, ReLU, max-pool (layer1 from 128).
    "deep_v1c"  OpenMMLab ResNetV1c: the same with 32-32-64.
    "classic"   7×7 conv 3->64 s2, bn1, ReLU, max-pool (torchvision / timm).
Key names match timm/torchvision (`conv1` Sequential for deep stems, `bn1`, `layer1..4`,
`conv1/bn1/.../downsample.0/.1` in blocks), so checkpoint import is a key mapping.

Output stride: once the running stride reaches `output_stride`, a layer's stride turns into
dilation (×2 per layer). The first block of a dilated layer uses half the layer's dilation
("contracted"), and layer4's later blocks multiply it by the multi-grid (docs/method.md §4.1): at OS8
with multi_grid (1, 2, 4) layer3 dilations are 1, 2, 2, ... and layer4 2, 8, 16; at OS16
layer4 is 1, 4, 8. Blocks put the stride on the 3×3 conv (torchvision "v1.5").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ResNet", "BasicBlock", "Bottleneck", "STEMS", "DEPTHS", "block_dilations"]

STEMS = ("deep", "deep_v1c", "classic")
DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
OUTPUT_STRIDES = (8, 16, 32)


class BasicBlock(nn.Module):
    """Two 3×3 convs (ResNet-18/34). (B, inplanes, H, W) -> (B, planes, H/stride, W/stride)."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None, norm_layer=nn.BatchNorm2d):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, dilation, dilation, bias=False)
        self.bn1 = norm_layer(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, dilation, dilation, bias=False)
        self.bn2 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """1×1 -> 3×3 (stride, dilation) -> 1×1 ×4 (ResNet-50/101/152).

    (B, inplanes, H, W) -> (B, 4 * planes, H/stride, W/stride)
    """

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None, norm_layer=nn.BatchNorm2d):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = norm_layer(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, dilation, dilation, bias=False)
        self.bn2 = norm_layer(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = norm_layer(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)


def block_dilations(
    num_blocks: int, dilation: int, multi_grid: Sequence[int] | None, contract: bool
) -> list[int]:
    """Dilation of each block of one layer.

    The first block uses `dilation // 2` when `contract` and the layer is dilated (its 3×3
    conv still sees the previous layer's dilation); later blocks use `dilation * grid[i]`
    (the first grid value is ignored, as in the authors' code).
    """
    grid = list(multi_grid) if multi_grid else [1] * num_blocks
    if len(grid) < num_blocks:
        grid = grid + [grid[-1]] * (num_blocks - len(grid))
    first = max(dilation // 2, 1) if contract and dilation > 1 else dilation
    return [first] + [dilation * grid[i] for i in range(1, num_blocks)]


def _make_stem(stem: str, in_channels: int, norm_layer) -> tuple[nn.Module, int]:
    if stem == "classic":
        return nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False), 64
    c1, c2 = (64, 128) if stem == "deep" else (32, 64)
    conv1 = nn.Sequential(
        nn.Conv2d(in_channels, c1, 3, 2, 1, bias=False),
        norm_layer(c1),
        nn.ReLU(inplace=True),
        nn.Conv2d(c1, c1, 3, 1, 1, bias=False),
        norm_layer(c1),
        nn.ReLU(inplace=True),
        nn.Conv2d(c1, c2, 3, 1, 1, bias=False),
    )
    return conv1, c2


class ResNet(nn.Module):
    """Dilated ResNet backbone returning the four stage outputs.

    Args:
        depth: 18, 34, 50, 101 or 152.
        stem: one of `STEMS`.
        output_stride: 8, 16 or 32.
        multi_grid: per-block multipliers of layer4's dilation (authors: (1, 2, 4)); applied
            only when layer4 is dilated. None disables it.
        contract_dilation: first block of a dilated layer uses half the dilation (authors, mmseg).
        in_channels: image channels.
        widths: the four stages' base widths (timm's `channels`); (64, 128, 256, 512) is every
            published ResNet. Narrower stages make small, fast models (the CPU demo).
        norm_layer: BatchNorm2d (converted to SyncBatchNorm for DDP by the trainer).

    Shapes:
        (B, in_channels, H, W) -> [c1, c2, c3, c4] with c_i (B, feature_info[i]["num_chs"],
        ceil(H / r_i), ceil(W / r_i)) and r_i = feature_info[i]["reduction"].
    """

    def __init__(
        self,
        depth: int = 101,
        stem: str = "deep",
        output_stride: int = 8,
        multi_grid: Sequence[int] | None = (1, 2, 4),
        contract_dilation: bool = True,
        in_channels: int = 3,
        widths: Sequence[int] = (64, 128, 256, 512),
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"ResNet depth={depth!r} is not valid; choose one of {sorted(DEPTHS)}")
        if stem not in STEMS:
            raise ValueError(f"ResNet stem={stem!r} is not valid; choose one of {', '.join(STEMS)}")
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(
                f"ResNet output_stride={output_stride!r} is not valid; choose one of {OUTPUT_STRIDES}"
            )
        if len(widths) != 4 or not all(isinstance(w, int) and w >= 1 for w in widths):
            raise ValueError(f"ResNet widths={widths!r} is not valid; give four integers >= 1, one per stage")
        kind, layers = DEPTHS[depth]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.depth, self.stem_type, self.output_stride = depth, stem, output_stride
        self.in_channels = in_channels

        self.conv1, stem_channels = _make_stem(stem, in_channels, norm_layer)
        self.bn1 = norm_layer(stem_channels)
        self.act1 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)

        self.feature_info = []
        inplanes, stride_so_far, dilation = stem_channels, 4, 1
        self.dilations: list[list[int]] = []
        for i, (planes, num_blocks) in enumerate(zip(widths, layers, strict=True)):
            stride = 1 if i == 0 else 2
            if stride_so_far * stride > output_stride:
                dilation *= stride
                stride = 1
            stride_so_far *= stride
            grid = multi_grid if (i == 3 and dilation > 1) else None
            dilations = block_dilations(num_blocks, dilation, grid, contract_dilation)
            layer, inplanes = self._make_layer(block, inplanes, planes, stride, dilations, norm_layer)
            self.add_module(f"layer{i + 1}", layer)
            self.dilations.append(dilations)
            self.feature_info.append(
                {"num_chs": inplanes, "reduction": stride_so_far, "module": f"layer{i + 1}"}
            )
        self.num_features = inplanes
        self._init_weights()

    @staticmethod
    def _make_layer(block, inplanes, planes, stride, dilations, norm_layer):
        out_planes = planes * block.expansion
        downsample = None
        if stride != 1 or inplanes != out_planes:
            downsample = nn.Sequential(
                nn.Conv2d(inplanes, out_planes, 1, stride, bias=False), norm_layer(out_planes)
            )
        blocks = [block(inplanes, planes, stride, dilations[0], downsample, norm_layer)]
        blocks += [block(out_planes, planes, 1, d, None, norm_layer) for d in dilations[1:]]
        return nn.Sequential(*blocks), out_planes

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        features = []
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
            features.append(x)
        return features
