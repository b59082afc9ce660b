"""Sampling and batching: a resumable infinite sampler, bad-sample skipping, the collate function.

The sampler yields `(index, sample_seed)`; the dataset seeds each sample's transform with
`sample_seed`, so the data a run sees depends only on (seed, global sample position): not on the
number of workers, not on the world size, and not on whether the run was resumed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from .errors import DataError

__all__ = ["InfiniteSampler", "SkipBadSamples", "collate_skip", "build_loader", "sample_seed"]


def sample_seed(seed: int, position: int) -> int:
    """The transform seed of the sample at global position `position` of a run seeded `seed`."""
    return int(np.random.SeedSequence([int(seed), int(position)]).generate_state(1, dtype=np.uint32)[0])


class InfiniteSampler(torch.utils.data.Sampler):
    """Endless stream of `(index, sample_seed)` for training by iterations.

    The global stream concatenates epochs; epoch e is `default_rng(seed + e).permutation(n)` (or
    0..n-1 without shuffle). Global position g = e * n + j. Rank r takes the positions
    g ≡ r (mod world_size) (the interleaving DistributedSampler uses), so a step's global batch is
    the same set of samples for any world size. Epochs are not padded: the stream never ends, so
    every rank gets the same count, and within an epoch the ranks' shards are disjoint.

    Args:
        num_samples: dataset length n.
        seed: run seed.
        shuffle: permute each epoch.
        rank, world_size: this process's shard.
        start: first global position to yield (samples already consumed by all ranks together,
            i.e. iterations done × global batch), for a bit-identical resume. Rank r starts at the
            first position >= start that is ≡ r (mod world_size).
    """

    def __init__(
        self,
        num_samples: int,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        start: int = 0,
    ):
        if num_samples < 1:
            raise DataError(
                f"the dataset is empty (num_samples={num_samples}); check data.root and data.split"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} must be in 0..world_size-1 (world_size={world_size})")
        if start < 0:
            raise ValueError(f"start={start} must be >= 0")
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.start = int(start)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """(n,) int64 dataset indices in the order of epoch `epoch`."""
        if not self.shuffle:
            return np.arange(self.num_samples)
        return np.random.default_rng(self.seed + epoch).permutation(self.num_samples)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        n, ws = self.num_samples, self.world_size
        g = self.start + (self.rank - self.start) % ws  # first own position >= start
        epoch, order = -1, None
        while True:
            e, j = divmod(g, n)
            if order is None or e != epoch:
                epoch, order = e, self.epoch_order(e)
            yield int(order[j]), sample_seed(self.seed, g)
            g += ws


class SkipBadSamples(torch.utils.data.Dataset):
    """Wrap a dataset so a `DataError` sample becomes `{"skipped": (path, message)}` instead of a crash.

    `collate_skip` drops those entries from the batch and returns them under "skipped", so the
    training loop (in the main process, whatever the number of workers) can report every skipped
    file. `skipped` lists the ones met in this process. Other attributes pass to the dataset.

    When every sample of the dataset has failed in this process and none has been read, a whole
    pass found nothing readable: a `DataError` stops the run (the training stream is endless and
    would otherwise skip forever). With loader workers each worker counts on its own, so it stops
    once one worker has met every sample (later with more workers, but it does stop).
    """

    def __init__(self, dataset):
        self.dataset = dataset
        self.skipped: list[tuple[str, str]] = []
        self._failed: set[int] = set()
        self._any_read = False

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        index = int(key[0] if isinstance(key, tuple) else key)
        try:
            sample = self.dataset[key]
        except DataError as e:
            path = e.path
            if path is None:
                files = getattr(self.dataset, "files", None)
                path = str(files[index][0]) if files else f"sample {index}"
            entry = (path, str(e))
            self.skipped.append(entry)
            self._failed.add(index % max(len(self), 1))
            if not self._any_read and len(self._failed) >= len(self):
                raise DataError(
                    f"no sample of the dataset could be read: all {len(self)} failed with "
                    f"data.skip_bad_samples=true (first: {self.skipped[0][1]}); fix the files or check "
                    f"data.root and the split",
                    self.skipped[0][0],
                ) from None
            return {"skipped": entry}
        self._any_read = True
        return sample

    def __getattr__(self, name):
        if name == "dataset":  # not set yet (e.g. while unpickling): avoid infinite recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)


def collate_skip(batch: Sequence[dict]) -> dict:
    """Batch sample dicts, dropping skipped ones.

    Returns:
        {"image": (B, 3, H, W) float32, "label": (B, H, W) int64 (both None if every sample of the
        batch was skipped), "name": [B str], "orig_size": [B (H, W)], "skipped": [(path, message)]},
        plus any other sample keys (stacked if tensors, else listed).
    """
    skipped = [s["skipped"] for s in batch if s is not None and "skipped" in s]
    good = [s for s in batch if s is not None and "skipped" not in s]
    out: dict = {"image": None, "label": None, "name": [], "orig_size": [], "skipped": skipped}
    if not good:
        return out
    for key in good[0]:
        values = [s[key] for s in good]
        if isinstance(values[0], torch.Tensor):
            shapes = {tuple(v.shape) for v in values}
            if len(shapes) > 1:
                raise DataError(
                    f"cannot batch samples of different sizes {sorted(shapes)} (key {key!r}, names "
                    f"{[s.get('name') for s in good]}); use batch size 1 or a crop for evaluation"
                )
            out[key] = torch.stack(values)
        else:
            out[key] = values
    return out


def build_loader(
    dataset,
    batch_size: int,
    sampler=None,
    num_workers: int = 0,
    skip_bad_samples: bool = False,
    pin_memory: bool = False,
    drop_last: bool = False,
) -> torch.utils.data.DataLoader:
    """A DataLoader with `collate_skip`.

    Args:
        dataset: a SegmentationDataset (or anything indexable by `(index, seed)` / int).
        batch_size: samples per batch on this process.
        sampler: e.g. `InfiniteSampler` for training; None: 0..len-1 in order (evaluation).
        num_workers: loader processes.
        skip_bad_samples: wrap in `SkipBadSamples` (bad files are reported in batch["skipped"]).
        pin_memory, drop_last: as for DataLoader.
    """
    if skip_bad_samples and not isinstance(dataset, SkipBadSamples):
        dataset = SkipBadSamples(dataset)
    if sampler is None:
        sampler = range(len(dataset))
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_skip,
        pin_memory=pin_memory,
        drop_last=drop_last,
        persistent_workers=num_workers > 0,
    )
