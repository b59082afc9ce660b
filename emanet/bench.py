"""Cost of models and context blocks: parameters, multiply-adds, latency, peak memory.

- Multiply-adds ("GMACs", what the paper calls FLOPs) come from
  `torch.utils.flop_counter.FlopCounterMode` on meta tensors (no memory, no compute);
  FLOPs = 2 × MACs.
- Latency: median, min and max of `repeats` timed calls after `warmup` calls, eval mode,
  inference_mode, batch as given.
- Peak memory: on CUDA `torch.cuda.max_memory_allocated`; on CPU the peak of the bytes held
  by tensors created during one forward (`PeakMemory`, a dispatch mode that follows every
  new storage until it is freed); the inputs and weights are not counted.

Presets: `table1` (docs/method.md §6 Table 1 at 513×513, OS8: ResNet-101 and the context each
head adds — DeepLabV3's ASPP, EMANet(256), EMANet(512), Non-local) and `scaling` (EMA
against Non-local on growing feature maps).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
import weakref
from collections.abc import Callable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

from .capability import cpu_description, cpu_has_native_bf16

__all__ = [
    "PeakMemory",
    "count_params",
    "count_macs",
    "measure_latency",
    "measure_peak_memory",
    "benchmark_model",
    "table1",
    "scaling",
    "machine_info",
    "TABLE1_PAPER",
    "SCALING_SIZES",
]

# Paper Table 1 (VOC val, R101, OS8, 513×513): the head rows are additions to the backbone.
TABLE1_PAPER = {
    "ResNet-101": {"gmacs": 190.6, "memory": "2.603G", "params_m": 42.6},
    "DeepLabV3": {"gmacs": 63.4, "memory": "+66.0M", "params_m": 15.5},
    "EMANet(256)": {"gmacs": 21.1, "memory": "+12.3M", "params_m": 4.87},
    "EMANet(512)": {"gmacs": 43.1, "memory": "+22.1M", "params_m": 10.0},
    "Non-local": {"gmacs": None, "memory": None, "params_m": None},
}
SCALING_SIZES = (33, 65, 97, 129)
MIB = 2**20


class PeakMemory(TorchDispatchMode):
    """Peak bytes of tensor storage created inside the `with` block and still alive.

    Every tensor an operator returns is followed through its storage until the storage is
    freed, so temporaries count for as long as they live, and views or in-place results do
    not count twice. Kernel-internal scratch space (e.g. oneDNN reorders) is not seen.
    """

    def __init__(self) -> None:
        super().__init__()
        self.current = 0
        self.peak = 0
        self._live: dict[int, int] = {}

    def _free(self, key: int) -> None:
        self.current -= self._live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                storage = t.untyped_storage()
                key = storage._cdata
                if key not in self._live:
                    self._live[key] = storage.nbytes()
                    self.current += storage.nbytes()
                    self.peak = max(self.peak, self.current)
                    weakref.finalize(storage, self._free, key)
        return out


def count_params(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def count_macs(fn: Callable, *args) -> int:
    """Multiply-adds of `fn(*args)` (FlopCounterMode FLOPs / 2); use meta tensors for speed."""
    with FlopCounterMode(display=False) as counter:
        fn(*args)
    return counter.get_total_flops() // 2


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency(fn: Callable, *args, repeats: int = 5, warmup: int = 1) -> dict:
    """Median / min / max seconds of `fn(*args)` under inference_mode, after `warmup` calls."""
    device = next((a.device for a in args if isinstance(a, torch.Tensor)), torch.device("cpu"))
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            _sync(device)
            t0 = time.perf_counter()
            fn(*args)
            _sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return {
        "median_ms": statistics.median(times) * 1e3,
        "min_ms": min(times) * 1e3,
        "max_ms": max(times) * 1e3,
    }


def measure_peak_memory(fn: Callable, *args) -> int:
    """Peak bytes allocated by one `fn(*args)` call beyond what existed before it."""
    device = next((a.device for a in args if isinstance(a, torch.Tensor)), torch.device("cpu"))
    with torch.inference_mode():
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            fn(*args)
            torch.cuda.synchronize(device)
            return torch.cuda.max_memory_allocated(device) - base
        with PeakMemory() as tracker:
            fn(*args)
        return tracker.peak


def _cost(
    build: Callable[[], nn.Module],
    shape: tuple[int, ...],
    device: torch.device,
    latency: bool,
    repeats: int,
    warmup: int,
    forward: Callable | None = None,
) -> dict:
    """Params, MACs (meta), peak memory and latency of `forward(module, x)` on x of `shape`."""
    forward = forward or (lambda m, x: m(x))
    with torch.device("meta"):
        meta = build().eval()
        macs = count_macs(forward, meta, torch.empty(shape))
    row = {"params": count_params(meta), "gmacs": macs / 1e9, "gflops": 2 * macs / 1e9}
    module = build().eval().to(device)
    x = torch.randn(shape, device=device)
    row["peak_mib"] = measure_peak_memory(lambda t: forward(module, t), x) / MIB
    if latency:
        row.update(measure_latency(lambda t: forward(module, t), x, repeats=repeats, warmup=warmup))
    return row


def benchmark_model(
    name: str,
    size: int = 513,
    batch: int = 1,
    num_classes: int = 21,
    device: str = "cpu",
    latency: bool = True,
    repeats: int = 5,
    warmup: int = 1,
    precision: str | None = None,
    **options,
) -> dict:
    """Whole-model figures for a registered model, with the backbone and head split out.

    With `precision` ("fp32", "bf16", "fp16") latency and memory are measured on
    `optimize_for_inference(model, precision)`; the counts are always the plain model's.

    Returns:
        {"model", "input", "params", "backbone_params", "head_params", "gmacs",
        "backbone_gmacs", "head_gmacs", "gflops", "peak_mib" [, "median_ms", "min_ms", "max_ms"]}
    """
    from .models import create_model

    dev = torch.device(device)
    shape = (batch, 3, size, size)
    with torch.device("meta"):
        meta = create_model(name, num_classes=num_classes, **options).eval()
        image = torch.empty(shape)
        total = count_macs(meta, image)
        backbone = count_macs(meta.backbone, image)
    row = {
        "model": name,
        "input": list(shape),
        "params": count_params(meta),
        "backbone_params": count_params(meta.backbone),
        "head_params": count_params(meta.decode_head),
        "gmacs": total / 1e9,
        "backbone_gmacs": backbone / 1e9,
        "head_gmacs": (total - backbone) / 1e9,
        "gflops": 2 * total / 1e9,
    }
    del meta
    model: nn.Module = create_model(name, num_classes=num_classes, **options).eval().to(dev)
    if precision is not None:
        from .inference import optimize_for_inference

        model = optimize_for_inference(model, precision)
        row["precision"] = precision
    x = torch.randn(shape, device=dev)
    row["peak_mib"] = measure_peak_memory(model, x) / MIB
    if latency:
        row.update(measure_latency(model, x, repeats=repeats, warmup=warmup))
    return row


def _context_builders(ema_kwargs: dict | None = None) -> dict[str, Callable[[], nn.Module]]:
    """The modules each Table 1 head adds on top of the backbone's (B, 2048, h, w) output."""
    from .models.heads import ASPP
    from .nn import EMAU, NonLocal2d
    from .nn.conv_bn_act import ConvBNReLU

    ema_kwargs = ema_kwargs or {}

    def fc0_then(block: Callable[[int], nn.Module], channels: int) -> Callable[[], nn.Module]:
        # The authors' count: fc0 (3×3 2048→C) plus the unit; fc1 and the classifier are shared.
        return lambda: nn.Sequential(ConvBNReLU(2048, channels, 3), block(channels))

    return {
        "DeepLabV3": lambda: ASPP(2048, 256, rates=(12, 24, 36)),
        "EMANet(256)": fc0_then(lambda c: EMAU(c, **ema_kwargs), 256),
        "EMANet(512)": fc0_then(lambda c: EMAU(c, **ema_kwargs), 512),
        "Non-local": fc0_then(lambda c: NonLocal2d(c), 512),
    }


