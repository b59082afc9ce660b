"""Context blocks the paper compares EMA with: the non-local block and ASPP."""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from .conv_bn_act import ConvBNReLU

__all__ = ["NonLocal2d", "ASPP"]


class NonLocal2d(nn.Module):
    """Embedded-Gaussian non-local block (Wang et al., CVPR 2018), as OpenMMLab's NLHead uses it.

    y = x + BN(W_out · (softmax(theta(x)^T phi(x) / sqrt(C')) g(x))), with C' = C / reduction.
    Builds the full N×N attention map: O(N^2 C) time and N^2 memory per image.

    Shapes:
        (B, C, H, W) -> (B, C, H, W)
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 2,
        use_scale: bool = True,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        inter = max(channels // reduction, 1)
        self.inter_channels = inter
        self.use_scale = use_scale
        self.theta = nn.Conv2d(channels, inter, 1)
        self.phi = nn.Conv2d(channels, inter, 1)
        self.g = nn.Conv2d(channels, inter, 1)
        self.conv_out = nn.Conv2d(inter, channels, 1, bias=False)
        self.bn_out = norm_layer(channels)
        # Zero-initialised output BN: the block starts as identity (Wang et al. §4.1).
        nn.init.zeros_(cast(torch.Tensor, self.bn_out.weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        theta = self.theta(x).flatten(2).transpose(1, 2)  # (B, N, C')
        phi = self.phi(x).flatten(2)  # (B, C', N)
        g = self.g(x).flatten(2).transpose(1, 2)  # (B, N, C')
        attn = torch.bmm(theta, phi)  # (B, N, N)
        if self.use_scale:
            attn = attn / self.inter_channels**0.5
        attn = attn.softmax(dim=-1)
        y = torch.bmm(attn, g).transpose(1, 2).reshape(b, self.inter_channels, h, w)
        return x + self.bn_out(self.conv_out(y))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling of DeepLabV3 (Chen et al., 2017).

    A 1×1 branch, one 3×3 branch per rate, and image pooling, concatenated and projected.

    Shapes:
        (B, in_channels, H, W) -> (B, channels, H, W)
    """

    def __init__(
        self,
        in_channels: int,
        channels: int = 256,
        rates: tuple[int, ...] = (12, 24, 36),
        dropout: float = 0.5,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.branches = nn.ModuleList([ConvBNReLU(in_channels, channels, 1, norm_layer=norm_layer)])
        for rate in rates:
            self.branches.append(ConvBNReLU(in_channels, channels, 3, dilation=rate, norm_layer=norm_layer))
        self.image_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), ConvBNReLU(in_channels, channels, 1, norm_layer=norm_layer)
        )
        self.project = nn.Sequential(
            ConvBNReLU((len(rates) + 2) * channels, channels, 1, norm_layer=norm_layer),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [branch(x) for branch in self.branches]
        pooled = self.image_pool(x)
        outs.append(F.interpolate(pooled, size=x.shape[-2:], mode="bilinear", align_corners=False))
        return self.project(torch.cat(outs, dim=1))
