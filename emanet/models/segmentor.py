"""Backbone + decode head (+ optional auxiliary head) -> logits at the input size."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from .heads import EMAHead

if TYPE_CHECKING:
    from .weights import StrPath

__all__ = ["Segmentor"]


class Segmentor(nn.Module):
    """A segmentation network: `backbone` -> `decode_head` on the last stage; an optional
    `aux_head` on layer3 for the auxiliary loss (training only).

    Args:
        backbone: a `ResNet` returning its four stage outputs.
        decode_head: maps the last stage to (B, num_classes, h, w).
        aux_head: optional head on the third stage (OpenMMLab: FCN, loss weight 0.4).
        align_corners: of the final bilinear upsampling (authors: True, OpenMMLab: False).
        config: the `create_model` arguments that rebuild this model (saved by
            `save_pretrained`).
        num_classes: classes predicted, stored as `num_classes`; None reads
            `decode_head.num_classes` (every `DecodeHead` has it).

    Shapes:
        images (B, in_channels, H, W) -> logits (B, num_classes, H, W).
    """

    # Set by the loaders (`from_pretrained`, `load_official`, `load_mmseg`), absent otherwise.
    class_names: list[str] | None
    palette: list[list[int]] | None

    def __init__(
        self,
        backbone: nn.Module,
        decode_head: nn.Module,
        aux_head: nn.Module | None = None,
        align_corners: bool = True,
        config: dict[str, Any] | None = None,
        *,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        head_classes = getattr(decode_head, "num_classes", None)
        if num_classes is None:
            if head_classes is None:
                raise ValueError(
                    f"Segmentor: the decode head {type(decode_head).__name__} has no num_classes "
                    "attribute; pass num_classes=..."
                )
            num_classes = head_classes
        elif head_classes is not None and head_classes != num_classes:
            raise ValueError(
                f"Segmentor num_classes={num_classes!r} does not match the decode head's "
                f"{head_classes!r}; build the head with the same number of classes"
            )
        self.backbone = backbone
        self.decode_head = decode_head
        self.aux_head = aux_head
        self.align_corners = align_corners
        self.config = dict(config or {})
        self.num_classes = int(num_classes)

    @property
    def name(self) -> str:
        return self.config.get("name", type(self).__name__)

    def _upsample(self, x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=self.align_corners)

    def forward(
        self, images: torch.Tensor, return_aux: bool = False, return_attention: bool = False
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """Logits at the input size; a dict when extras are asked for.

        Args:
            images: (B, in_channels, H, W), normalised.
            return_aux: also return the auxiliary head's logits (needs an aux head).
            return_attention: also return the EM responsibilities (B, K, h, w) (EMA heads only).

        Returns:
            Without flags, the logits tensor (B, num_classes, H, W). With either flag, a dict
            with "out" (the logits) and, as asked, "aux" (B, num_classes, H, W) and
            "attention" (B, K, h, w) at the feature size.
        """
        expected = self.backbone.in_channels
        if images.dim() != 4 or images.shape[1] != expected:
            raise ValueError(
                f"{self.name} expects images of shape (B, {expected}, H, W); got {tuple(images.shape)}"
            )
        # The extras are checked before the backbone runs, so a wrong call fails fast.
        if return_attention and not isinstance(self.decode_head, EMAHead):
            raise ValueError(
                f"{self.name} has a {type(self.decode_head).__name__}, which has no EM attention "
                "maps; return_attention needs an EMAHead (emanet_* models)"
            )
        aux_head = self.aux_head
        if return_aux and aux_head is None:
            raise ValueError(f"{self.name} has no auxiliary head; create it with aux_head=True")
        size = images.shape[-2:]
        features = self.backbone(images)
        if return_attention:
            logits, attention = self.decode_head(features[-1], return_attention=True)
        else:
            logits, attention = self.decode_head(features[-1]), None
        logits = self._upsample(logits, size)
        if not (return_aux or return_attention):
            return logits
        out = {"out": logits}
        if aux_head is not None and return_aux:
            out["aux"] = self._upsample(aux_head(features[2]), size)
        if return_attention:
            out["attention"] = attention
        return out

    def save_pretrained(
        self,
        directory: StrPath,
        class_names: Sequence[str] | None = None,
        palette: Sequence[Sequence[int]] | None = None,
    ) -> None:
        """Write `directory/config.json` and `directory/model.safetensors` (atomically)."""
        from .weights import save_pretrained

        save_pretrained(self, directory, class_names=class_names, palette=palette)

    def push_to_hub(
        self,
        repo_id: str,
        recipe: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        private: bool = False,
        token: str | None = None,
    ) -> str:
        """Upload to the Hugging Face Hub (config.json, model.safetensors and a model card with the
        recipe and metrics given); `emanet.from_pretrained("hf-hub:" + repo_id)` reads it back.
        Needs `pip install 'emanet[hub]'`."""
        from .hub import push_to_hub

        return push_to_hub(self, repo_id, recipe=recipe, metrics=metrics, private=private, token=token)
