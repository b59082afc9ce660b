"""The moving average over the global batch in a real 2-process gloo group (CPU)."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from emanet import EMAU

# The slow tier: `make test` runs it, `make test-fast` (-m "not slow") does not.
pytestmark = pytest.mark.slow


def _make_unit():
    torch.manual_seed(0)
    return EMAU(16, num_bases=8).train()


def _batch(n):
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 16, 5, 6, generator=g)


def _worker(rank, world_size, init_file, sizes, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        unit = _make_unit()
        x = _batch(sum(sizes))
        start = sum(sizes[:rank])
        for _ in range(2):  # two steps: the second starts from the synchronised bases
            unit(x[start : start + sizes[rank]])
        torch.save(unit.bases, os.path.join(out_dir, f"bases{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("sizes", [(2, 2), (3, 1)])
def test_two_process_bases_equal_single_process_on_concatenated_batch(tmp_path, sizes):
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), sizes, str(tmp_path)), nprocs=2, join=True)
    b0 = torch.load(tmp_path / "bases0.pt", weights_only=True)
    b1 = torch.load(tmp_path / "bases1.pt", weights_only=True)
    assert torch.equal(b0, b1)

    single = _make_unit()
    x = _batch(sum(sizes))
    for _ in range(2):
        single(x)
    torch.testing.assert_close(b0, single.bases, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(b0, _make_unit().bases)  # the bases did move
