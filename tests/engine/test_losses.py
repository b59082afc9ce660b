"""segmentation_loss: the two normalisations."""

from __future__ import annotations

import torch

from emanet.engine.losses import segmentation_loss


def test_valid_pixel_loss_without_valid_pixels_is_zero():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    label = torch.full((2, 4, 4), 255)
    loss = segmentation_loss(logits, label, 255, "valid_pixels")
    assert loss.item() == 0.0
    label[0, 0, 0] = 1
    ref = torch.nn.functional.cross_entropy(logits, label, ignore_index=255)
    torch.testing.assert_close(segmentation_loss(logits, label, 255, "valid_pixels"), ref)
