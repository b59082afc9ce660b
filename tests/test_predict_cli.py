"""`emanet predict` on folders, globs and videos: a mirrored output tree, nothing overwritten,
unreadable files skipped and listed; an overlay video with the input's frame count."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import emanet
from emanet.cli import main

TINY = {"ema_channels": 32, "channels": 16, "num_bases": 4}


@pytest.fixture
def model_dir(tmp_path):
    torch.manual_seed(0)
    model = emanet.create_model("emanet_r18", 3, **TINY).eval()
    model.save_pretrained(
        tmp_path / "model",
        class_names=["sky", "tree", "road"],
        palette=[[0, 0, 255], [0, 255, 0], [90, 90, 90]],
    )
    return tmp_path / "model"


def _picture(h: int, w: int, seed: int) -> Image.Image:
    small = np.random.default_rng(seed).integers(0, 255, (3, 4, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((w, h), Image.BILINEAR)


@pytest.mark.slow
def test_folder_tree_is_mirrored_and_bad_files_listed(tmp_path, model_dir, capsys):
    src = tmp_path / "photos"
    (src / "trip" / "day1").mkdir(parents=True)
    (src / "home").mkdir()
    images = {
        "a.png": (32, 40), "a.jpg": (36, 36),  # two files of one stem
        "trip/b.webp": (40, 32), "trip/day1/c.bmp": (33, 47), "trip/day1/a.png": (32, 32),
        "home/d.tif": (48, 40),
    }  # fmt: skip
    for i, (rel, (h, w)) in enumerate(images.items()):
        _picture(h, w, i).save(src / rel)
    (src / "trip" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")  # unreadable
    (src / "notes.txt").write_text("not an image")  # in a folder: not an image extension, left alone
    out = tmp_path / "out"
    rc = main(
        [
            "predict",
            "--checkpoint",
            str(model_dir),
            str(src),
            "--out",
            str(out),
            "--no-progress",
            "--batch-size",
            "2",
        ]
    )
    assert rc == 1  # one file was skipped
    lines = capsys.readouterr().out.strip().splitlines()
    summary = lines[-1]
    assert summary.startswith(f"predicted {len(images)} of {len(images) + 1} files")
    assert "skipped 1 unreadable" in summary and "broken.png" in summary and "notes.txt" not in summary
    predictor = emanet.Predictor(model_dir, device="cpu")
    for rel, (h, w) in images.items():
        mask_path = out / f"{rel}_mask.png"  # the extension stays in the name: a.png / a.jpg apart
        mask = Image.open(mask_path)
        assert mask.mode == "P" and mask.size == (w, h), rel
        assert np.array_equal(np.asarray(mask), predictor.predict(src / rel).mask), rel
        for suffix in ("_color.png", "_overlay.png"):
            assert (out / f"{rel}{suffix}").is_file()
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*_mask.png"))
    assert written == sorted(f"{rel}_mask.png" for rel in images)  # one per image, none lost
    assert not (out / "trip" / "broken.png_mask.png").exists()


def test_globs_and_files_with_a_text_file(tmp_path, model_dir, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    _picture(32, 32, 0).save(tmp_path / "x" / "same.png")
    _picture(32, 48, 1).save(tmp_path / "y" / "same.png")
    (tmp_path / "x" / "readme.txt").write_text("hello")
    out = tmp_path / "out"
    inputs = [str(tmp_path / "x" / "*"), str(tmp_path / "y" / "same.png"), str(tmp_path / "missing.png")]
    args = ["predict", "--checkpoint", str(model_dir), *inputs, "--out", str(out), "--no-progress",
            "--attention", "--html"]  # fmt: skip
    assert main(args) == 1
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert "predicted 2 of 3 files" in summary and "readme.txt" in summary and "missing.png" in summary
    # x/same.png and y/same.png: the tree mirrors the folders below their common root
    assert Image.open(out / "x" / "same.png_mask.png").size == (32, 32)
    assert Image.open(out / "y" / "same.png_mask.png").size == (48, 32)
    for suffix in ("_attention.png", "_bases.png", "_explore.html"):
        assert (out / "x" / f"same.png{suffix}").is_file()


@pytest.mark.slow
def test_video_in_overlay_video_out(tmp_path, model_dir, capsys):
    av = pytest.importorskip("av", reason="video needs the optional extra: pip install emanet[video]")
    from emanet.video import count_frames

    src = tmp_path / "clip.mp4"
    with av.open(str(src), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=12)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        for i in range(7):
            frame = np.asarray(_picture(32, 48, i))
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    assert count_frames(src) == 7
    out = tmp_path / "out"
    rc = main(
        [
            "predict",
            "--checkpoint",
            str(model_dir),
            str(src),
            "--out",
            str(out),
            "--no-progress",
            "--batch-size",
            "3",
        ]
    )
    assert rc == 0
    result = out / "clip.mp4_overlay.mp4"
    assert count_frames(result) == 7
    with av.open(str(result)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (48, 32) and float(stream.average_rate) == pytest.approx(12)
    assert "7 frames at 12 fps" in capsys.readouterr().out


def test_video_without_pyav_is_one_clear_line(monkeypatch):
    import sys

    from emanet.video import require_av

    monkeypatch.setitem(sys.modules, "av", None)  # import av -> ImportError
    with pytest.raises(ImportError, match=r"pip install emanet\[video\]"):
        require_av()
