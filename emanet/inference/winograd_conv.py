"""3×3 convolutions by Winograd's minimal filtering F(4×4, 3×3): fp32 CPU inference.

Each 6×6 input tile gives a 4×4 output tile with 36 multiplies per channel pair instead of 144
(Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016):

    Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A

computed here as three dense products: the input transform (Bᵀ ⊗ Bᵀ) over every tile and
channel, 36 oneDNN inner products (tiles × C_in) @ (C_in × C_out) on weights transformed and
packed once, and the output transform (Aᵀ ⊗ Aᵀ). A dilated conv ("same" padding = dilation d)
is the same on the d×d interleaved sub-grids of the input, which the tile gather reads in place.

Worth it where the products dominate the transforms' memory traffic: many channels, little
padding waste. Measured alone against the packed direct conv, 2 threads, 65×65
(docs/benchmarks.md): the EMANet head's 2048->512 conv 175 -> 79 ms, 512->512 dilation 2
40.5 -> 23.1 ms, 256->256 dilation 2 10.1 -> 8.9 ms; slower at 128->128 and below, so
`applies_to` asks for C_in·C_out >= 256·256. fp32 rounding: relative error ~3–6e-6 per conv
against float64, against ~1e-6 for the direct conv.
"""

from __future__ import annotations

import threading
from typing import TypeGuard

import torch
from torch import nn

from .packed_conv import PackedConv2d

__all__ = [
    "WinogradConv2d",
    "release_scratch",
    "transform_weight",
    "MIN_CHANNEL_PRODUCT",
    "MAX_PADDING_WASTE",
]

_MKLDNN = torch.ops.mkldnn

# F(4, 3) with interpolation points 0, ±1, ±2 and ∞ (Lavin & Gray, §4.2).
_BT = ((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0),
       (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1))  # fmt: skip
_G = ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
      (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1))  # fmt: skip
_AT = ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1))
_BT64, _G64, _AT64 = (torch.tensor(m, dtype=torch.float64) for m in (_BT, _G, _AT))
# Both 1-D transforms of a tile at once, as one matrix on its 36 (row-major) values.
_INPUT_TRANSFORM = torch.kron(_BT64, _BT64).float()  # (36, 36)
_OUTPUT_TRANSFORM = torch.kron(_AT64, _AT64).float()  # (16, 36)

MIN_CHANNEL_PRODUCT = 256 * 256  # C_in·C_out below which the direct conv was faster here
MAX_PADDING_WASTE = 1.3  # tiled output area / real output area above which it was not

# Reused scratch buffers, per thread: the tiles of a large conv are 85 MB (the head's), which
# glibc maps fresh (and page-faults) on every allocation; reusing them halved the head's time.
# They grow to the largest call's size (~210 MB for EMANet-101 at 513×513, ~1.5 GB at
# 1024×2048) and stay allocated until `release_scratch` is called on that thread.
_scratch = threading.local()
_ALWAYS_MAPPED_BYTES = 32 << 20  # glibc's largest mmap threshold (64-bit)


def release_scratch() -> None:
    """Free this thread's Winograd scratch buffers (they are made again at the next call)."""
    _scratch.__dict__.clear()


def _buffer(name: str, numel: int) -> torch.Tensor:
    buf = getattr(_scratch, name, None)
    if buf is None or buf.numel() < numel:
        # A normal tensor even when first made under inference_mode: an inference tensor could
        # not be written by a later call under plain no_grad.
        with torch.inference_mode(False):
            buf = torch.empty(numel, dtype=torch.float32, device="cpu")
        setattr(_scratch, name, buf)
    return buf[:numel]


