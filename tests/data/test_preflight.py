"""Bad data stops before training with one line: preflight, loader workers, skip_bad_samples, eval."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from folder_helpers import two_region_mask, write_folder

from emanet.data import DataError, InfiniteSampler, build_dataset, build_loader
from emanet.data.preflight import preflight, unlabelled_split_message
from emanet.engine.config import load_config
from emanet.engine.metrics import ConfusionMatrix

# With loader workers, torch takes ~5 s per worker to shut down after a worker error: full tier.
WORKERS = [0, pytest.param(2, marks=pytest.mark.slow)]


def _cfg(root, *overrides):
    return load_config("folder", [f"data.root={root}", *overrides])


def test_preflight_passes_a_clean_dataset(tmp_path):
    root = write_folder(tmp_path / "ok", {"a": two_region_mask(), "b": two_region_mask()})
    preflight(_cfg(root))
    preflight(load_config("demo", ["data.options.length=4"]))  # the synthetic data passes too


def test_preflight_refuses_0_255_masks_with_the_label_map_fix(tmp_path):
    root = write_folder(tmp_path / "bin", {"a": two_region_mask(value=255)})
    with pytest.raises(DataError) as e:
        preflight(_cfg(root))
    msg = str(e.value)
    assert "\n" not in msg and "data.options.label_map={255: 1}" in msg and "'object'" in msg
    assert str(root) in msg and "data.train_split" in msg
    preflight(_cfg(root, "data.options.label_map={255: 1}"))  # the fix works


def test_preflight_mistyped_val_split(tmp_path):
    root = write_folder(tmp_path / "v", {"a": two_region_mask()})
    with pytest.raises(DataError, match="vall.txt: split list for split='vall' not found"):
        preflight(_cfg(root, "data.val_split=vall"))


def test_preflight_val_without_labelled_pixel(tmp_path):
    root = write_folder(tmp_path / "n", {"a": two_region_mask(), "b": np.full((48, 64), 255, np.uint8)})
    (root / "val.txt").write_text("b\n")
    with pytest.raises(DataError, match="data.val_split.*hold no labelled pixel.*mIoU would be 0.00"):
        preflight(_cfg(root))


def test_preflight_values_outside_classes_name_the_file(tmp_path):
    root = write_folder(tmp_path / "o", {"a": two_region_mask(value=7)})
    with pytest.raises(DataError, match=r"masks/a\.png: mask has class values \[7\]"):
        preflight(_cfg(root))


def test_unlabelled_split_message():
    cm = ConfusionMatrix(2)
    cm.update(torch.zeros(4, 4, dtype=torch.int64), torch.full((4, 4), 255))
    result = cm.compute(["bg", "obj"])
    assert result["num_pixels"] == 0
    msg = unlabelled_split_message({**result, "num_images": 1}, "val")
    assert msg is not None and "split 'val' has no labelled pixel" in msg and "0.00" in msg
    cm.update(torch.zeros(4, 4, dtype=torch.int64), torch.zeros(4, 4, dtype=torch.int64))
    assert unlabelled_split_message(cm.compute(), "val") is None


def _corrupt(root, name):
    (root / "images" / f"{name}.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")


@pytest.mark.parametrize("num_workers", WORKERS)
def test_worker_error_is_the_same_one_line(tmp_path, num_workers):
    root = write_folder(tmp_path / "w", {"a": two_region_mask(), "b": two_region_mask()})
    _corrupt(root, "b")
    ds = build_dataset("folder", root, "train")
    with pytest.raises(DataError) as direct:
        ds[1]
    with pytest.raises(DataError) as through_loader:
        for _ in build_loader(ds, batch_size=1, num_workers=num_workers):
            pass
    assert str(through_loader.value) == str(direct.value)
    assert "\n" not in str(through_loader.value) and "b.png: cannot decode image" in str(direct.value)


@pytest.mark.parametrize("num_workers", WORKERS)
def test_skip_bad_samples_stops_when_nothing_is_readable(tmp_path, num_workers):
    root = write_folder(tmp_path / "s", {n: two_region_mask() for n in "abc"})
    for n in "abc":
        _corrupt(root, n)
    ds = build_dataset("folder", root, "train")
    loader = build_loader(
        ds, batch_size=1, sampler=InfiniteSampler(len(ds)), num_workers=num_workers, skip_bad_samples=True
    )
    with pytest.raises(DataError) as e:
        for _ in itertools.islice(loader, 300):  # an endless stream: must stop by itself
            pass
    msg = str(e.value)
    assert "\n" not in msg and "no sample of the dataset could be read: all 3 failed" in msg


@pytest.mark.parametrize("num_workers", WORKERS)
def test_skip_bad_samples_keeps_going_with_one_good_sample(tmp_path, num_workers):
    root = write_folder(tmp_path / "g", {n: two_region_mask() for n in "abc"})
    _corrupt(root, "a")
    _corrupt(root, "b")
    ds = build_dataset("folder", root, "train")
    loader = build_loader(
        ds, batch_size=1, sampler=InfiniteSampler(len(ds)), num_workers=num_workers, skip_bad_samples=True
    )
    batches = list(itertools.islice(loader, 30))
    assert sum(b["image"] is not None for b in batches) >= 5
    assert {p.rsplit("/", 1)[-1] for b in batches for p, _ in b["skipped"]} == {"a.png", "b.png"}
