"""EvalSettings from a recipe, and evaluate on a model that predicts the label."""

from __future__ import annotations

import torch

from emanet.engine.config import load_config
from emanet.engine.evaluate import EvalSettings, evaluate


def test_settings_from_config():
    cfg = load_config("demo", ["eval.mode=slide", "eval.stride=[8, 8]", "train.amp=bf16"])
    s = EvalSettings.from_config(cfg, 3, ["a", "b", "c"])
    assert (s.num_classes, s.class_names, s.mode) == (3, ("a", "b", "c"), "slide")
    assert (s.stride, s.amp) == ((8, 8), "bf16")
    assert s.scales == tuple(cfg.eval.scales) and s.flip == cfg.eval.flip
    ms = EvalSettings.from_config(cfg, 3, mode="whole", ms_flip=True, amp="none", progress=False)
    assert ms.scales == tuple(cfg.eval.ms_flip_scales) and ms.flip and ms.mode == "whole"
    assert (ms.amp, ms.progress, ms.class_names) == ("none", False, None)


class _Oracle(torch.nn.Module):
    """Logits whose argmax is the class stored in the image's first channel."""

    def forward(self, image):
        return torch.nn.functional.one_hot(image[:, 0].long(), 3).permute(0, 3, 1, 2).float() * 10


def test_evaluate_perfect_prediction(tmp_path):
    label = torch.randint(0, 3, (2, 8, 8))
    image = label[:, None].float().expand(2, 3, 8, 8)
    batches = [{"image": image, "label": label, "name": ["a", "b"], "orig_size": [(8, 8), (8, 8)]}]
    batches.append({"image": None, "label": None, "skipped": [("c.png", "bad")]})
    result = evaluate(_Oracle(), batches, EvalSettings(3, progress=False), torch.device("cpu"))
    assert result["mIoU"] == 1.0 and result["num_images"] == 2
    assert (result["mode"], result["ms_flip"], result["class_names"]) == ("whole", False, ["0", "1", "2"])
