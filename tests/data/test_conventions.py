"""Folder datasets read right: mask conventions, EXIF orientation, 16-bit images, formats, names."""

from __future__ import annotations

import numpy as np
import pytest
from folder_helpers import blocks_image, two_region_mask, write_folder
from PIL import Image

from emanet.data import DataError, build_dataset, read_image, voc_palette
from emanet.data.base import IMAGE_EXTS, read_split
from emanet.data.masks import convention_hints
from emanet.engine.config import load_config


def test_label_map_turns_0_255_masks_into_classes(tmp_path):
    mask = two_region_mask(value=255)
    root = write_folder(tmp_path / "bin", {"a": mask})
    plain = build_dataset("folder", root, "train")
    assert set(np.unique(plain.load(0)[1]).tolist()) == {0, 255}  # the pitfall: object = ignore
    ds = build_dataset("folder", root, "train", label_map={255: 1})
    _, label = ds.load(0)
    np.testing.assert_array_equal(label, (mask == 255).astype(np.int64))
    ds = build_dataset("folder", root, "train", label_map={"255": "1"})  # YAML/CLI strings
    np.testing.assert_array_equal(ds.load(0)[1], (mask == 255).astype(np.int64))


@pytest.mark.parametrize(
    ("label_map", "needle"),
    [({255: 7}, "neither a class id 0..1"), ({"x": 1}, "not an integer pair"), ([1], "non-empty mapping")],
)
def test_label_map_bad(tmp_path, label_map, needle):
    root = write_folder(tmp_path / "b", {"a": two_region_mask()})
    with pytest.raises(DataError, match=needle) as e:
        build_dataset("folder", root, "train", label_map=label_map)
    assert "\n" not in str(e.value)


def test_reduce_zero_label(tmp_path):
    mask = two_region_mask(value=2, background=1)
    mask[0, 0] = 0
    root = write_folder(tmp_path / "r", {"a": mask})
    ds = build_dataset("folder", root, "train", reduce_zero_label=True)
    _, label = ds.load(0)
    assert label[0, 0] == 255 and label[1, 0] == 1 and label[-1, -1] == 0
    with pytest.raises(DataError, match="values \\[2\\]"):  # without it: 2 >= num_classes
        build_dataset("folder", root, "train").load(0)
    with pytest.raises(DataError, match="use one"):
        build_dataset("folder", root, "train", reduce_zero_label=True, label_map={1: 0})


def test_colour_masks_mapped_through_palette(tmp_path):
    ids = two_region_mask(value=2, background=1)
    ids[-1, -1] = 255
    palette = np.array(voc_palette(256), dtype=np.uint8)
    root = write_folder(tmp_path / "c", {"a": palette[ids]}, classes=("bg", "cat", "dog"))
    _, label = build_dataset("folder", root, "train").load(0)
    np.testing.assert_array_equal(label, ids.astype(np.int64))  # VOC colours; (224,224,192) = ignore
    bad = palette[ids].copy()
    bad[0, 0] = (1, 2, 3)
    root = write_folder(tmp_path / "c2", {"a": bad}, classes=("bg", "cat", "dog"))
    with pytest.raises(DataError, match=r"a\.png: colour mask has colours \[\(1, 2, 3\)\]"):
        build_dataset("folder", root, "train").load(0)


def test_colour_masks_with_a_custom_palette(tmp_path):
    colours = [(10, 20, 30), (200, 0, 0)]
    ids = two_region_mask()
    rgb = np.array(colours, dtype=np.uint8)[ids]
    yaml = "palette: [[10, 20, 30], [200, 0, 0]]\n"
    root = write_folder(tmp_path / "p", {"a": rgb}, extra_yaml=yaml)
    np.testing.assert_array_equal(build_dataset("folder", root, "train").load(0)[1], ids)


def test_convention_hints():
    names = ["background", "object", "x", "y"]
    binary = convention_hints({0: 90, 255: 10}, 2, 255, names[:2])
    assert len(binary) == 1 and "label_map={255: 1}" in binary[0]
    scaled = convention_hints({0: 5, 85: 5, 170: 5, 255: 5}, 4, 255, names)
    assert len(scaled) == 1 and "label_map={85: 1, 170: 2, 255: 3}" in scaled[0]
    off_by_one = convention_hints({0: 5, 1: 5, 2: 5, 3: 5, 4: 5}, 4, 255, names)
    assert len(off_by_one) == 1 and "reduce_zero_label=true" in off_by_one[0]
    jpeg = convention_hints({v: 1 for v in range(0, 40)}, 4, 255, names)
    assert "JPEG" in jpeg[0]
    assert convention_hints({0: 5, 1: 5, 255: 1}, 2, 255, names[:2]) == []


