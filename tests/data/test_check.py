"""`emanet data check`: a clean dataset exits 0; each broken one exits non-zero naming the file."""

from __future__ import annotations

import numpy as np
import pytest
from folder_helpers import blocks_image, two_region_mask, write_folder
from PIL import Image

from emanet.cli import main
from emanet.data.check import check_dataset
from emanet.engine.config import load_config


def _run(capsys, root, *extra, html=None):
    code = main(
        ["data", "check", "folder", f"data.root={root}", "--no-progress", "--html", str(html), *extra]
    )
    return code, capsys.readouterr().out


def test_clean_dataset_exits_0_and_writes_the_page(tmp_path, capsys):
    root = write_folder(
        tmp_path / "ok", {"a": two_region_mask(), "b": two_region_mask(value=1, background=0)}
    )
    code, out = _run(capsys, root, html=tmp_path / "page.html")
    assert code == 0, out
    assert "0 errors" in out and "train: 2 samples, 2 read" in out
    page = (tmp_path / "page.html").read_text()
    assert page.startswith("<!doctype html>") and "data:image/png;base64," in page  # overlays inline
    assert "Class histogram" in page and "object" in page and "http" not in page


def _broken(tmp_path, kind):
    """A dataset with one fault; returns (root, text that the report must contain, extra overrides)."""
    root = tmp_path / kind
    if kind == "binary_0_255":
        write_folder(root, {"a": two_region_mask(value=255)})
        return root, "label_map={255: 1}", []
    if kind == "scaled":
        write_folder(root, {"a": two_region_mask(value=170)}, classes=("bg", "x", "y"))
        return root, "masks/a.png: mask has class values [170]", []
    if kind == "off_by_one":
        mask = two_region_mask(value=2, background=1)
        mask[0, 0] = 0
        write_folder(root, {"a": mask})
        return root, "reduce_zero_label=true", []
    if kind == "size_mismatch":
        write_folder(root, {"a": two_region_mask()})
        Image.fromarray(two_region_mask(40, 64)).save(root / "masks" / "a.png")
        return root, "masks/a.png: mask is 64x40 (WxH) but its image is 64x48", []
    if kind == "duplicate":
        write_folder(root, {"a": two_region_mask()})
        Image.fromarray(blocks_image()).save(root / "images" / "a.jpg")
        return root, "a.jpg and a.png have the same name", []
    if kind == "corrupt":
        write_folder(root, {"a": two_region_mask(), "b": two_region_mask()})
        (root / "images" / "b.png").write_bytes(b"garbage")
        return root, "images/b.png: cannot decode image", []
    if kind == "missing_mask":
        write_folder(root, {"a": two_region_mask(), "b": two_region_mask()})
        (root / "masks" / "b.png").unlink()
        return root, "masks/b.png: mask file is missing", []
    if kind == "colour_unknown":
        rgb = np.zeros((48, 64, 3), np.uint8)
        rgb[:10] = (9, 9, 200)
        write_folder(root, {"a": rgb})
        return root, "masks/a.png: colour mask has colours [(9, 9, 200)]", []
    if kind == "val_unlabelled":
        write_folder(root, {"a": two_region_mask(), "b": np.full((48, 64), 255, np.uint8)})
        (root / "val.txt").write_text("b\n")
        return root, "split 'val': no labelled pixel", []
    if kind == "bad_split":
        write_folder(root, {"a": two_region_mask()})
        return root, "vall.txt: split list for split='vall' not found", ["data.val_split=vall"]
    if kind == "unknown_option":
        write_folder(root, {"a": two_region_mask()})
        return root, "dataset 'folder' has no option 'size'", ["data.options.size=128"]
    raise AssertionError(kind)


KINDS = [
    "binary_0_255",
    "scaled",
    "off_by_one",
    "size_mismatch",
    "duplicate",
    "corrupt",
    "missing_mask",
    "colour_unknown",
    "val_unlabelled",
    "bad_split",
    "unknown_option",
]


@pytest.mark.parametrize("kind", KINDS)
def test_broken_dataset_exits_1_naming_the_problem(tmp_path, capsys, kind):
    root, needle, extra = _broken(tmp_path, kind)
    code, out = _run(capsys, root, *extra, html=tmp_path / "page.html")
    assert code == 1, out
    error_lines = [line for line in out.splitlines() if line.startswith("error: ")]
    assert any(needle in line for line in error_lines), out
    assert (tmp_path / "page.html").is_file()


def test_report_counts_exif_and_histogram(tmp_path):
    root = write_folder(tmp_path / "x", {"a": two_region_mask(), "b": two_region_mask()}, image_ext=".jpg")
    exif = Image.Exif()
    exif[0x0112] = 3
    Image.fromarray(blocks_image()).save(root / "images" / "b.jpg", exif=exif)
    report = check_dataset(load_config("folder", [f"data.root={root}"]), workers=2, progress=False)
    assert report.ok
    train = report.splits[0]
    assert train.orientations == {None: 1, 3: 1} and train.sizes == {(64, 48): 2}
    mask = two_region_mask()
    assert train.class_pixels == {0: 2 * int((mask == 0).sum()), 1: 2 * int((mask == 1).sum())}
    assert any("EXIF orientation 3" in p.message and p.where.endswith("b.jpg") for p in report.problems)
