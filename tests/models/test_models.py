"""One shared tester over every registered model (segmentation_models_pytorch style)."""

from __future__ import annotations

import inspect
import json

import pytest
import torch

import emanet

ALL_MODELS = emanet.list_models()
# The fast tier runs the tester on the ResNet-18 models: every head, both stems' code paths.
# Deeper models add the Bottleneck block (also covered by tests/models/test_resnet.py) at
# several times the CPU cost; they run in the full suite.
FAST_DEPTH = "_r18"
MODELS = [n if n.endswith(FAST_DEPTH) else pytest.param(n, marks=pytest.mark.slow) for n in ALL_MODELS]
# create_model options that belong to the backbone and the segmentor rather than the head.
COMMON_OPTIONS = {"stem", "output_stride", "multi_grid", "contract_dilation", "in_channels", "widths"}
COMMON_OPTIONS |= {"aux_head", "align_corners"}


def _model(name, **kw):
    torch.manual_seed(0)
    return emanet.create_model(name, num_classes=5, **kw)


def test_registry_covers_paper_models():
    for name in ("emanet_r18", "emanet_r50", "emanet_r101", "emanet_r152"):
        assert name in ALL_MODELS
    for prefix in ("fcn", "deeplabv3", "nonlocal"):
        assert emanet.list_models(f"{prefix}_*")


@pytest.mark.parametrize("model_name", MODELS)
class TestEveryModel:
    """What every registered model must do, on tiny inputs."""

    def test_structure(self, model_name):
        with torch.device("meta"):
            model = _model(model_name)
        head = model.decode_head
        assert isinstance(head, emanet.models.DecodeHead)
        assert model.num_classes == head.num_classes == head.classifier.out_channels == 5
        assert isinstance(head.dropout, torch.nn.Dropout2d) and head.dropout.p == 0.1
        # The registry's head options are exactly the head's own keyword parameters.
        head_options = set(inspect.signature(type(head).__init__).parameters)
        head_options -= {"self", "in_channels", "num_classes", "norm_layer"}
        assert set(emanet.model_options(model_name)) == head_options | COMMON_OPTIONS

    def test_forward_backward_odd_size(self, model_name):
        model = _model(model_name, aux_head=True).train()
        x = torch.randn(2, 3, 49, 37)
        out = model(x, return_aux=True)
        assert isinstance(out, dict) and set(out) == {"out", "aux"}
        assert out["out"].shape == out["aux"].shape == (2, 5, 49, 37)
        (out["out"].mean() + 0.4 * out["aux"].mean()).backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert all(g is not None for g in grads)
        assert all(torch.isfinite(g).all() for g in grads)

    def test_eval_deterministic_and_roundtrip(self, model_name, tmp_path):
        model = _model(model_name).eval()
        x = torch.randn(1, 3, 41, 53)
        with torch.no_grad():
            a, b = model(x), model(x)
        assert isinstance(a, torch.Tensor) and a.shape == (1, 5, 41, 53)
        assert torch.equal(a, b)
        model.save_pretrained(tmp_path)
        config = json.loads((tmp_path / "config.json").read_text())
        assert config["name"] == model_name and config["num_classes"] == 5
        loaded = emanet.from_pretrained(tmp_path)
        assert not loaded.training and loaded.num_classes == 5
        with torch.no_grad():
            assert torch.equal(loaded(x), a)


def test_overrides_survive_roundtrip(tmp_path):
    model = _model("emanet_r18", ema_channels=64, channels=32, num_bases=7, eval_iters=5, aux_head=True)
    model.eval().save_pretrained(tmp_path, class_names=[f"c{i}" for i in range(5)])
    loaded = emanet.from_pretrained(tmp_path)
    assert loaded.decode_head.emau.num_bases == 7 and loaded.decode_head.emau.eval_iters == 5
    assert loaded.aux_head is not None and loaded.class_names == [f"c{i}" for i in range(5)]
    x = torch.randn(1, 3, 33, 33)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_authors_defaults():
    model = emanet.create_model("emanet_r101")
    assert model.backbone.stem_type == "deep" and model.backbone.output_stride == 8
    assert model.aux_head is None and model.align_corners is True
    emau = model.decode_head.emau
    assert (emau.channels, emau.num_bases, emau.num_iters, emau.momentum) == (512, 64, 3, 0.1)
    assert model.decode_head.fc1.conv.out_channels == 256
    assert model.decode_head.dropout.p == 0.1 and isinstance(model.decode_head.dropout, torch.nn.Dropout2d)


