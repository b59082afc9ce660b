"""Checkpoint import (emanet/models/convert*.py).

Every foreign layout is written out here by hand (key names and shapes from the format, random
values) independently of the converter's tables, saved with torch.save and loaded back. Each
test proves the tensors landed in the right place twice: exporting back to the foreign layout
gives the same keys and values, and an early feature map (or the whole head) equals a forward
written here with plain torch.nn.functional calls on the foreign state dict.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from publisher_layouts import N_CLS, C, K, encoding_sd, mmseg_sd, mmseg_v1c_sd, official_sd, torchvision_sd

import emanet
from emanet.cli import main as cli_main
from emanet.models.convert import export_backbone, export_mmseg, export_official, load_mmseg, load_official


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # Tiny feature maps: one thread is ~50× faster than two fighting over a busy 2-core machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class _Settings:  # a pickled object of this class needs code to unpickle
    lr = 0.009


# ------------------------------------------------------------------ forwards, by hand


def _bnf(x, sd, p):
    return F.batch_norm(
        x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"]
    )


def _cbr(x, sd, conv, bn, padding=1, stride=1):
    return F.relu(_bnf(F.conv2d(x, sd[f"{conv}.weight"], None, stride, padding), sd, bn))


def stem_forward(x, sd, kind, p=""):
    """Stem + max-pool of the foreign layout (prefix `p`): (B, 3, H, W) -> (B, C, H/4, W/4)."""
    if kind == "classic":
        x = _cbr(x, sd, f"{p}conv1", f"{p}bn1", 3, 2)
    else:
        (c0, b0, c1, b1, c2, b2) = {
            "deep": ("conv1.0", "conv1.1", "conv1.3", "conv1.4", "conv1.6", "bn1"),
            "deep32": ("conv1.0", "conv1.1", "conv1.3", "conv1.4", "conv1.6", "bn1"),
            "v1c": ("stem.0", "stem.1", "stem.3", "stem.4", "stem.6", "stem.7"),
            "official": (
                "extractor.0.0",
                "extractor.0.1",
                "extractor.0.3",
                "extractor.0.4",
                "extractor.0.6",
                "extractor.1",
            ),
        }[kind]
        x = _cbr(x, sd, p + c0, p + b0, 1, 2)
        x = _cbr(x, sd, p + c1, p + b1)
        x = _cbr(x, sd, p + c2, p + b2)
    return F.max_pool2d(x, 3, 2, 1)


def block_forward(x, sd, p, bottleneck=True):
    """The first block of layer1 (stride 1, dilation 1), prefix `p` such as "layer1.0"."""
    identity = x
    if f"{p}.downsample.0.weight" in sd:
        identity = _bnf(F.conv2d(x, sd[f"{p}.downsample.0.weight"]), sd, f"{p}.downsample.1")
    if bottleneck:
        out = _cbr(x, sd, f"{p}.conv1", f"{p}.bn1", 0)
        out = _cbr(out, sd, f"{p}.conv2", f"{p}.bn2")
        out = _bnf(F.conv2d(out, sd[f"{p}.conv3.weight"]), sd, f"{p}.bn3")
    else:
        out = _cbr(x, sd, f"{p}.conv1", f"{p}.bn1")
        out = _bnf(F.conv2d(out, sd[f"{p}.conv2.weight"], padding=1), sd, f"{p}.bn2")
    return F.relu(out + identity)


def authors_head(feats, sd, size, T=3):
    """fc0 -> EMAU -> fc1 -> fc2 -> upsample, as the authors' network.py (eps added)."""
    x = _cbr(feats, sd, "fc0.conv", "fc0.bn")
    idn = x
    x = F.conv2d(x, sd["emau.conv1.weight"], sd["emau.conv1.bias"])
    b, c, h, w = x.shape
    x = x.view(b, c, h * w)
    mu = sd["emau.mu"].repeat(b, 1, 1)
    for _ in range(T):
        z = F.softmax(torch.bmm(x.permute(0, 2, 1), mu), dim=2)
        z_ = z / (1e-6 + z.sum(dim=1, keepdim=True))
        mu = torch.bmm(x, z_)
        mu = mu / (1e-6 + mu.norm(dim=1, keepdim=True))
    x = F.relu(mu.matmul(z.permute(0, 2, 1)).view(b, c, h, w))
    x = _bnf(F.conv2d(x, sd["emau.conv2.0.weight"]), sd, "emau.conv2.1")
    x = F.relu(x + idn)
    x = _cbr(x, sd, "fc1.0.conv", "fc1.0.bn")
    x = F.conv2d(x, sd["fc2.weight"], sd["fc2.bias"])
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def mmseg_head(feats, sd, size, T=3):
    """OpenMMLab EMAHead: F.normalize in the EM, concat_input, align_corners=False."""
    d = "decode_head"
    feats_in = _cbr(feats, sd, f"{d}.ema_in_conv.conv", f"{d}.ema_in_conv.bn")
    x = F.conv2d(feats_in, sd[f"{d}.ema_mid_conv.conv.weight"], sd[f"{d}.ema_mid_conv.conv.bias"])
    b, c, h, w = x.shape
    x = x.view(b, c, h * w)
    bases = sd[f"{d}.ema_module.bases"].repeat(b, 1, 1)
    for _ in range(T):
        attention = F.softmax(torch.einsum("bcn,bck->bnk", x, bases), dim=2)
        bases = F.normalize(torch.einsum("bcn,bnk->bck", x, F.normalize(attention, dim=1, p=1)), dim=1, p=2)
    recon = F.relu(torch.einsum("bck,bnk->bcn", bases, attention).view(b, c, h, w))
    recon = _bnf(F.conv2d(recon, sd[f"{d}.ema_out_conv.conv.weight"]), sd, f"{d}.ema_out_conv.bn")
    out = _cbr(F.relu(feats_in + recon), sd, f"{d}.bottleneck.conv", f"{d}.bottleneck.bn")
    out = _cbr(torch.cat([feats, out], dim=1), sd, f"{d}.conv_cat.conv", f"{d}.conv_cat.bn")
    out = F.conv2d(out, sd[f"{d}.conv_seg.weight"], sd[f"{d}.conv_seg.bias"])
    return F.interpolate(out, size=size, mode="bilinear", align_corners=False)


