"""What the running machine can do, probed once: native bf16 on the CPU, oneDNN, CUDA.

Every precision default and every fast path asks here instead of assuming an instruction set.
A CPU without native bf16 (x86 without AVX-512 BF16 / AMX, many ARM cores) runs bf16 convs and
matmuls through slow emulation, and oneDNN cannot build bf16 inner products there at all, so
`amp: auto` means fp32 on such a CPU and bf16 where it is native.

`EMANET_CPU_BF16=0|1` overrides the bf16 probe (tests and CI use it to run the fallback on a CPU
that has bf16, and the bf16 path where the probe is wrong).
"""

from __future__ import annotations

import functools
import os
import platform
import re
import warnings
from pathlib import Path

import torch

__all__ = [
    "AMP_CHOICES",
    "cpu_has_native_bf16",
    "onednn_available",
    "resolve_amp",
    "amp_dtype",
    "cpu_description",
    "describe",
]

AMP_CHOICES = ("auto", "none", "bf16", "fp16")
_ENV_BF16 = "EMANET_CPU_BF16"


def onednn_available() -> bool:
    """Whether this torch build has oneDNN (mkldnn) for CPU kernels."""
    return bool(torch.backends.mkldnn.is_available())


@functools.cache
def _probe_cpu_bf16() -> bool:
    # oneDNN's own check: AVX-512 BF16 / AMX on x86, BF16 extensions on ARM.
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if not onednn_available() or check is None:
        return False
    try:
        return bool(check())
    except RuntimeError:
        return False


def cpu_has_native_bf16() -> bool:
    """Whether bf16 products run natively on this CPU (else they are emulated, or refused by
    oneDNN's inner product). `EMANET_CPU_BF16=0|1` overrides the probe."""
    forced = os.environ.get(_ENV_BF16, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if forced:
        raise ValueError(f"{_ENV_BF16}={forced!r} is not valid; use 0 or 1 (or unset it to probe the CPU)")
    return _probe_cpu_bf16()


def resolve_amp(amp: str, device: torch.device | str) -> str:
    """The autocast mode to run: "auto" becomes bf16 where the device runs it natively (CUDA
    with bf16, CPUs with native bf16), fp16 on older CUDA GPUs, and "none" (fp32) elsewhere.

    An explicit "bf16" on a CPU without native bf16 is kept (it computes correctly, slowly)
    with a one-line warning; fp16 on a CPU likewise.
    """
    if amp not in AMP_CHOICES:
        raise ValueError(f"amp={amp!r} is not valid; choose one of {', '.join(AMP_CHOICES)}")
    device_type = torch.device(device).type
    if device_type == "cuda":
        if amp == "auto":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return amp
    if amp == "auto":
        return "bf16" if device_type == "cpu" and cpu_has_native_bf16() else "none"
    if device_type == "cpu" and amp == "bf16" and not cpu_has_native_bf16():
        _warn_once(
            "bf16 was asked for, but this CPU has no native bf16 (it is emulated: correct, but "
            "often 10x slower than fp32); use amp/precision 'auto' or fp32 for speed"
        )
    elif device_type == "cpu" and amp == "fp16":
        _warn_once("fp16 on a CPU is emulated on most CPUs and slow; use 'auto' (bf16 or fp32) instead")
    return amp


def amp_dtype(amp: str) -> torch.dtype | None:
    """The autocast dtype of a resolved mode ("none" -> None)."""
    return {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


@functools.cache
def _warn_once(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=3)


@functools.cache
def cpu_description() -> str:
    """CPU model and the SIMD flags that decide speed, e.g. "AMD EPYC (avx2 fma)"."""
    model, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        text = cpuinfo.read_text(errors="replace")
        found = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
        model = found.group(1).strip() if found else model
        found = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", text, re.MULTILINE)
        flags = set(found.group(1).split()) if found else set()
    shown = [
        f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "asimd", "bf16", "sve") if f in flags
    ]
    return f"{model} ({' '.join(shown) or 'no SIMD flags read'})"


def describe() -> str:
    """One line to print beside every benchmark figure: CPU, ISA level torch uses, bf16,
    threads, torch version, CUDA device if any."""
    isa = torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu") else "?"
    parts = [
        f"cpu: {cpu_description()}",
        f"torch ISA: {isa}",
        f"native bf16: {'yes' if cpu_has_native_bf16() else 'no'}",
        f"threads: {torch.get_num_threads()}",
        f"torch {torch.__version__}",
    ]
    if torch.cuda.is_available():
        parts.append(f"cuda: {torch.cuda.get_device_name(0)}")
    return "; ".join(parts)
