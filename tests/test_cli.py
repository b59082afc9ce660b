"""The `emanet` command end to end: every dataset layout trains and evaluates; bad inputs give
one clear line naming the file."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from emanet.cli import main
from emanet.data.fake import FAKE_LAYOUTS, write_fake_dataset

EXPECTED_CLASSES = {
    "voc_aug": 21,
    "cityscapes": 19,
    "ade20k": 150,
    "pascal_context": 59,
    "coco_stuff": 171,
    "folder": 3,
}


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny convolutions: one thread avoids OpenMP spin-waiting on a busy 2-core machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _train_args(name, root, out, model="fcn_r18", iters=2):
    return [
        "train",
        "demo",
        f"model.name={model}",
        'model.options={"channels": 8}'
        if model.startswith("fcn")
        else 'model.options={"ema_channels": 16, "channels": 8, "num_bases": 4}',
        f"data.name={name}",
        f"data.root={root}",
        "data.train_split=train",
        "data.val_split=val",
        "data.options={}",
        "data.crop_size=[32, 32]",
        "data.scales=[0.75, 1.25]",
        f"train.iters={iters}",
        "train.batch_size=2",
        "train.checkpoint_every=2",
        f"output_dir={out}",
        "--no-progress",
    ]


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) >= 1 and lines[-1].startswith("emanet: error: ")
    return err


@pytest.mark.slow
@pytest.mark.parametrize("name", FAKE_LAYOUTS)
def test_each_layout_trains_and_evaluates(name, tmp_path, capsys):
    root = write_fake_dataset(name, tmp_path / "data", num_images=2, size=(36, 44))
    run = tmp_path / "run"
    assert main(_train_args(name, root, run)) == 0
    result = json.loads((run / "eval.json").read_text())
    assert len(result["class_names"]) == EXPECTED_CLASSES[name]
    assert result["num_images"] == 2
    capsys.readouterr()
    args = [
        "eval",
        "demo",
        f"data.name={name}",
        f"data.root={root}",
        "data.val_split=val",
        "data.options={}",
        "--checkpoint",
        str(run),
        "--no-progress",
        "--out",
        str(tmp_path / "m.json"),
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "mIoU" in out
    if EXPECTED_CLASSES[name] > 3:  # tiny data: most classes absent, and the table says so
        assert "left out of the means" in out
    again = json.loads((tmp_path / "m.json").read_text())
    assert again["confusion_matrix"] == result["confusion_matrix"]  # same model, same data


@pytest.mark.slow
def test_train_eval_predict_attention(tmp_path, capsys):
    root = write_fake_dataset("folder", tmp_path / "data", num_images=2, size=(40, 40))
    run = tmp_path / "run"
    assert main(_train_args("folder", root, run, model="emanet_r18")) == 0
    for extra in (["--mode", "slide"], ["--ms-flip"]):
        args = [
            "eval",
            "demo",
            "data.name=folder",
            f"data.root={root}",
            "data.val_split=val",
            "data.options={}",
            "eval.crop_size=[24, 24]",
            "eval.stride=[16, 16]",
            "--checkpoint",
            str(run),
            "--no-progress",
        ]
        assert main(args + extra) == 0
    out = capsys.readouterr().out
    assert "slide" in out and "MS+flip" in out
    base = ["eval", "demo", "data.name=folder", f"data.root={root}", "data.val_split=val", "data.options={}"]
    for precision in ("fp32", "bf16"):
        out_json = tmp_path / f"{precision}.json"
        args = base + [
            "--checkpoint",
            str(run),
            "--no-progress",
            "--precision",
            precision,
            "--out",
            str(out_json),
        ]
        assert main(args) == 0
        assert 0.0 <= json.loads(out_json.read_text())["pixel_acc"] <= 1.0
    image = next((root / "images").rglob("*.png"))
    outdir = tmp_path / "pred"
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(run / "checkpoints"),
                str(image),
                "--out",
                str(outdir),
                "--attention",
                "--precision",
                "bf16",
            ]
        )
        == 0
    )
    name = image.name  # outputs keep the extension: NAME.png_mask.png
    mask = Image.open(outdir / f"{name}_mask.png")
    assert mask.mode == "P" and mask.size == Image.open(image).size
    assert np.asarray(mask).max() < 3
    for suffix in ("color", "overlay", "attention", "bases"):
        assert (outdir / f"{name}_{suffix}.png").is_file()


def _folder(tmp_path, n=2):
    return write_fake_dataset("folder", tmp_path / "data", num_images=n, size=(32, 32))


def _first(root, sub, split="train"):
    files = sorted((root / sub).rglob("*.*"))
    split_file = root / f"{split}.txt"
    if split_file.is_file():
        stems = split_file.read_text().split()
        files = [f for f in files if f.stem in stems]
    return files[0]


def _run_bad(tmp_path, capsys, root, *extra) -> str:
    assert main(_train_args("folder", root, tmp_path / "run") + list(extra)) == 2
    return _error_line(capsys)


def test_corrupt_image(tmp_path, capsys):
    root = _folder(tmp_path)
    image = _first(root, "images")
    image.write_bytes(image.read_bytes()[: len(image.read_bytes()) // 3])
    err = _run_bad(tmp_path, capsys, root)
    assert str(image) in err and ("truncated" in err or "corrupt" in err)


def test_mask_size_differs(tmp_path, capsys):
    root = _folder(tmp_path)
    mask = _first(root, "masks")
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(mask)
    err = _run_bad(tmp_path, capsys, root)
    assert str(mask) in err and "20" in err


def test_mask_values_out_of_range(tmp_path, capsys):
    root = _folder(tmp_path)
    mask = _first(root, "masks")
    Image.fromarray(np.full((32, 32), 7, np.uint8)).save(mask)
    err = _run_bad(tmp_path, capsys, root)
    assert str(mask) in err and "7" in err


def test_rgb_mask(tmp_path, capsys):
    root = _folder(tmp_path)
    mask = _first(root, "masks")
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[..., 0] = 128
    Image.fromarray(rgb).save(mask)
    err = _run_bad(tmp_path, capsys, root)
    assert str(mask) in err and "index mask" in err


def test_empty_split_file(tmp_path, capsys):
    root = _folder(tmp_path)
    (root / "train.txt").write_text("\n")
    err = _run_bad(tmp_path, capsys, root)
    assert "train.txt" in err and "empty" in err


def test_missing_checkpoint(tmp_path, capsys):
    assert main(["eval", "demo", "--checkpoint", str(tmp_path / "nope.pt")]) == 2
    assert "nope.pt not found" in _error_line(capsys)


def test_unknown_config_key(capsys):
    assert main(["train", "demo", "train.lr_rate=0.1"]) == 2
    assert "did you mean 'train.lr'" in _error_line(capsys)


@pytest.mark.slow
def test_skip_bad_samples_through_cli(tmp_path, capsys):
    root = _folder(tmp_path, n=3)
    image = _first(root, "images")
    image.write_bytes(b"not an image")
    assert main(_train_args("folder", root, tmp_path / "run") + ["data.skip_bad_samples=true"]) == 0
    out = capsys.readouterr().out
    assert "skipped" in out
    assert image.name in (tmp_path / "run" / "skipped.txt").read_text()


@pytest.mark.slow
def test_resume_followed_by_override(tmp_path, capsys):
    root = _folder(tmp_path)
    args = _train_args("folder", root, tmp_path / "run", iters=2) + ["train.log_every=1"]
    assert main(args) == 0
    # `--resume train.iters=4`: the override is not taken for a checkpoint path
    assert main(args + ["--resume", "train.iters=4"]) == 0
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["iter"] for x in lines if '"train"' in x] == [1, 2, 3, 4]


def test_not_a_checkpoint(tmp_path, capsys):
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    assert main(["predict", "--checkpoint", str(text), str(text), "--out", str(tmp_path)]) == 2
    err = _error_line(capsys)
    assert "notes.pt" in err and "not a readable PyTorch checkpoint" in err


def test_debug_shows_traceback(tmp_path):
    with pytest.raises(FileNotFoundError):
        main(["--debug", "eval", "demo", "--checkpoint", str(tmp_path / "nope.pt")])


@pytest.mark.slow
def test_python_dash_m():
    out = subprocess.run(
        [sys.executable, "-m", "emanet", "models", "emanet_r1*"], capture_output=True, text=True, check=True
    ).stdout
    assert "emanet_r101" in out and "emanet_r18" in out
