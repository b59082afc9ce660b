"""Every shipped recipe trains for two iterations on its miniature dataset, whole pipeline included."""

from __future__ import annotations

import pytest

from emanet.data.fake import write_fake_dataset
from emanet.engine.config import load_config
from emanet.engine.trainer import Trainer

RECIPES = {
    "voc_aug_r101_os8_paper": "voc_aug",
    "cityscapes_r101_os8": "cityscapes",
    "ade20k_r50_os8": "ade20k",
    "context_r101_os8": "pascal_context",
    "cocostuff_r101_os8": "coco_stuff",
}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_recipe_runs_on_tiny_data(recipe, tmp_path):
    root = write_fake_dataset(RECIPES[recipe], tmp_path / "data", num_images=2, size=(24, 32))
    base = load_config(recipe)
    cfg = load_config(
        recipe,
        [
            f"data.root={root}",
            "model.name=" + base.model.name.replace("r101", "r18").replace("r50", "r18"),
            "model.options.ema_channels=16",
            "model.options.channels=16",
            "data.crop_size=[16, 16]",
            "model.backbone_weights=null",  # the recipes' ImageNet default needs a download
            "data.num_workers=0",
            "train.iters=2",
            "train.batch_size=2",
            "train.device=cpu",
            "train.checkpoint_every=0",
            "eval.crop_size=[16, 16]",
            "eval.stride=[8, 8]",
            f"output_dir={tmp_path / 'run'}",
        ]
        + (["data.resize_base=[32, 24]"] if base.data.resize_base else []),
    )
    if cfg.data.name != "voc_aug":
        cfg.data.train_split, cfg.data.val_split = "train", "val"
    result = Trainer(cfg, progress=False).fit()
    assert 0.0 <= result["mIoU"] <= 1.0