# EXIF orientation k: how the stored pixels become the displayed ones (EXIF 2.3, tag 0x0112).
_DISPLAY = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),  # rotate 90° clockwise to display
    7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}
_STORE = {k: f for k, f in _DISPLAY.items()}
_STORE[6], _STORE[8] = _DISPLAY[8], _DISPLAY[6]  # the others are their own inverse


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_mask_drawn_on_displayed_image(tmp_path, orientation):
    shown = blocks_image(48, 80, seed=3)
    mask = two_region_mask(48, 80)
    shown[mask == 1] = (250, 10, 10)  # the object, drawn red where the mask says so
    root = write_folder(tmp_path / "e", {"a": mask}, image_ext=".jpg")
    stored = np.ascontiguousarray(_STORE[orientation](shown))
    np.testing.assert_array_equal(_DISPLAY[orientation](stored), shown)  # the test's own tables agree
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(root / "images" / "a.jpg", quality=95, exif=exif)
    image, label = build_dataset("folder", root, "train").load(0)
    assert image.shape == (48, 80, 3)
    np.testing.assert_array_equal(label, mask)
    assert np.abs(image.astype(int) - shown.astype(int)).mean() < 6  # JPEG noise only
    red = image[label == 1].mean(0)
    assert red[0] > 200 and red[1] < 60 and red[2] < 60


def test_16bit_image_scaled_not_clipped(tmp_path):
    ramp = (np.arange(64, dtype=np.uint16)[None].repeat(8, 0) * 1000).astype(np.uint16)  # 0..63000
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")
    image = read_image(path)
    assert image.shape == (8, 64, 3) and image.dtype == np.uint8
    expected = np.round(ramp.astype(np.float64) * 255 / 65535).astype(np.uint8)
    np.testing.assert_array_equal(image[..., 0], expected)
    assert len(np.unique(image)) == 64  # every level distinct: nothing clipped to 255


@pytest.mark.parametrize("ext", [".webp", ".tif", ".tiff", ".bmp", ".gif", ".png", ".jpeg"])
def test_every_pillow_format_is_an_image(tmp_path, ext):
    assert ext in IMAGE_EXTS
    root = write_folder(tmp_path / "f", {"a": two_region_mask()}, image_ext=ext)
    ds = build_dataset("folder", root, None)
    assert len(ds) == 1 and ds.load(0)[0].shape == (48, 64, 3)


def test_same_name_two_extensions_is_an_error(tmp_path):
    root = write_folder(tmp_path / "d", {"a": two_region_mask()}, image_ext=".png")
    Image.fromarray(blocks_image()).save(root / "images" / "a.jpg")
    with pytest.raises(DataError, match=r"images: a\.jpg and a\.png have the same name 'a'") as e:
        build_dataset("folder", root, "train")
    assert "\n" not in str(e.value)


def test_split_names_with_spaces(tmp_path):
    root = write_folder(
        tmp_path / "s", {"cat 01": two_region_mask(), "b": two_region_mask()}, splits={"train": ["cat 01"]}
    )
    (root / "val.txt").write_text("cat 01.png\n  b  \n# comment\n")
    assert [ds.sample_name(0) for ds in [build_dataset("folder", root, "train")]] == ["cat 01"]
    assert read_split(root / "val.txt") == ["cat 01", "b"]
    (root / "pairs.txt").write_text("/JPEGImages/y.jpg /Seg/y.png\n/photos/my photo.jpg\n")
    assert read_split(root / "pairs.txt") == ["y", "my photo"]  # DeepLab pair; a path with a space


def test_unknown_dataset_option_is_one_line(tmp_path):
    root = write_folder(tmp_path / "u", {"a": two_region_mask()})
    with pytest.raises(DataError) as e:
        build_dataset("folder", root, "train", size=128)
    msg = str(e.value)
    assert "\n" not in msg and "'folder'" in msg and "'size'" in msg
    assert "classes_yaml, label_map, reduce_zero_label" in msg


def test_recipe_options_do_not_leak_into_another_dataset(tmp_path):
    root = write_folder(tmp_path / "l", {"a": two_region_mask()})
    cfg = load_config("demo", ["data.name=folder", f"data.root={root}"])
    assert cfg.data.options == {}
    build_dataset(cfg.data.name, cfg.data.root, "train", **cfg.data.options)
    cfg = load_config("demo", ["data.name=folder", "data.options.label_map={255: 1}"])
    assert cfg.data.options == {"label_map": {255: 1}}
    assert load_config("demo", ["data.options.size=64"]).data.options == {"size": 64}