def table1(
    size: int = 513, device: str = "cpu", latency: bool = True, repeats: int = 3, warmup: int = 1
) -> list[dict]:
    """docs/method.md §6 Table 1 at `size`×`size`, output stride 8, batch 1.

    Row "ResNet-101" is the dilated backbone; the other rows are what each head adds on top
    of it (as in the paper), with the paper's figures alongside.
    """
    from .models.resnet import ResNet

    dev = torch.device(device)
    feat = (size - 1) // 8 + 1
    rows = []
    backbone = _cost(lambda: ResNet(101, output_stride=8), (1, 3, size, size), dev, latency, repeats, warmup)
    rows.append({"method": "ResNet-101", "input": [1, 3, size, size], **backbone})
    for method, build in _context_builders().items():
        row = _cost(build, (1, 2048, feat, feat), dev, latency, repeats, warmup)
        rows.append({"method": method, "input": [1, 2048, feat, feat], **row})
    for row in rows:
        row["paper"] = TABLE1_PAPER[row["method"]]
    return rows


def scaling(
    sizes=SCALING_SIZES,
    channels: int = 512,
    scope: str = "unit",
    device: str = "cpu",
    repeats: int = 3,
    warmup: int = 1,
) -> list[dict]:
    """EMA against Non-local on (1, C, s, s) feature maps for each s in `sizes`.

    Args:
        scope: "unit" compares EMAU(C) with NonLocal2d(C) on C-channel features; "head"
            compares the whole decode heads (EMAHead / NonLocalHead) on 2048-channel features.
    """
    from .models.heads import EMAHead, NonLocalHead
    from .nn import EMAU, NonLocal2d

    if scope not in ("unit", "head"):
        raise ValueError(f"scope={scope!r} is not valid; choose 'unit' or 'head'")
    dev = torch.device(device)
    if scope == "unit":
        builders = {"EMA": lambda: EMAU(channels), "Non-local": lambda: NonLocal2d(channels)}
        in_ch = channels
    else:
        builders = {
            "EMA": lambda: EMAHead(2048, 21, ema_channels=channels),
            "Non-local": lambda: NonLocalHead(2048, 21, nl_channels=channels),
        }
        in_ch = 2048
    rows = []
    for s in sizes:
        row = {"size": s, "pixels": s * s, "scope": scope, "channels": channels}
        for name, build in builders.items():
            cost = _cost(build, (1, in_ch, s, s), dev, True, repeats, warmup)
            for key, value in cost.items():
                row[f"{name}_{key}"] = value
        row["time_ratio"] = row["Non-local_median_ms"] / row["EMA_median_ms"]
        row["memory_ratio"] = row["Non-local_peak_mib"] / max(row["EMA_peak_mib"], 1e-9)
        rows.append(row)
    return rows


def machine_info(device: str = "cpu") -> dict:
    info = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
        "device": device,
    }
    info["cpu"] = cpu_description()
    info["isa"] = torch.backends.cpu.get_cpu_capability()
    info["native_bf16"] = cpu_has_native_bf16()
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    info["malloc"] = os.environ.get("GLIBC_TUNABLES") or os.environ.get("LD_PRELOAD") or "default"
    return info
