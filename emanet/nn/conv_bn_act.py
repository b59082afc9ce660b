"""Convolution + normalisation + ReLU, the building block of every head."""

from __future__ import annotations

from torch import nn

__all__ = ["ConvBNReLU"]


class ConvBNReLU(nn.Module):
    """Conv2d (no bias) -> norm -> ReLU, with 'same' padding for odd kernels.

    Attribute names `conv` / `bn` follow the authors' EMANet (fc0.conv, fc0.bn).

    Shapes:
        (B, in_channels, H, W) -> (B, out_channels, H / stride, W / stride)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        padding = dilation * (kernel_size - 1) // 2
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, bias=False)
        self.bn = norm_layer(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))
