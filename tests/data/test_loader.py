"""Infinite sampler (sharding, resume), bad-sample skipping through workers, collate."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from emanet.data import (
    DataError,
    InfiniteSampler,
    SkipBadSamples,
    build_dataset,
    build_loader,
    collate_skip,
    sample_seed,
    train_transforms,
)
from emanet.data.fake import write_fake_dataset


def _take(sampler, k):
    return list(itertools.islice(iter(sampler), k))


def test_sampler_epochs_are_permutations_and_deterministic():
    s = InfiniteSampler(10, seed=3)
    out = _take(s, 30)
    for e in range(3):
        assert sorted(i for i, _ in out[10 * e : 10 * (e + 1)]) == list(range(10))
    assert [i for i, _ in out[:10]] != [i for i, _ in out[10:20]]  # reshuffled per epoch
    assert out == _take(InfiniteSampler(10, seed=3), 30)
    assert out != _take(InfiniteSampler(10, seed=4), 30)
    assert [i for i, _ in _take(InfiniteSampler(4, seed=0, shuffle=False), 8)] == [0, 1, 2, 3] * 2
    seeds = [sd for _, sd in out]
    assert len(set(seeds)) == 30  # every position has its own transform seed
    assert seeds[5] == sample_seed(3, 5)


@pytest.mark.parametrize("n,ws", [(10, 2), (10, 3), (7, 4)])
def test_shards_disjoint_and_equal_to_single_process(n, ws):
    full = _take(InfiniteSampler(n, seed=1), 3 * n * ws)
    shards = [_take(InfiniteSampler(n, seed=1, rank=r, world_size=ws), 3 * n) for r in range(ws)]
    # interleaving the shards gives back the single-process stream: same global batches for any ws
    merged = [shards[g % ws][g // ws] for g in range(3 * n * ws)]
    assert merged == full
    # within an epoch the shards are disjoint and together cover the dataset
    for e in range(2):
        owned = [{g for g in range(e * n, (e + 1) * n) if g % ws == r} for r in range(ws)]
        picked = [[full[g][0] for g in sorted(o)] for o in owned]
        flat = [i for p in picked for i in p]
        assert sorted(flat) == list(range(n))


@pytest.mark.parametrize("ws", [1, 2])
def test_resume_from_start_equals_uninterrupted_tail(ws):
    n, start = 9, 14  # start = iterations done x global batch (here 7 x 2)
    for r in range(ws):
        whole = _take(InfiniteSampler(n, seed=5, rank=r, world_size=ws), 40)
        resumed = _take(InfiniteSampler(n, seed=5, rank=r, world_size=ws, start=start), 20)
        assert resumed == whole[start // ws : start // ws + 20]


def test_sampler_rejects_bad_args():
    with pytest.raises(DataError, match="dataset is empty"):
        InfiniteSampler(0)
    with pytest.raises(ValueError):
        InfiniteSampler(5, rank=2, world_size=2)


@pytest.fixture(scope="module")
def voc_with_bad(tmp_path_factory):
    root = write_fake_dataset("voc_aug", tmp_path_factory.mktemp("voc") / "voc", num_images=4)
    ds = build_dataset("voc_aug", root, "train", transform=train_transforms(16, [0.75, 1.0]))
    bad = ds.files[1][0]
    Path(bad).write_bytes(Path(bad).read_bytes()[:200])
    return ds, bad


def test_skip_bad_samples_wrapper(voc_with_bad):
    ds, bad = voc_with_bad
    with pytest.raises(DataError):
        ds[1]
    wrapped = SkipBadSamples(ds)
    assert len(wrapped) == 4 and wrapped.num_classes == 21 and wrapped.CLASSES == ds.CLASSES
    out = wrapped[(1, 123)]
    assert out["skipped"][0] == bad and bad in out["skipped"][1]
    assert wrapped.skipped == [out["skipped"]]
    assert "image" in wrapped[0]


def test_collate_skip():
    a = {
        "image": torch.zeros(3, 4, 5),
        "label": torch.zeros(4, 5, dtype=torch.long),
        "name": "a",
        "orig_size": (4, 5),
    }
    b = dict(a, name="b")
    out = collate_skip([a, {"skipped": ("x.jpg", "x.jpg: bad")}, b])
    assert out["image"].shape == (2, 3, 4, 5) and out["label"].shape == (2, 4, 5)
    assert out["name"] == ["a", "b"] and out["orig_size"] == [(4, 5), (4, 5)]
    assert out["skipped"] == [("x.jpg", "x.jpg: bad")]
    empty = collate_skip([{"skipped": ("y", "m")}])
    assert empty["image"] is None and empty["label"] is None and empty["skipped"] == [("y", "m")]
    with pytest.raises(DataError, match="different sizes"):
        collate_skip([a, dict(a, image=torch.zeros(3, 5, 5))])


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_reports_skips_from_workers_and_is_worker_independent(voc_with_bad, workers):
    ds, bad = voc_with_bad
    loader = build_loader(ds, 2, InfiniteSampler(len(ds), seed=0), num_workers=workers, skip_bad_samples=True)
    batches = list(itertools.islice(iter(loader), 4))  # 8 samples: two epochs of 4
    skipped = [s for b in batches for s in b["skipped"]]
    assert [p for p, _ in skipped] == [bad, bad]
    assert sum(len(b["name"]) for b in batches) == 6
    ref = list(
        itertools.islice(iter(build_loader(ds, 2, InfiniteSampler(4, seed=0), skip_bad_samples=True)), 4)
    )
    for x, y in zip(batches, ref, strict=True):
        assert x["name"] == y["name"]
        assert (x["image"] is None and y["image"] is None) or torch.equal(x["image"], y["image"])


def test_eval_loader_sequential(voc_with_bad):
    ds, _ = voc_with_bad
    loader = build_loader(ds, 1, skip_bad_samples=True)
    names = [n for b in loader for n in b["name"]]
    assert len(names) == 3 and names[0] == ds.sample_name(0)
