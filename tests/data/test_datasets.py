"""Every dataset in its real on-disk layout (generated tiny), its class mapping, and every bad input."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from emanet.data import (
    DataError,
    SegmentationDataset,
    build_dataset,
    eval_transforms,
    list_datasets,
    read_mask,
    train_transforms,
    voc_palette,
)
from emanet.data.fake import FAKE_LAYOUTS, write_fake_dataset

NUM_CLASSES = {
    "voc_aug": 21,
    "cityscapes": 19,
    "ade20k": 150,
    "pascal_context": 59,
    "coco_stuff": 171,
    "folder": 3,
}


@pytest.fixture(scope="module")
def fake_roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("layouts")
    return {name: write_fake_dataset(name, base / name) for name in FAKE_LAYOUTS}


def _pairs(ds, i=0):
    """Set of (raw mask value, mapped label) pairs of sample i."""
    raw = read_mask(ds.files[i][1])
    _, label = ds.load(i)
    return dict(zip(raw.ravel().tolist(), label.ravel().tolist(), strict=True))


@pytest.mark.parametrize("name", FAKE_LAYOUTS)
@pytest.mark.parametrize("split", ["train", "val"])
def test_layout_loads(fake_roots, name, split):
    ds = build_dataset(name, fake_roots[name], split)
    assert isinstance(ds, SegmentationDataset)
    assert len(ds) == 3 and ds.num_classes == NUM_CLASSES[name] == len(ds.CLASSES)
    assert len(ds.PALETTE) >= ds.num_classes and ds.ignore_index == 255
    sample = ds[0]
    assert set(sample) == {"image", "label", "name", "orig_size"}
    assert sample["image"].dtype == torch.float32 and sample["image"].shape == (3, 24, 32)
    assert sample["label"].dtype == torch.int64 and sample["label"].shape == (24, 32)
    assert sample["orig_size"] == (24, 32)
    assert sample["name"] == ds.sample_name(0)
    image, label = ds.load(0)
    assert image.dtype == np.uint8 and image.shape == (24, 32, 3)
    assert label.dtype == np.int64
    valid = (label == 255) | ((label >= 0) & (label < ds.num_classes))
    assert valid.all()


def test_voc_identity_mapping_and_split_aliases(fake_roots):
    root = fake_roots["voc_aug"]
    ds = build_dataset("voc_aug", root, "val")
    assert _pairs(ds) == {0: 0, 1: 1, 15: 15, 20: 20, 255: 255}
    assert ds.CLASSES[:3] == ("background", "aeroplane", "bicycle") and ds.CLASSES[15] == "person"
    # trainaug comes from ROOT/train_aug.txt (lines with paths); alias train_aug is the same list
    a = build_dataset("voc_aug", root, "trainaug")
    b = build_dataset("voc_aug", root, "train_aug")
    assert a.files == b.files and len(a) == 3
    assert a.sample_name(0) == "2007_train_000000"
    # a VOCdevkit parent is found
    assert len(build_dataset("voc_aug", root.parent / "voc_aug", "train")) == 3


def test_voc_plain_segmentation_class_fallback(tmp_path):
    root = write_fake_dataset("voc_aug", tmp_path / "voc")
    (root / "SegmentationClassAug").rename(root / "SegmentationClass")
    ds = build_dataset("voc_aug", root, "train")
    assert ds.label_dir.name == "SegmentationClass"
    assert ds[0]["label"].shape == (24, 32)


def test_cityscapes_label_to_train_ids(fake_roots):
    ds = build_dataset("cityscapes", fake_roots["cityscapes"], "train")
    pairs = _pairs(ds)
    assert pairs[26] == 13 and ds.CLASSES[13] == "car"  # car
    assert pairs[7] == 0 and pairs[8] == 1 and pairs[11] == 2 and pairs[33] == 18
    assert pairs[0] == 255 and pairs[1] == 255 and pairs[29] == 255  # unlabeled, ego vehicle, caravan
    assert ds.PALETTE[0] == (128, 64, 128) and ds.PALETTE[13] == (0, 0, 142)
    assert ds.sample_name(0).endswith("_leftImg8bit")


def test_cityscapes_label_train_ids_files(tmp_path):
    root = write_fake_dataset("cityscapes", tmp_path / "cs", num_images=1)
    for p in (root / "gtFine").rglob("*_labelIds.png"):
        Image.fromarray(np.full((24, 32), 13, np.uint8)).save(str(p).replace("_labelIds", "_labelTrainIds"))
        p.unlink()
    ds = build_dataset("cityscapes", root, "val")
    assert ds.label_type == "labelTrainIds"
    assert (ds.load(0)[1] == 13).all()


def test_ade20k_reduce_zero_label(fake_roots):
    for root in (fake_roots["ade20k"], fake_roots["ade20k"] / "ADEChallengeData2016"):
        ds = build_dataset("ade20k", root, "val")
        assert _pairs(ds) == {0: 255, 1: 0, 2: 1, 150: 149}
    assert ds.CLASSES[0] == "wall" and ds.CLASSES[-1] == "flag"


def test_pascal_context_background(fake_roots):
    ds = build_dataset("pascal_context", fake_roots["pascal_context"], "train")
    assert _pairs(ds) == {0: 255, 1: 0, 30: 29, 59: 58}
    assert ds.CLASSES[0] == "aeroplane" and ds.CLASSES[-1] == "wood"
    ds60 = build_dataset("pascal_context", fake_roots["pascal_context"], "train", include_background=True)
    assert ds60.num_classes == 60 and ds60.CLASSES[0] == "background"
    assert _pairs(ds60) == {0: 0, 1: 1, 30: 30, 59: 59}
    assert ds60.PALETTE[:3] == voc_palette(3)  # VOC colours for the VOC classes


def test_coco_stuff_raw_ids_and_train_ids(fake_roots, tmp_path):
    ds = build_dataset("coco_stuff", fake_roots["coco_stuff"], "train")
    assert not ds.train_ids
    # raw id = COCO id - 1; 11 (street sign, unused) -> ignore; 12 (stop sign) -> 11; 91 (banner) -> 80
    assert _pairs(ds) == {0: 0, 10: 10, 11: 255, 12: 11, 91: 80, 181: 170, 255: 255}
    assert ds.CLASSES[11] == "stop sign" and ds.CLASSES[80] == "banner" and ds.CLASSES[170] == "wood"
    root = write_fake_dataset("coco_stuff", tmp_path / "cs", num_images=1, train_ids=True)
    ds = build_dataset("coco_stuff", root, "val2017")
    assert ds.train_ids
    assert _pairs(ds) == {0: 0, 11: 11, 80: 80, 170: 170, 255: 255}


def test_folder_dataset(fake_roots, tmp_path):
    root = fake_roots["folder"]
    ds = build_dataset("folder", root, "train")
    assert ds.CLASSES == ("background", "cat", "dog") and ds.PALETTE[1] == (200, 0, 0)
    assert _pairs(ds) == {0: 0, 1: 1, 2: 2, 255: 255}
    assert len(build_dataset("folder", root, None)) == 6  # every image
    # sub-folder splits, default palette, custom yaml path, jpg images, no masks -> all ignore
    other = tmp_path / "f2"
    (other / "images" / "test").mkdir(parents=True)
    Image.fromarray(np.zeros((5, 7, 3), np.uint8)).save(other / "images" / "test" / "a.jpg")
    (other / "mine.yaml").write_text("classes: [a, b]\nignore_index: 9\n")
    ds = build_dataset("folder", other, "test", classes_yaml=other / "mine.yaml")
    assert ds.ignore_index == 9
    palette = ds.PALETTE
    assert palette == voc_palette(2)
    assert ds.files[0][1] is None and (ds[0]["label"] == 9).all()


def test_transforms_through_dataset_and_seeds(fake_roots):
    ds = build_dataset(
        "voc_aug", fake_roots["voc_aug"], "train", transform=train_transforms(16, [0.5, 1.0, 2.0])
    )
    a, b = ds[(0, 7)], ds[(0, 7)]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    assert a["image"].shape == (3, 16, 16)
    assert torch.equal(ds[1]["image"], ds[(1, 1)]["image"])  # a plain int seeds with the index
    assert any(not torch.equal(a["image"], ds[(0, s)]["image"]) for s in range(8, 14))
    ev = build_dataset("voc_aug", fake_roots["voc_aug"], "val", transform=eval_transforms(pad_mod=8))
    s = ev[0]
    assert s["image"].shape == (3, 25, 33) and s["orig_size"] == (24, 32)
    assert (s["label"][24:] == 255).all() and (s["label"][:, 32:] == 255).all()


def test_registry():
    assert set(list_datasets()) == {*FAKE_LAYOUTS, "synthetic"}
    with pytest.raises(DataError, match="did you mean 'cityscapes'"):
        build_dataset("citiscapes", "/nowhere", "train")


def test_palette():
    pal = voc_palette()
    assert len(pal) == 256 and pal[:3] == [(0, 0, 0), (128, 0, 0), (0, 128, 0)]
    assert pal[255] == (224, 224, 192) and pal[15] == (192, 128, 128)  # person
    assert len(set(pal)) == 256


# ---- layout errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["voc_aug", "cityscapes", "ade20k", "pascal_context", "coco_stuff", "folder"]
)
def test_missing_root_prints_layout(tmp_path, name):
    missing = tmp_path / "nope"
    with pytest.raises(DataError) as e:
        build_dataset(name, missing, "train")
    msg = str(e.value)
    assert str(missing) in msg.splitlines()[0] and "Expected layout" in msg and "ROOT" not in msg


def test_missing_split_file_prints_layout(fake_roots):
    with pytest.raises(DataError) as e:
        build_dataset("voc_aug", fake_roots["voc_aug"], "trainval")
    assert "trainval.txt" in str(e.value) and "JPEGImages/<name>.jpg" in str(e.value)
    with pytest.raises(DataError, match="split='test' is not valid"):
        build_dataset("ade20k", fake_roots["ade20k"], "test")


def test_empty_split_file(tmp_path):
    root = write_fake_dataset("pascal_context", tmp_path / "ctx", num_images=1)
    split = root / "ImageSets" / "SegmentationContext" / "val.txt"
    split.write_text("\n\n")
    with pytest.raises(DataError, match="split file is empty") as e:
        build_dataset("pascal_context", root, "val")
    assert str(split) in str(e.value) and e.value.path == str(split)


def test_folder_yaml_errors(tmp_path):
    root = write_fake_dataset("folder", tmp_path / "f", num_images=1)
    (root / "classes.yaml").unlink()
    with pytest.raises(DataError, match="classes.yaml: class file not found"):
        build_dataset("folder", root, "train")
    for text, problem in [
        ("classes: [a, b\n", "cannot parse YAML"),
        ("classes: []\n", "'classes' must be a non-empty list"),
        ("classes: [a]\npalette: [[1, 2]]\n", "'palette' must list"),
        ("classes: [a, b]\nignore_index: 1\n", "ignore_index=1"),
        ("classes: [a]\ncolours: 3\n", "unknown keys"),
    ]:
        (root / "classes.yaml").write_text(text)
        with pytest.raises(DataError, match=problem) as e:
            build_dataset("folder", root, "train")
        assert "classes.yaml" in str(e.value)


# ---- bad samples --------------------------------------------------------------------------------


@pytest.fixture
def voc_one(tmp_path):
    root = write_fake_dataset("voc_aug", tmp_path / "voc", num_images=2)
    return build_dataset("voc_aug", root, "train")


def _check_error(ds, path, problem):
    with pytest.raises(DataError, match=problem) as e:
        ds[0]
    msg = str(e.value)
    assert str(path) in msg and "\n" not in msg and e.value.path == str(path)
    return msg


def test_pil_truncated_images_not_allowed():
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_truncated_image(voc_one):
    path = voc_one.files[0][0]
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])
    _check_error(voc_one, path, "truncated or corrupt")
    assert voc_one[1]["image"].shape == (3, 24, 32)  # others still load


def test_corrupt_image(voc_one):
    path = voc_one.files[0][0]
    Path(path).write_bytes(b"not an image at all" * 10)
    _check_error(voc_one, path, "cannot decode image")


def test_missing_image_file(voc_one):
    path = voc_one.files[0][0]
    os.unlink(path)
    _check_error(voc_one, path, "image file is missing")


def test_mask_size_differs(voc_one):
    path = voc_one.files[0][1]
    Image.fromarray(np.zeros((20, 32), np.uint8)).save(path)
    msg = _check_error(voc_one, path, "mask is 32x20")
    assert "image is 32x24" in msg


def test_mask_values_out_of_range(voc_one):
    path = voc_one.files[0][1]
    mask = np.zeros((24, 32), np.uint8)
    mask[0, :3] = [21, 100, 255]
    Image.fromarray(mask).save(path)
    msg = _check_error(voc_one, path, "num_classes=21")
    assert "[21, 100]" in msg


def test_ade_mask_values_out_of_range_after_mapping(tmp_path):
    root = write_fake_dataset("ade20k", tmp_path / "ade", num_images=1)
    ds = build_dataset("ade20k", root, "train")
    path = ds.files[0][1]
    mask = np.ones((24, 32), np.uint8)
    mask[0, 0] = 151  # -> 150 after reduce-zero-label: past the 150 classes
    Image.fromarray(mask).save(path)
    _check_error(ds, path, r"values \[150\]")


def test_cityscapes_16bit_mask_out_of_id_range(tmp_path):
    root = write_fake_dataset("cityscapes", tmp_path / "cs", num_images=1)
    ds = build_dataset("cityscapes", root, "train")
    path = ds.files[0][1]
    Image.fromarray(np.full((24, 32), 1000, np.uint16)).save(path)  # 16-bit: ids past the table
    _check_error(ds, path, "outside the dataset's id range")


def test_rgb_mask_rejected_grey_rgb_accepted(voc_one):
    path = voc_one.files[0][1]
    colour = np.zeros((24, 32, 3), np.uint8)
    colour[..., 0] = 128  # VOC colour of class 1
    Image.fromarray(colour).save(path)
    _check_error(voc_one, path, "colour .*index mask is expected")
    grey = np.repeat(np.full((24, 32, 1), 3, np.uint8), 3, axis=2)
    Image.fromarray(grey).save(path)
    assert (voc_one[0]["label"] == 3).all()


def test_truncated_mask(voc_one):
    path = voc_one.files[0][1]
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) - 30])
    _check_error(voc_one, path, "cannot decode mask")
