"""emanet.Predictor: the same masks as `eval` in every mode, every kind of input, original sizes
and orientation, batching, max_size (a training run as a model: tests/engine/test_run_model.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import emanet
from emanet.engine.builders import build_val_loader
from emanet.engine.config import load_config
from emanet.engine.evaluate import EvalSettings, evaluate

TINY = {"ema_channels": 32, "channels": 16, "num_bases": 4}
SIZES = [(40, 56), (33, 45), (48, 48)]  # odd sizes: pad_mod pads them; slide windows overlap


def tiny_model(num_classes: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    return emanet.create_model("emanet_r18", num_classes, **TINY).eval()


def folder_dataset(root, sizes=SIZES, seed: int = 0):
    """A folder dataset (images/, masks/, classes.yaml, val.txt) of smooth random pictures."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    names = []
    for i, (h, w) in enumerate(sizes):
        small = rng.integers(0, 255, (4, 5, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((w, h), Image.BILINEAR)
        image.save(root / "images" / f"img{i}.png")
        Image.fromarray(rng.integers(0, 3, (h, w), dtype=np.uint8)).save(root / "masks" / f"img{i}.png")
        names.append(f"img{i}")
    (root / "classes.yaml").write_text("classes: [a, b, c]\n")
    (root / "val.txt").write_text("\n".join(names) + "\n")
    return [root / "images" / f"{n}.png" for n in names]


def eval_predictions(model, cfg, ms_flip=False, mode=None, sample_dir=None):
    """{name: (H, W) prediction} as `emanet eval` computes them (its loader, settings, evaluate)."""
    dataset, loader = build_val_loader(cfg)
    settings = EvalSettings.from_config(cfg, 3, ("a", "b", "c"), mode=mode, ms_flip=ms_flip, progress=False)
    evaluate(model, loader, settings, torch.device("cpu"), sample_dir)
    return {p.stem: np.load(p)["pred"] for p in sorted(sample_dir.glob("*.npz"))}


@pytest.mark.parametrize(
    "mode, ms_flip",
    [
        ("whole", False),
        ("slide", False),
        ("whole", True),
        pytest.param("slide", True, marks=pytest.mark.slow),
    ],
)
@pytest.mark.slow
def test_masks_equal_eval_predictions(tmp_path, mode, ms_flip):
    files = folder_dataset(tmp_path / "data")
    cfg = load_config(
        "folder",
        [
            f"data.root={tmp_path / 'data'}",
            "data.num_workers=0",
            "eval.pad_mod=8",
            "eval.crop_size=[24,24]",
            "eval.stride=[16,16]",
            "eval.ms_flip_scales=[0.75,1.0,1.5]",
            f"eval.num_samples={len(files)}",
            "train.amp=none",
        ],
    )
    model = tiny_model()
    expected = eval_predictions(model, cfg, ms_flip, mode, tmp_path / f"samples_{mode}_{ms_flip}")
    predictor = emanet.Predictor(
        model, mode=mode, crop=(24, 24), stride=(16, 16), pad_mod=8, device="cpu",
        scales=(0.75, 1.0, 1.5) if ms_flip else (1.0,), flip=ms_flip,
    )  # fmt: skip
    preds = predictor.predict(tmp_path / "data" / "images")  # a folder: a list, in name order
    assert [p.source for p in preds] == [str(f) for f in files]
    for pred, f in zip(preds, files, strict=True):
        assert pred.mask.shape == expected[f.stem].shape
        assert np.array_equal(pred.mask, expected[f.stem]), (mode, ms_flip, f.name)


@pytest.mark.slow
def test_every_kind_of_input_gives_the_same_mask(tmp_path):
    files = folder_dataset(tmp_path / "data", sizes=[(40, 56), (40, 56), (33, 45)])
    predictor = emanet.Predictor(tiny_model(), device="cpu", batch_size=2)
    ref = predictor.predict(files[0], return_probs=True)  # one path: one Prediction
    assert isinstance(ref, emanet.Prediction) and ref.mask.shape == (40, 56)
    assert ref.probs.shape == (3, 40, 56) and np.allclose(ref.probs.sum(0), 1, atol=1e-5)
    array = np.asarray(Image.open(files[0]).convert("RGB"))
    pil, tensor = Image.open(files[0]), torch.from_numpy(array).permute(2, 0, 1)
    for item in (array, pil, tensor, tensor.float() / 255, array.astype(np.float32) / 255):
        assert np.array_equal(predictor.predict(item).mask, ref.mask)
    glob = predictor.predict(str(tmp_path / "data" / "images" / "*.png"))
    batch = predictor.predict(tensor[None].repeat(2, 1, 1, 1))
    mixed = predictor.predict([files[0], array, files[2]])  # batched where sizes agree
    assert len(glob) == 3 and len(batch) == 2 and len(mixed) == 3
    assert np.array_equal(glob[0].mask, ref.mask) and np.array_equal(batch[1].mask, ref.mask)
    assert mixed[2].mask.shape == (33, 45)
    # batched and one-by-one agree to float rounding
    solo = emanet.Predictor(predictor.model, device="cpu").predict(files[1], return_probs=True)
    assert np.allclose(glob[1].probs if glob[1].probs is not None else solo.probs, solo.probs, atol=1e-5)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        predictor.predict(np.zeros((2, 3, 4, 5)))
    with pytest.raises(FileNotFoundError, match="no such file"):
        predictor.predict(tmp_path / "nope.png")


def test_exif_orientation_and_attention(tmp_path):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 48, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: displayed rotated by 90 degrees
    image.save(tmp_path / "phone.jpg", exif=exif)
    predictor = emanet.Predictor(tiny_model(), device="cpu")
    pred = predictor.predict(tmp_path / "phone.jpg", return_attention=True)
    assert pred.mask.shape == (48, 32) == pred.image.shape[:2]  # upright, as displayed
    assert pred.attention.shape[0] == 4 and np.allclose(pred.attention.sum(0), 1, atol=1e-4)
    pil = predictor.predict(Image.open(tmp_path / "phone.jpg"))
    assert np.array_equal(pil.mask, pred.mask)


def test_max_size_predicts_small_and_returns_full_size():
    big = np.asarray(Image.new("RGB", (200, 120), (90, 140, 30)))
    model = tiny_model()
    pred = emanet.Predictor(model, device="cpu", max_size=64).predict(big, return_probs=True)
    assert pred.mask.shape == (120, 200) and pred.probs.shape == (3, 120, 200)
    assert np.array_equal(pred.mask, pred.probs.argmax(0))
    # the banded resize is the ordinary bilinear resize
    from emanet.predict import _resize_argmax

    probs = torch.rand(3, 7, 9).softmax(0)
    mask, full = _resize_argmax(probs, (30, 41), keep=True, band=4)
    ref = torch.nn.functional.interpolate(probs[None], size=(30, 41), mode="bilinear", align_corners=False)[0]
    assert torch.allclose(full, ref, atol=1e-6) and np.array_equal(mask, ref.argmax(0).numpy())


@pytest.mark.slow
def test_precision_fp32_runs_through_optimize_for_inference(tmp_path):
    files = folder_dataset(tmp_path / "data", sizes=[(40, 56)])
    model = tiny_model()
    plain = emanet.Predictor(model, device="cpu").predict(files[0], return_probs=True)
    fast = emanet.Predictor(model, device="cpu", precision="fp32").predict(files[0], return_probs=True)
    assert np.abs(fast.probs - plain.probs).max() < 1e-3