def our_stem_and_block(model, x):
    bb = model.backbone.eval()
    with torch.no_grad():
        stem = bb.maxpool(bb.act1(bb.bn1(bb.conv1(x))))
        return stem, bb.layer1[0](stem)


def assert_same(a: dict, b: dict):
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].shape == b[k].shape and torch.equal(a[k].to(b[k].dtype), b[k]), k


def _save(obj, path):
    torch.save(obj, path)
    return path


X = torch.randn(1, 3, 32, 40, generator=torch.Generator().manual_seed(9))


# ------------------------------------------------------------------ ImageNet backbones


@pytest.mark.slow
@pytest.mark.parametrize(
    "fmt,depth,stem,kind,wrap",
    [
        ("torchvision", 18, "classic", "classic", "bare-no-counters"),  # 2017 torchvision files
        ("timm", 50, "classic", "classic", "safetensors"),
        ("encoding", 50, "deep", "deep", "bare"),
        ("encoding", 18, "deep_v1c", "deep32", "bare"),  # timm resnet*c: conv1.N with 32-32-64
        ("mmseg", 50, "deep_v1c", "v1c", "bare"),  # open-mmlab://resnet50_v1c: stem.* + fc.*
        ("mmseg", 50, "deep_v1c", "v1c", "backbone."),  # OpenMMLab classification: backbone.* + head.fc.*
    ],
)
def test_backbone_formats(tmp_path, fmt, depth, stem, kind, wrap):
    counter = wrap != "bare-no-counters"
    sd = {
        "torchvision": lambda: torchvision_sd(depth, counter),
        "timm": lambda: torchvision_sd(depth, seed=5),
        "encoding": lambda: encoding_sd(depth, stem=kind),
        "mmseg": mmseg_v1c_sd,
    }[fmt]()
    if wrap == "safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "model.safetensors"
        save_file(sd, str(path))
    elif wrap == "backbone.":
        fc = {"head.fc.weight": sd.pop("fc.weight"), "head.fc.bias": sd.pop("fc.bias")}
        path = _save(
            {"state_dict": {f"backbone.{k}": v for k, v in sd.items()} | fc, "meta": {}}, tmp_path / "m.pth"
        )
    else:
        path = _save(sd, tmp_path / f"{fmt}.pth")
    model = emanet.create_model(f"emanet_r{depth}", 5, stem=stem, ema_channels=C, backbone_weights=path)
    # fc.* is the ImageNet classifier: ignored on purpose, everything else round-trips exactly.
    foreign = {k: v for k, v in sd.items() if not k.startswith("fc.")}
    assert_same(export_backbone(model.backbone, fmt, num_batches_tracked=counter), foreign)
    stem_out, block_out = our_stem_and_block(model, X)
    torch.testing.assert_close(stem_out, stem_forward(X, sd, kind))
    first = block_forward(stem_forward(X, sd, kind), sd, "layer1.0", bottleneck=depth >= 50)
    torch.testing.assert_close(block_out, first)
    assert "backbone_weights" not in model.config  # the weights live in the saved model


