"""Real PASCAL VOC images and VOC-palette masks from Debian's labelme-examples package.

Three VOC 2011 photos with masks drawn in labelme: index PNGs (mode P, VOC palette, 255 =
ignore) and the same labels as .npy (-1 = ignore). `make test` installs the package (see the
Makefile's `labelme-examples` target); without it these tests fail and say how to install it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from emanet.data import build_dataset, build_loader, eval_transforms
from emanet.data.check import check_dataset
from emanet.data.voc import VOC_CLASSES
from emanet.engine.config import load_config
from emanet.engine.evaluate import EvalSettings, evaluate

SOURCE = Path("/usr/share/doc/labelme-examples/examples/semantic_segmentation/data_dataset_voc")
NAMES = ["2011_000003", "2011_000006", "2011_000025"]


@pytest.fixture(scope="module")
def source() -> Path:
    if not (SOURCE / "SegmentationClassPNG").is_dir():
        pytest.fail(
            f"{SOURCE} is missing: install Debian's labelme-examples package (`make labelme-examples`, "
            "or `apt-get install labelme-examples` as root)"
        )
    return SOURCE


def _truth(source: Path, name: str) -> np.ndarray:
    """(H, W) int64 labels from the package's .npy, ignore (-1) as 255."""
    labels = np.load(source / "SegmentationClass" / f"{name}.npy").astype(np.int64)
    return np.where(labels < 0, 255, labels)


@pytest.fixture(scope="module")
def voc_root(source, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("labelme") / "VOC2012"
    shutil.copytree(source / "JPEGImages", root / "JPEGImages")
    shutil.copytree(source / "SegmentationClassPNG", root / "SegmentationClass")
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(NAMES) + "\n")
    return root


def test_voc_loader_reads_the_real_masks(source, voc_root):
    ds = build_dataset("voc_aug", voc_root, "val")
    assert len(ds) == 3
    for i, name in enumerate(NAMES):
        image, label = ds.load(i)
        truth = _truth(source, name)
        assert image.shape == (*truth.shape, 3) and image.dtype == np.uint8
        np.testing.assert_array_equal(label, truth)
    assert set(np.unique(ds.load(0)[1]).tolist()) == {0, 5, 15, 255}  # bottle, person, boundary


def test_voc_palette_colour_masks_in_a_folder_dataset(source, tmp_path):
    root = tmp_path / "colour"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    names = ", ".join(f"'{c}'" for c in VOC_CLASSES)
    (root / "classes.yaml").write_text(f"classes: [{names}]\n")  # default palette: the VOC colours
    for name in NAMES:
        shutil.copy(source / "JPEGImages" / f"{name}.jpg", root / "images")
        Image.open(source / "SegmentationClassPNG" / f"{name}.png").convert("RGB").save(
            root / "masks" / f"{name}.png"
        )
    ds = build_dataset("folder", root, None)
    for i, name in enumerate(NAMES):
        assert ds.sample_name(i) == name
        np.testing.assert_array_equal(ds.load(i)[1], _truth(source, name))
    cfg = load_config("folder", [f"data.root={root}", "data.train_split=null", "data.val_split=null"])
    report = check_dataset(cfg, workers=2, progress=False)
    assert report.ok, [p.line() for p in report.problems]
    assert any("colour masks" in p.message for p in report.problems)


class _AllBackground(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(x.shape[0], 21, *x.shape[-2:])
        logits[:, 0] = 1.0
        return logits


def test_evaluation_on_real_images(source, voc_root):
    ds = build_dataset("voc_aug", voc_root, "val", transform=eval_transforms(pad_mod=None))
    settings = EvalSettings(num_classes=21, class_names=tuple(VOC_CLASSES), progress=False)
    result = evaluate(_AllBackground(), build_loader(ds, batch_size=1), settings, torch.device("cpu"))
    truth = np.concatenate([_truth(source, n).ravel() for n in NAMES])
    labelled = truth[truth != 255]
    assert result["num_images"] == 3 and result["num_pixels"] == labelled.size
    assert result["pixel_acc"] == pytest.approx(float((labelled == 0).mean()))
    present = set(np.unique(labelled).tolist())
    assert {i for i, v in enumerate(result["per_class_iou"]) if v is not None} == present
    assert result["per_class_iou"][0] == pytest.approx(float((labelled == 0).mean()))