def _tiles_per_side(size: int, dilation: int) -> int:
    rows_per_subgrid = -(-size // dilation)  # ceil(size / d)
    return (rows_per_subgrid + 3) // 4


def transform_weight(weight: torch.Tensor) -> torch.Tensor:
    """G g Gᵀ for every (C_out, C_in) pair: (C_out, C_in, 3, 3) -> (36, C_out, C_in), fp32."""
    u = torch.einsum("au,oiuv,bv->aboi", _G64, weight.detach().double().cpu(), _G64)
    return u.reshape(36, weight.shape[0], weight.shape[1]).float()


class WinogradConv2d(PackedConv2d):
    """A 3×3, stride-1 conv with padding = dilation, by Winograd F(4×4, 3×3) on channels_last
    fp32 input; the packed direct conv (`PackedConv2d`) where tiling would waste too much of
    the work (a large dilation on a small map) or the input is not eligible.

    Shapes:
        (B, C_in, H, W) channels_last -> (B, C_out, H, W) channels_last
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__(conv)
        self._packed_winograd: tuple | None = None  # (weight key, 36 packed (C_out, C_in) weights)

    @staticmethod
    def applies_to(conv: nn.Module) -> TypeGuard[nn.Conv2d]:
        return (
            PackedConv2d.applies_to(conv)
            and conv.kernel_size == (3, 3)
            and conv.stride == (1, 1)
            and conv.groups == 1
            and conv.dilation[0] == conv.dilation[1]
            and tuple(conv.padding) == tuple(conv.dilation)
            and conv.in_channels * conv.out_channels >= MIN_CHANNEL_PRODUCT
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._takes_fast_path(x):
            return self.conv(x)
        d = self.conv.dilation[0]
        b, c_in, h, w = x.shape
        th, tw = _tiles_per_side(h, d), _tiles_per_side(w, d)
        if (4 * d * th) * (4 * d * tw) > MAX_PADDING_WASTE * h * w:
            return self._packed_direct(x)
        tiles = b * d * d * th * tw
        c_out = self.conv.out_channels
        weights = self._packed_weight(
            lambda wt: [_MKLDNN._reorder_linear_weight(u, tiles) for u in transform_weight(wt)],
            slot="_packed_winograd",
        )

        # Zero-padded input (B, Hp, Wp, C_in): d rows/columns of padding before, enough after
        # for whole tiles. Only the borders are zeroed, the buffer being reused.
        hp, wp = d * (4 * th + 2), d * (4 * tw + 2)
        padded = _buffer("padded", b * hp * wp * c_in).view(b, hp, wp, c_in)
        padded[:, :d].zero_()
        padded[:, d + h :].zero_()
        padded[:, d : d + h, :d].zero_()
        padded[:, d : d + h, d + w :].zero_()
        padded[:, d : d + h, d : d + w].copy_(x.permute(0, 2, 3, 1))
        # Tile (i, j) of sub-grid (p, q) reads padded[p + d·(4i + u), q + d·(4j + v)], u, v < 6:
        # overlapping windows, gathered once into (36, tiles, C_in).
        s = padded.stride()
        windows = padded.as_strided(
            (6, 6, b, d, d, th, tw, c_in),
            (d * s[1], d * s[2], s[0], s[1], s[2], 4 * d * s[1], 4 * d * s[2], 1),
        )
        gathered = _buffer("gathered", 36 * tiles * c_in).view(36, tiles * c_in)
        gathered.view(6, 6, b, d, d, th, tw, c_in).copy_(windows)
        # The transforms as oneDNN inner products (about twice the default GEMM's speed at these
        # shapes) where their output is allocated from the heap; above glibc's largest mmap
        # threshold a fresh output is mapped and page-faulted on every call, so into a buffer.
        if gathered.numel() * gathered.element_size() < _ALWAYS_MAPPED_BYTES:
            transformed = _MKLDNN._linear_pointwise(_INPUT_TRANSFORM, gathered.t(), None, "none", [], "")
        else:
            transformed = _buffer("transformed", gathered.numel()).view(36, tiles * c_in)
            torch.mm(_INPUT_TRANSFORM, gathered, out=transformed)
        transformed = transformed.view(36, tiles, c_in)
        products = torch.stack(
            [_MKLDNN._linear_pointwise(transformed[k], weights[k], None, "none", [], "") for k in range(36)]
        )  # (36, tiles, C_out)
        out_tiles = _MKLDNN._linear_pointwise(
            _OUTPUT_TRANSFORM, products.view(36, tiles * c_out).t(), None, "none", [], ""
        )  # (16, tiles·C_out)
        # (u, v, b, p, q, i, j, C_out) -> row 4d·i + d·u + p, column 4d·j + d·v + q; then crop.
        full = out_tiles.view(4, 4, b, d, d, th, tw, c_out).permute(2, 5, 0, 3, 6, 1, 4, 7)
        full = full.reshape(b, 4 * d * th, 4 * d * tw, c_out)[:, :h, :w]
        out = torch.empty(b, h, w, c_out, dtype=torch.float32, device="cpu")
        if self.conv.bias is not None:
            torch.add(full, self.conv.bias, out=out)
        else:
            out.copy_(full)
        return out.permute(0, 3, 1, 2)  # channels_last
