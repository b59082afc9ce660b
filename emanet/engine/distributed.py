"""PyTorch's own distributed engine: torchrun environment, process group, SyncBatchNorm.

`torch.nn.SyncBatchNorm` only runs on accelerators; `CPUSyncBatchNorm` is the same
computation for CPU process groups (gloo), so a CPU run with 2 processes equals one process
on the global batch.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "DistInfo",
    "init_distributed",
    "cleanup_distributed",
    "is_dist",
    "world_size",
    "rank",
    "all_reduce_sum",
    "convert_sync_batchnorm",
    "CPUSyncBatchNorm",
]


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group torchrun describes (WORLD_SIZE > 1); a no-op otherwise."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1 or is_dist():
        return DistInfo(rank(), world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    # CPU tensors (the NaN flag, the confusion matrix) go through gloo even on GPUs.
    backend = "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    timeout = datetime.timedelta(minutes=30)
    store = _attempt_store(size, timeout)
    if store is None:
        dist.init_process_group(backend, timeout=timeout)
    else:
        rank_ = int(os.environ["RANK"])
        dist.init_process_group(backend, store=store, rank=rank_, world_size=size, timeout=timeout)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank)


def _attempt_store(size: int, timeout: datetime.timedelta) -> dist.Store | None:
    """torchrun's store, its keys scoped to this attempt (None: not under torchrun's agent store).

    torchrun (2.13) keeps one store server for all attempts of a job and gives the workers no
    per-attempt prefix: after a restart, a rank could read its peers' addresses from the killed
    attempt (gloo: "connectFullMesh failed ... Connection refused"). The restart count scopes
    them; it is the same on every rank when torchrun restarted all workers of the job.
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    store = dist.TCPStore(host, port, size, is_master=False, timeout=timeout)
    attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)
    return dist.PrefixStore(f"emanet/attempt_{attempt}", store)


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; the gradient of a sum over ranks is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        out = t.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def differentiable_all_reduce(t: torch.Tensor) -> torch.Tensor:
    """Sum over ranks with a gradient (the backward all-reduces the gradients too)."""
    return _AllReduceSum.apply(t)


def cleanup_distributed() -> None:
    if is_dist():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """In-place sum over ranks (no-op without a group); returns `t`."""
    if is_dist() and world_size() > 1:
        dist.all_reduce(t)
    return t


class CPUSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are computed over all ranks (CPU, gloo).

    Same state dict as BatchNorm2d. Statistics are two-pass (mean, then the mean squared
    deviation) over the global batch; `torch.distributed.nn.functional.all_reduce` carries
    the gradient across ranks, as SyncBatchNorm's backward does.

    Shapes:
        (B, C, H, W) -> (B, C, H, W)
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_dist() and world_size() > 1):
            return super().forward(x)
        dims = (0, 2, 3)
        local_count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
        stats = differentiable_all_reduce(torch.cat([x.sum(dims), local_count]))
        count = stats[-1]
        mean = stats[:-1] / count
        centred = x - mean.view(1, -1, 1, 1)
        var = differentiable_all_reduce((centred * centred).sum(dims)) / count
        if self.track_running_stats:
            tracked, running_mean, running_var = self.num_batches_tracked, self.running_mean, self.running_var
            if tracked is None or running_mean is None or running_var is None:
                raise RuntimeError(
                    f"{type(self).__name__} has track_running_stats=True but no running statistics buffers"
                )
            with torch.no_grad():
                tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else 1.0 / float(tracked)
                unbiased = var * (count / (count - 1).clamp_min(1))
                running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
                running_var.mul_(1 - momentum).add_(unbiased.detach(), alpha=momentum)
        out = centred * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if self.affine:
            out = out * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return out


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Synchronised BN for a process group: torch's SyncBatchNorm on accelerators,
    `CPUSyncBatchNorm` on CPU. Returns the model unchanged without a group."""
    if not (is_dist() and world_size() > 1):
        return model
    if device.type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _replace_bn(model)


def _replace_bn(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, CPUSyncBatchNorm):
        new = CPUSyncBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        for p_new, p_old in zip(new.parameters(), module.parameters(), strict=True):
            p_new.requires_grad_(p_old.requires_grad)
        return new
    for name, child in module.named_children():
        setattr(module, name, _replace_bn(child))
    return module