@pytest.mark.slow
def test_backbone_weights_not_in_config_and_roundtrip(tmp_path):
    path = _save(torchvision_sd(18), tmp_path / "resnet18.pth")
    model = emanet.create_model("fcn_r18", 4, stem="classic", backbone_weights=str(path)).eval()
    assert json.dumps(model.config) and "backbone_weights" not in json.dumps(model.config)
    model.save_pretrained(tmp_path / "out")
    with torch.no_grad():
        torch.testing.assert_close(emanet.from_pretrained(tmp_path / "out")(X), model(X), rtol=0, atol=0)


def test_backbone_strict_errors_name_keys(tmp_path):
    sd = torchvision_sd(18)
    del sd["layer2.0.downsample.1.running_var"]
    sd["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    sd["layer9.extra"] = torch.zeros(1)
    path = _save(sd, tmp_path / "bad.pth")
    with pytest.raises(ValueError) as e:
        emanet.create_model("fcn_r18", 4, stem="classic", backbone_weights=path)
    msg = str(e.value)
    assert str(path) in msg
    assert "missing keys (1): layer2.0.downsample.1.running_var" in msg
    assert "unexpected keys (1): layer9.extra" in msg
    assert "layer1.0.conv1.weight: file (64, 64, 1, 1) vs model (64, 64, 3, 3)" in msg


def test_backbone_non_strict_prints_every_skipped_tensor(tmp_path, capsys):
    sd = torchvision_sd(18)
    del sd["layer4.1.bn2.bias"]
    sd["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    path = _save(sd, tmp_path / "bad.pth")
    model = emanet.create_model(
        "fcn_r18", 4, stem="classic", backbone_weights=path, backbone_weights_strict=False
    )
    err = capsys.readouterr().err
    assert "skipped missing layer4.1.bn2.bias" in err and "skipped wrong shape layer1.0.conv1.weight" in err
    assert "fc.weight" not in err  # the classifier is ignored on purpose, not "skipped"
    assert torch.equal(model.backbone.layer1[1].conv2.weight, sd["layer1.1.conv2.weight"])


def test_backbone_stem_and_depth_mismatch_hint(tmp_path):
    path = _save(torchvision_sd(18), tmp_path / "resnet18.pth")
    with pytest.raises(
        ValueError, match=r"stem='classic' but the model has stem='deep'.*ResNet-18 but the model"
    ):
        emanet.create_model("fcn_r34", 4, backbone_weights=path)


@pytest.mark.slow
def test_backbone_resnet_d_is_refused():
    sd = {"conv1.0.weight": torch.zeros(32, 3, 3, 3), "layer1.0.downsample.2.weight": torch.zeros(256)}
    with pytest.raises(ValueError, match="ResNet-D"):
        emanet.create_model("fcn_r50", 4, backbone_weights=sd)


# ------------------------------------------------------------------ the authors' checkpoint


@pytest.fixture(scope="module")
def official():
    return official_sd()


@pytest.fixture(scope="module")
def official_model(official):
    return load_official({"net": official, "step": 30000})


def test_official_layout_roundtrip_and_forward(official, official_model):
    model = official_model
    assert not model.training and model.name == "emanet_r50" and model.num_classes == N_CLS
    emau = model.decode_head.emau
    assert (emau.channels, emau.num_bases, emau.eps_mode, model.align_corners) == (C, K, "add", True)
    assert model.backbone.dilations[3] == [2, 8, 16]
    assert_same(export_official(model), official)
    stem_out, block_out = our_stem_and_block(model, X)
    torch.testing.assert_close(stem_out, stem_forward(X, official, "official"))
    torch.testing.assert_close(block_out, block_forward(stem_out, official, "extractor.4.0"))
    with torch.no_grad():
        feats = model.backbone(X)[-1]
        torch.testing.assert_close(
            model(X), authors_head(feats, official, X.shape[-2:]), rtol=1e-4, atol=1e-4
        )


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["module-prefix-file", "bare-no-counters"])
def test_official_wrappers(tmp_path, official, official_model, variant):
    if variant == "module-prefix-file":
        obj = {"net": {f"module.{k}": v for k, v in official.items()}, "step": 12}
        src = _save(obj, tmp_path / "emanet.pth")
        loaded = load_official(src, num_classes=N_CLS)
        assert_same(export_official(loaded), official)
        with torch.no_grad():
            assert torch.equal(loaded(X), official_model(X))
    else:  # old torch / SyncBN files have no num_batches_tracked: the model keeps its own
        bare = {k: v for k, v in official.items() if not k.endswith("num_batches_tracked")}
        loaded = load_official(bare)
        assert_same(export_official(loaded, num_batches_tracked=False), bare)


@pytest.mark.slow
def test_official_resnet101_depth_from_layer3():
    sd = official_sd(depth=101, num_classes=3, counter=False, seed=7)
    model = load_official(sd)
    assert model.name == "emanet_r101" and len(model.backbone.layer3) == 23 and model.num_classes == 3
    assert_same(export_official(model, num_batches_tracked=False), sd)


@pytest.mark.slow
def test_official_errors(tmp_path, official):
    with pytest.raises(ValueError, match=r"num_classes=19 was given but .* has 21 classes \(fc2.weight"):
        load_official(official, num_classes=19)
    sd = dict(official)
    del sd["extractor.5.1.conv2.weight"]
    sd["fc0.conv.weight"] = torch.zeros(C, 1024, 3, 3)
    with pytest.raises(ValueError) as e:
        load_official(_save({"net": sd, "step": 1}, tmp_path / "bad.pth"))
    msg = str(e.value)
    assert "bad.pth" in msg and "missing keys (1): extractor.5.1.conv2.weight" in msg
    assert "fc0.conv.weight: file (64, 1024, 3, 3) vs model (64, 2048, 3, 3)" in msg
    with pytest.raises(
        ValueError, match="missing keys fc2.weight.*ImageNet backbone: use emanet.create_model"
    ):
        load_official(torchvision_sd(18))
    with pytest.raises(ValueError, match="missing keys emau.mu.*OpenMMLab checkpoint: use emanet.load_mmseg"):
        load_official(
            {"decode_head.conv_seg.weight": torch.zeros(2, 256, 1, 1), "fc2.weight": torch.zeros(1)}
        )


def test_truncated_and_code_pickles_are_refused(tmp_path, official):
    small = {k: v for k, v in official.items() if k.startswith("fc2.")}
    good = _save({"net": small, "step": 1}, tmp_path / "good.pth")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(
        ValueError, match=r"truncated.pth is not a readable PyTorch checkpoint.*truncated or corrupt"
    ):
        load_official(truncated)
    code = _save({"net": small, "settings": _Settings()}, tmp_path / "code.pth")
    for load in (load_official, load_mmseg, lambda p: emanet.create_model("fcn_r18", backbone_weights=p)):
        with pytest.raises(
            ValueError, match=r"code.pth was refused: unpickling it would run code \(.*_Settings\)"
        ):
            load(code)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_official(tmp_path / "nope.pth")


# ------------------------------------------------------------------ OpenMMLab EMANet


CLASSES, PALETTE = [f"class{i}" for i in range(19)], [[i, 2 * i, 3 * i] for i in range(19)]


@pytest.fixture(scope="module")
def mmseg():
    return mmseg_sd()


@pytest.fixture(scope="module")
def mmseg_model(mmseg):  # OpenMMLab 0.x meta
    return load_mmseg({"state_dict": mmseg, "meta": {"CLASSES": tuple(CLASSES), "PALETTE": PALETTE}})


@pytest.mark.slow
def test_mmseg_layout_roundtrip_and_forward(mmseg, mmseg_model):
    model = mmseg_model
    assert model.class_names == CLASSES and model.palette == PALETTE
    assert model.backbone.stem_type == "deep_v1c" and model.backbone.dilations[3] == [2, 4, 4]
    emau = model.decode_head.emau
    assert (emau.eps_mode, emau.renormalize_mean, model.align_corners) == ("clamp", True, False)
    assert model.aux_head is not None and model.decode_head.conv_cat is not None
    assert_same(export_mmseg(model), mmseg)
    bb = {k[len("backbone.") :]: v for k, v in mmseg.items() if k.startswith("backbone.")}
    stem_out, block_out = our_stem_and_block(model, X)
    torch.testing.assert_close(stem_out, stem_forward(X, bb, "v1c"))
    torch.testing.assert_close(block_out, block_forward(stem_out, bb, "layer1.0"))
    with torch.no_grad():
        feats = model.backbone(X)
        torch.testing.assert_close(model(X), mmseg_head(feats[-1], mmseg, X.shape[-2:]), rtol=1e-4, atol=1e-4)
        aux = _cbr(feats[2], mmseg, "auxiliary_head.convs.0.conv", "auxiliary_head.convs.0.bn")
        aux = F.conv2d(aux, mmseg["auxiliary_head.conv_seg.weight"], mmseg["auxiliary_head.conv_seg.bias"])
        aux = F.interpolate(aux, size=X.shape[-2:], mode="bilinear", align_corners=False)
        torch.testing.assert_close(model(X, return_aux=True)["aux"], aux, rtol=1e-4, atol=1e-4)


def test_mmseg_errors(mmseg):
    with pytest.raises(ValueError, match=r"num_classes=21 was given but .* has 19 classes"):
        load_mmseg(mmseg, num_classes=21)
    sd = {k: v for k, v in mmseg.items() if k != "decode_head.ema_out_conv.bn.running_mean"}
    sd["decode_head.conv_cat.conv.weight"] = torch.zeros(256, 2048, 3, 3)
    with pytest.raises(ValueError) as e:
        load_mmseg({"state_dict": sd})
    assert "missing keys (1): decode_head.ema_out_conv.bn.running_mean" in str(e.value)
    assert "decode_head.conv_cat.conv.weight: file (256, 2048, 3, 3) vs model (256, 2304, 3, 3)" in str(
        e.value
    )


# ------------------------------------------------------------------ emanet convert


@pytest.mark.slow
def test_cli_convert_then_from_pretrained(tmp_path, official, official_model, mmseg, mmseg_model, capsys):
    src = _save({"net": official, "step": 1}, tmp_path / "emanet_voc.pth")
    assert cli_main(["convert", "--from", "official", str(src), str(tmp_path / "voc")]) == 0
    loaded = emanet.from_pretrained(tmp_path / "voc")
    with torch.no_grad():
        assert torch.equal(loaded(X), official_model(X))

    meta = {"dataset_meta": {"classes": CLASSES, "palette": PALETTE}}  # OpenMMLab 1.x meta
    src = _save({"state_dict": mmseg, "meta": meta}, tmp_path / "emanet_city.pth")
    assert cli_main(["convert", "--from", "mmseg", str(src), str(tmp_path / "city")]) == 0
    loaded = emanet.from_pretrained(tmp_path / "city")
    assert loaded.class_names == CLASSES and loaded.palette == PALETTE and loaded.aux_head is not None
    with torch.no_grad():
        assert torch.equal(loaded(X), mmseg_model(X))

    capsys.readouterr()
    assert (
        cli_main(["convert", "--from", "mmseg", str(tmp_path / "emanet_voc.pth"), str(tmp_path / "x")]) == 2
    )
    assert "load_official" in capsys.readouterr().err
