"""Decode heads: EMAHead (the authors') and the heads the paper compares it with.

Every head maps the last backbone feature map (B, in_channels, h, w) to class logits
(B, num_classes, h, w) in two parts: its own context layers (`DecodeHead.context`), then the
prediction layers every head shares (`DecodeHead.classify`): OpenMMLab's optional `concat_input`
3×3 conv over [backbone features, context output], Dropout2d (0.1, as the authors' fc1 and
OpenMMLab's decode heads) and a 1×1 classifier with bias.
"""

from __future__ import annotations

from typing import Literal, overload

import torch
from torch import nn

from ..nn.attention import ASPP, NonLocal2d
from ..nn.conv_bn_act import ConvBNReLU
from ..nn.ema import EMAU

__all__ = ["DecodeHead", "EMAHead", "FCNHead", "ASPPHead", "NonLocalHead", "HEADS"]


class DecodeHead(nn.Module):
    """Base of the decode heads: `context` -> [conv_cat] -> Dropout2d -> 1×1 classifier.

    A head defines its context layers and `context`, and calls `_init_classifier` once they
    exist. The base builds the shared layers there rather than in `__init__` so that modules are
    created (and seeded weights drawn) in the order of the forward pass and parameters keep the
    order earlier checkpoints' optimizer states were saved in.

    Args:
        in_channels: channels of the backbone features the head reads.
        num_classes: classes predicted.

    Shapes:
        (B, in_channels, h, w) -> (B, num_classes, h, w)
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes

    def _init_classifier(
        self,
        channels: int,
        concat_input: bool = False,
        dropout: float = 0.1,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        """Build the shared prediction layers on `channels` context channels.

        Args:
            channels: channels `context` returns.
            concat_input: add OpenMMLab's 3×3 conv-BN-ReLU over [backbone features, context
                output] (in_channels + channels -> channels).
            dropout: Dropout2d rate before the classifier.
            norm_layer: normalisation of the `concat_input` conv.
        """
        self.channels = channels
        self.conv_cat = None
        if concat_input:
            self.conv_cat = ConvBNReLU(self.in_channels + channels, channels, 3, norm_layer=norm_layer)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, self.num_classes, 1)

    def context(self, x: torch.Tensor) -> torch.Tensor:
        """The head's own layers: (B, in_channels, h, w) -> (B, channels, h, w)."""
        raise NotImplementedError(f"{type(self).__name__} must define context()")

    def classify(self, x: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes, h, w) from the backbone features `x` (B, in_channels, h, w)
        and the context output `features` (B, channels, h, w)."""
        if self.conv_cat is not None:
            features = self.conv_cat(torch.cat([x, features], dim=1))
        return self.classifier(self.dropout(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(x, self.context(x))


class EMAHead(DecodeHead):
    """The authors' EMANet head: fc0 3×3 -> EMAU -> fc1 3×3 -> classifier.

    Args:
        in_channels: backbone channels (2048 for ResNet-50/101/152).
        num_classes: classes.
        ema_channels: channels of fc0 and the EMAU ("EMANet(512)" / "EMANet(256)").
        channels: channels of fc1 (authors: 256).
        num_bases: K, the number of bases (authors: 64).
        num_iters: T, EM iterations in training (authors: 3).
        eval_iters: EM iterations in evaluation (None: `num_iters`).
        temperature: λ of the E-step softmax.
        base_norm: how the M-step normalises the bases ("l2", as the authors).
        maintenance: how the bases are kept across batches ("moving_average", as the authors).
        momentum: of the moving average of the bases.
        renormalize_mean: L2-normalise the averaged bases again.
        eps_mode: how the responsibilities' column sums are guarded against 0.
        concat_input: OpenMMLab's extra conv over [backbone features, head output].
        dropout: Dropout2d rate before the classifier.
        norm_layer: normalisation of every conv-BN (and of the EMAU's output conv).

    See `EMAU` for the EM options' valid values.

    Shapes:
        (B, in_channels, h, w) -> (B, num_classes, h, w) [, attention (B, num_bases, h, w)]
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        ema_channels: int = 512,
        channels: int = 256,
        num_bases: int = 64,
        num_iters: int = 3,
        eval_iters: int | None = None,
        temperature: float = 1.0,
        base_norm: str = "l2",
        maintenance: str = "moving_average",
        momentum: float = 0.1,
        renormalize_mean: bool = False,
        eps_mode: str = "add",
        concat_input: bool = False,
        dropout: float = 0.1,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__(in_channels, num_classes)
        self.fc0 = ConvBNReLU(in_channels, ema_channels, 3, norm_layer=norm_layer)
        self.fc1 = ConvBNReLU(ema_channels, channels, 3, norm_layer=norm_layer)
        self._init_classifier(channels, concat_input, dropout, norm_layer)
        self.emau = EMAU(
            ema_channels,
            num_bases=num_bases,
            num_iters=num_iters,
            eval_iters=eval_iters,
            temperature=temperature,
            base_norm=base_norm,
            maintenance=maintenance,
            momentum=momentum,
            renormalize_mean=renormalize_mean,
            eps_mode=eps_mode,
            norm_layer=norm_layer,
        )

    def context(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc1(self.emau(self.fc0(x)))

    @overload
    def forward(self, x: torch.Tensor, return_attention: Literal[False] = ...) -> torch.Tensor: ...
    @overload
    def forward(
        self, x: torch.Tensor, return_attention: Literal[True]
    ) -> tuple[torch.Tensor, torch.Tensor]: ...
    @overload
    def forward(
        self, x: torch.Tensor, return_attention: bool = ...
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]: ...

    def forward(
        self, x: torch.Tensor, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, num_classes, h, w); with `return_attention` also the EM responsibilities
        of the last iteration (B, num_bases, h, w)."""
        if not return_attention:
            return super().forward(x)
        out, attention = self.emau(self.fc0(x), return_attention=True)
        return self.classify(x, self.fc1(out)), attention


class NonLocalHead(DecodeHead):
    """fc0 3×3 -> embedded-Gaussian non-local block -> fc1 3×3 -> classifier (complexity
    comparison).

    Args:
        in_channels: backbone channels.
        num_classes: classes.
        nl_channels: channels of fc0 and the non-local block.
        channels: channels of fc1.
        reduction: the block's embedding has nl_channels // reduction channels.
        concat_input: OpenMMLab's extra conv over [backbone features, head output].
        dropout: Dropout2d rate before the classifier.
        norm_layer: normalisation of every conv-BN.

    Shapes:
        (B, in_channels, h, w) -> (B, num_classes, h, w)
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        nl_channels: int = 512,
        channels: int = 256,
        reduction: int = 2,
        concat_input: bool = False,
        dropout: float = 0.1,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__(in_channels, num_classes)
        self.fc0 = ConvBNReLU(in_channels, nl_channels, 3, norm_layer=norm_layer)
        self.fc1 = ConvBNReLU(nl_channels, channels, 3, norm_layer=norm_layer)
        self._init_classifier(channels, concat_input, dropout, norm_layer)
        self.nonlocal_block = NonLocal2d(nl_channels, reduction, norm_layer=norm_layer)

    def context(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc1(self.nonlocal_block(self.fc0(x)))


class FCNHead(DecodeHead):
    """`num_convs` 3×3 conv-BN-ReLU -> classifier (FCN; also the auxiliary head).

    Args:
        in_channels: backbone channels.
        num_classes: classes.
        channels: channels of the convs.
        num_convs: 3×3 convs (>= 1).
        concat_input: OpenMMLab's extra conv over [backbone features, head output].
        dropout: Dropout2d rate before the classifier.
        norm_layer: normalisation of every conv-BN.

    Shapes:
        (B, in_channels, h, w) -> (B, num_classes, h, w)
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        channels: int = 512,
        num_convs: int = 2,
        concat_input: bool = False,
        dropout: float = 0.1,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__(in_channels, num_classes)
        if num_convs < 1:
            raise ValueError(f"FCNHead num_convs={num_convs!r} is not valid; it must be >= 1")
        convs = [ConvBNReLU(in_channels, channels, 3, norm_layer=norm_layer)]
        convs += [ConvBNReLU(channels, channels, 3, norm_layer=norm_layer) for _ in range(num_convs - 1)]
        self.convs = nn.Sequential(*convs)
        self._init_classifier(channels, concat_input, dropout, norm_layer)

    def context(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)


class ASPPHead(DecodeHead):
    """DeepLabV3: ASPP (1×1, three 3×3 atrous rates, image pooling) -> 3×3 conv-BN-ReLU ->
    classifier. Rates 12/24/36 at output stride 8 (6/12/18 at 16).

    Args:
        in_channels: backbone channels.
        num_classes: classes.
        channels: channels of every ASPP branch and of the 3×3 conv.
        rates: dilation rates of the three 3×3 branches.
        dropout: Dropout2d rate before the classifier.
        norm_layer: normalisation of every conv-BN.

    Shapes:
        (B, in_channels, h, w) -> (B, num_classes, h, w)
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        channels: int = 256,
        rates: tuple[int, ...] = (12, 24, 36),
        dropout: float = 0.1,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__(in_channels, num_classes)
        self.aspp = ASPP(in_channels, channels, tuple(rates), norm_layer=norm_layer)
        self.fc1 = ConvBNReLU(channels, channels, 3, norm_layer=norm_layer)
        self._init_classifier(channels, dropout=dropout, norm_layer=norm_layer)

    def context(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc1(self.aspp(x))


HEADS: dict[str, type[DecodeHead]] = {
    "ema": EMAHead,
    "fcn": FCNHead,
    "aspp": ASPPHead,
    "nonlocal": NonLocalHead,
}
