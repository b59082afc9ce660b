"""Assertions shared by the engine tests: two training states are the same, bit for bit."""

from __future__ import annotations

import torch


def assert_states_equal(a: dict, b: dict) -> None:
    """Two model state dicts hold the same keys and bit-identical tensors."""
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def assert_optimizer_states_equal(a: torch.optim.Optimizer, b: torch.optim.Optimizer) -> None:
    """Every per-parameter buffer (SGD: momentum; AdamW: both moments and the step) is identical."""
    sa, sb = a.state_dict()["state"], b.state_dict()["state"]
    assert sa.keys() == sb.keys() and sa
    for k in sa:
        assert sa[k].keys() == sb[k].keys(), k
        for name in sa[k]:
            assert torch.equal(torch.as_tensor(sa[k][name]), torch.as_tensor(sb[k][name])), (k, name)
