from __future__ import annotations

import pytest

from emanet.engine.config import ConfigError, list_recipes, load_config


def test_shipped_recipes_load():
    names = list_recipes()
    for required in (
        "voc_aug_r101_os8_paper",
        "cityscapes_r101_os8",
        "ade20k_r50_os8",
        "context_r101_os8",
        "cocostuff_r101_os8",
        "demo",
    ):
        assert required in names
        load_config(required)


def test_paper_recipe_is_method_section_5():
    cfg = load_config("voc_aug_r101_os8_paper")
    assert cfg.model.name == "emanet_r101" and cfg.model.bn_momentum == 3e-4 and cfg.model.sync_bn
    t = cfg.train
    assert (t.iters, t.batch_size, t.lr, t.momentum, t.weight_decay) == (30000, 16, 0.009, 0.9, 1e-4)
    assert (t.poly_power, t.lr_update_every, t.bias_lr_mult, t.seed) == (0.9, 10, 2.0, 66)
    assert t.loss_normalize == "all_pixels"
    assert cfg.data.crop_size == [513, 513] and cfg.data.scales == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
    assert cfg.data.train_split == "trainaug" and cfg.eval.pad_mod == 8


def test_overrides_parse_values():
    cfg = load_config(
        "demo",
        [
            "train.iters=7",
            "data.root=/x",
            "model.options.num_bases=8",
            "train.amp=bf16",
            "data.skip_bad_samples=true",
            "eval.scales=[0.5, 1.0]",
        ],
    )
    assert cfg.train.iters == 7 and cfg.data.root == "/x" and cfg.model.options["num_bases"] == 8
    assert cfg.train.amp == "bf16" and cfg.data.skip_bad_samples is True and cfg.eval.scales == [0.5, 1.0]


def test_unknown_key_suggests_closest():
    with pytest.raises(
        ConfigError, match=r"unknown config key 'train.iter' in the command line; did you mean 'train.iters'"
    ):
        load_config("demo", ["train.iter=5"])
    with pytest.raises(ConfigError, match=r"'data.skip_bad_sample'.*did you mean 'data.skip_bad_samples'"):
        load_config("demo", ["data.skip_bad_sample=true"])


def test_invalid_values_and_recipes(tmp_path):
    with pytest.raises(ConfigError, match=r"train.amp='fp8'.*none, bf16, fp16"):
        load_config("demo", ["train.amp=fp8"])
    with pytest.raises(ConfigError, match=r"train.iters=0"):
        load_config("demo", ["train.iters=0"])
    with pytest.raises(ConfigError, match=r"no recipe or file named 'dmeo'. Did you mean 'demo'"):
        load_config("dmeo")
    with pytest.raises(ConfigError, match="not key=value"):
        load_config("demo", ["train.iters"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: [\n")
    with pytest.raises(ConfigError, match="bad.yaml is not valid YAML"):
        load_config(str(bad))
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("train:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"'train.learning_rate' in .*unknown.yaml"):
        load_config(str(unknown))