@pytest.mark.slow
def test_aux_head_and_attention_outputs():
    model = _model("emanet_r18", aux_head=True, num_bases=6).train()
    out = model(torch.randn(2, 3, 64, 48), return_aux=True, return_attention=True)
    assert out["out"].shape == (2, 5, 64, 48) and out["aux"].shape == (2, 5, 64, 48)
    assert out["attention"].shape == (2, 6, 8, 6)
    torch.testing.assert_close(out["attention"].sum(1), torch.ones(2, 8, 6))


def test_align_corners_option():
    a = _model("fcn_r18", align_corners=True).eval()
    b = _model("fcn_r18", align_corners=False).eval()
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        assert not torch.allclose(a(x), b(x))


def test_unknown_model_name():
    with pytest.raises(ValueError, match=r"unknown model 'emanet_r100'.*Did you mean.*emanet_r101"):
        emanet.create_model("emanet_r100")


def test_unknown_option_suggests():
    with pytest.raises(ValueError, match=r"unknown option 'num_base'.*did you mean 'num_bases'"):
        emanet.create_model("emanet_r18", num_base=8)


def test_wrong_input_channels():
    model = _model("emanet_r18").eval()
    with pytest.raises(
        ValueError, match=r"emanet_r18 expects images of shape \(B, 3, H, W\); got \(1, 4, 32, 32\)"
    ):
        model(torch.randn(1, 4, 32, 32))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_bases": 0}, "num_bases=0"),
        ({"num_iters": 0}, "num_iters=0"),
        ({"base_norm": "bn"}, "base_norm='bn'"),
        ({"maintenance": "sgd"}, "maintenance='sgd'"),
        ({"output_stride": 12}, "output_stride=12"),
    ],
)
def test_invalid_option_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        emanet.create_model("emanet_r18", **kwargs)


def test_attention_needs_ema_head():
    with pytest.raises(ValueError, match="no EM attention maps"):
        _model("fcn_r18").eval()(torch.randn(1, 3, 32, 32), return_attention=True)


@pytest.mark.slow
def test_from_pretrained_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json not found"):
        emanet.from_pretrained(tmp_path)
    model = _model("fcn_r18")
    model.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match="model.safetensors could not be read"):
        emanet.from_pretrained(tmp_path)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["num_classes"] = 7
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"wrong shapes.*decode_head.classifier.weight"):
        emanet.from_pretrained(tmp_path)


def test_ema_head_spells_out_every_emau_option():
    # create_model(num_bases=...) -> EMAHead(num_bases=...) -> EMAU(num_bases=...), by signature.
    head = inspect.signature(emanet.models.EMAHead.__init__).parameters
    unit = inspect.signature(emanet.EMAU.__init__).parameters
    for name, parameter in unit.items():
        if name in ("self", "channels", "norm_layer"):
            continue
        assert head[name].kind is inspect.Parameter.KEYWORD_ONLY, name
        assert head[name].default == parameter.default, name
    emau = emanet.models.EMAHead(16, 3, ema_channels=8, channels=4, num_bases=5, momentum=0.2).emau
    assert (emau.channels, emau.num_bases, emau.momentum) == (8, 5, 0.2)


def test_segmentor_stores_num_classes():
    model = _model("fcn_r18")
    assert model.num_classes == 5 and "num_classes" in vars(model)
    custom = torch.nn.Conv2d(512, 3, 1)  # any head: then num_classes must be given
    assert emanet.Segmentor(model.backbone, custom, num_classes=3).num_classes == 3
    with pytest.raises(ValueError, match="has no num_classes attribute; pass num_classes="):
        emanet.Segmentor(model.backbone, custom)
    with pytest.raises(ValueError, match="num_classes=4 does not match the decode head's 5"):
        emanet.Segmentor(model.backbone, model.decode_head, num_classes=4)
