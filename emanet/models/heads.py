"""Decode heads: EMAHead (the authors') and the heads the paper compares it with.

Every head maps the last backbone feature map (B, in_channels, h, w) to class logits
(B, num_classes, h, w). Dropout2d(0.1) before the classifier, as the authors' fc1 and
OpenMMLab's decode heads.
"""

from __future__ import annotations

import torch
from torch import nn

from ..nn.attention import ASPP, NonLocal2d
from ..nn.conv_bn_act import ConvBNReLU
from ..nn.ema import EMAU

__all__ = ["EMAHead", "FCNHead", "ASPPHead", "NonLocalHead", "HEADS"]


class _ContextHead(nn.Module):
    """fc0 3×3 conv-BN-ReLU -> context block -> fc1 3×3 conv-BN-ReLU [-> concat_input conv]
    -> Dropout2d -> 1×1 classifier (bias). The shared shape of EMAHead and NonLocalHead.

    With `concat_input` (OpenMMLab), a 3×3 conv-BN-ReLU fuses [backbone features, fc1 output].
    """

    def __init__(self, in_channels, num_classes, mid_channels, channels, concat_input, dropout, norm_layer):
        super().__init__()
        self.fc0 = ConvBNReLU(in_channels, mid_channels, 3, norm_layer=norm_layer)
        self.fc1 = ConvBNReLU(mid_channels, channels, 3, norm_layer=norm_layer)
        self.conv_cat = (
            ConvBNReLU(in_channels + channels, channels, 3, norm_layer=norm_layer) if concat_input else None
        )
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def context(self, x: torch.Tensor, return_attention: bool):
        raise NotImplementedError

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        out, attention = self.context(self.fc0(x), return_attention)
        out = self.fc1(out)
        if self.conv_cat is not None:
            out = self.conv_cat(torch.cat([x, out], dim=1))
        logits = self.classifier(self.dropout(out))
        return (logits, attention) if return_attention else logits


class EMAHead(_ContextHead):
    """The authors' EMANet head: fc0 -> EMAU -> fc1 -> classifier.

    Args:
        in_channels: backbone channels (2048 for ResNet-50/101/152).
        num_classes: classes.
        ema_channels: channels of fc0 and the EMAU ("EMANet(512)" / "EMANet(256)").
        channels: channels of fc1 (authors: 256).
        concat_input: OpenMMLab's extra conv over [backbone features, head output].
        dropout: Dropout2d rate before the classifier.
        **ema_kwargs: `EMAU` options (num_bases, num_iters, eval_iters, temperature, base_norm,
            maintenance, momentum, renormalize_mean, eps_mode).

    Shapes:
        (B, in_channels, h, w) -> (B, num_classes, h, w) [, attention (B, K, h, w)]
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        ema_channels: int = 512,
        channels: int = 256,
        concat_input: bool = False,
        dropout: float = 0.1,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
        **ema_kwargs,
    ) -> None:
        super().__init__(in_channels, num_classes, ema_channels, channels, concat_input, dropout, norm_layer)
        self.emau = EMAU(ema_channels, norm_layer=norm_layer, **ema_kwargs)

    def context(self, x, return_attention):
        if return_attention:
            return self.emau(x, return_attention=True)
        return self.emau(x), None


class NonLocalHead(_ContextHead):
    """fc0 -> embedded-Gaussian non-local block -> fc1 -> classifier (complexity comparison).

    Shapes:
        (B, in_channels, h, w) -> (B, num_classes, h, w)
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        nl_channels: int = 512,
        channels: int = 256,
        reduction: int = 2,
        concat_input: bool = False,
        dropout: float = 0.1,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__(in_channels, num_classes, nl_channels, channels, concat_input, dropout, norm_layer)
        self.nonlocal_block = NonLocal2d(nl_channels, reduction, norm_layer=norm_layer)

    def context(self, x, return_attention):
        return self.nonlocal_block(x), None


class FCNHead(nn.Module):
    """`num_convs` 3×3 conv-BN-ReLU -> Dropout2d -> 1×1 classifier (FCN; also the aux head).

    Shapes:
        (B, in_channels, h, w) -> (B, num_classes, h, w)
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels: int = 512,
        num_convs: int = 2,
        concat_input: bool = False,
        dropout: float = 0.1,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        if num_convs < 1:
            raise ValueError(f"FCNHead num_convs={num_convs!r} is not valid; it must be >= 1")
        convs = [ConvBNReLU(in_channels, channels, 3, norm_layer=norm_layer)]
        convs += [ConvBNReLU(channels, channels, 3, norm_layer=norm_layer) for _ in range(num_convs - 1)]
        self.convs = nn.Sequential(*convs)
        self.conv_cat = (
            ConvBNReLU(in_channels + channels, channels, 3, norm_layer=norm_layer) if concat_input else None
        )
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.convs(x)
        if self.conv_cat is not None:
            out = self.conv_cat(torch.cat([x, out], dim=1))
        return self.classifier(self.dropout(out))


class ASPPHead(nn.Module):
    """DeepLabV3: ASPP (1×1, three 3×3 atrous rates, image pooling) -> 3×3 conv-BN-ReLU ->
    classifier. Rates 12/24/36 at output stride 8 (6/12/18 at 16).

    Shapes:
        (B, in_channels, h, w) -> (B, num_classes, h, w)
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels: int = 256,
        rates: tuple[int, ...] = (12, 24, 36),
        dropout: float = 0.1,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.aspp = ASPP(in_channels, channels, tuple(rates), norm_layer=norm_layer)
        self.fc1 = ConvBNReLU(channels, channels, 3, norm_layer=norm_layer)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.fc1(self.aspp(x))))


HEADS = {"ema": EMAHead, "fcn": FCNHead, "aspp": ASPPHead, "nonlocal": NonLocalHead}
