"""The EMA unit for inference: the same mathematics as `EMAU`, arranged for the fastest kernels.

`optimize_for_inference` swaps every eval-mode `EMAU` for a `FusedEMAU` once; the unit a reader
finds in `emanet.nn.ema` is what trains and what every device runs otherwise.

- The unit's 1×1 `conv_in` (x = W f + b) is folded into the EM: the E-step logits are
  f^T (W^T mu) + b^T mu and the M-step is W (f z) + b (1^T z), so the projected features x
  (C×N per image, the unit's largest tensor) are never computed: C×C×K extra multiply-adds per
  step instead of C×C×N for the convolution.
- conv_out and its eval-mode BN are folded into one product, with the reconstruction's ReLU as
  that product's post-op.
- Every product is an inner product over contiguous rows, sent to oneDNN on CPU
  (`torch.ops.mkldnn._linear_pointwise`, faster than the default GEMM at these shapes; see
  docs/benchmarks.md) where oneDNN can run the dtype natively: fp32 always, bf16 only on CPUs
  with native bf16 (`emanet.capability`), else `torch.mm`. x is read in both layouts, (N, C)
  and (C, N), as views.
- After the first iteration the bases differ per image, so the loop runs image by image; at
  segmentation sizes each image's products are large enough for that to cost nothing.

No autograd. Under torch.compile the core is one custom op, `torch.ops.emanet.fast_em_attention`.
"""

from __future__ import annotations

from typing import TypeGuard

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..capability import cpu_has_native_bf16
from ..nn.em import ADD_EPS, CLAMP_EPS, normalize_bases
from ..nn.ema import EMAU
from .bn_fold import fold_bn, foldable_bn

__all__ = ["FusedEMAU", "fast_em_attention", "fuse_ema_units"]

_ONEDNN_DTYPES = (torch.float32, torch.bfloat16)


def _onednn_linear_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


_HAS_ONEDNN_LINEAR = _onednn_linear_available()
_linear_pointwise = torch.ops.mkldnn._linear_pointwise if _HAS_ONEDNN_LINEAR else None


def _onednn_runs(dtype: torch.dtype) -> bool:
    """oneDNN builds fp32 inner products everywhere, bf16 ones only on CPUs with native bf16."""
    return dtype == torch.float32 or (dtype == torch.bfloat16 and cpu_has_native_bf16())


def _rows_or_columns(t: torch.Tensor) -> bool:
    """Whether a 2-D tensor is row-major or column-major (a transposed view), no copy needed."""
    return t.is_contiguous() or t.t().is_contiguous()


def _mm_nt(
    a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None, relu: bool = False
) -> torch.Tensor:
    """a @ b^T (+ bias) (then ReLU) for a (M, D) and b (P, D) -> (M, P).

    On CPU with fp32 operands (bf16 where native) this is oneDNN's inner product. `a` must be
    contiguous; `b` may also be the transposed view of a contiguous (D, P) tensor, which oneDNN
    reads as it is, so neither layout of the features is ever copied. Elsewhere `torch.mm`.
    """
    if (
        _linear_pointwise is not None  # _HAS_ONEDNN_LINEAR
        and a.device.type == "cpu"
        and a.dtype in _ONEDNN_DTYPES
        and a.dtype == b.dtype
        and _onednn_runs(a.dtype)
        and a.is_contiguous()
        and _rows_or_columns(b)
        and (bias is None or bias.dtype == a.dtype)
    ):
        return _linear_pointwise(a, b, bias, "relu" if relu else "none", [], "")
    out = torch.mm(a, b.t())
    out = out if bias is None else out + bias
    return out.relu_() if relu else out


def _is_channels_last(x: torch.Tensor) -> bool:
    """Whether the core runs on (N, C) rows: channels_last and not also plain contiguous (the
    fake implementation below must decide the output layouts the same way)."""
    return not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def _l1_denominator(s: torch.Tensor, eps_mode: str) -> torch.Tensor:
    return s + ADD_EPS if eps_mode == "add" else s.clamp_min(CLAMP_EPS)


def _compute_dtype(x: torch.Tensor) -> tuple[torch.dtype, bool]:
    """The dtype of the products (autocast's when it is on) and whether autocast is on."""
    device_type = x.device.type
    if x.dtype == torch.float32 and torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type), True
    return x.dtype, False


@torch.no_grad()
def fast_em_attention(
    x: torch.Tensor,
    bases: torch.Tensor,
    num_iters: int,
    temperature: float = 1.0,
    base_norm: str = "l2",
    eps_mode: str = "add",
    proj_weight: torch.Tensor | None = None,
    proj_bias: torch.Tensor | None = None,
    out_weight: torch.Tensor | None = None,
    out_bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """EM iterations and reconstruction, equal to `em_iterations` followed by X~ = mu z^T
    (and, with `out_weight`, by ReLU and a 1×1 conv).

    Args:
        x: (B, C_in, H, W) features, contiguous or channels_last.
        bases: (1, C, K) or (B, C, K) initial bases mu^(0).
        num_iters: T >= 1.
        temperature, base_norm, eps_mode: as `em_iterations`.
        proj_weight: optional (C, C_in, 1, 1) weight of a 1×1 conv applied to `x` first (the
            EMAU's conv_in); folded into the products instead of computed.
        proj_bias: optional (C,) bias of that conv.
        out_weight: optional (C_out, C, 1, 1) weight of a 1×1 conv applied to ReLU(X~) (the
            EMAU's conv_out), computed here as one more inner product; inference only.
        out_bias: optional (C_out,) bias of that conv.

    Returns:
        z: (B, K, H, W) responsibilities of the last E-step (fp32 under autocast).
        mu: (B, C, K) bases after the last M-step, fp32.
        recon: (B, C, H, W) reconstruction X~ = mu z^T, or (B, C_out, H, W) conv(ReLU(X~))
            with `out_weight`; in the products' dtype and the layout of `x`.
    """
    if num_iters < 1:
        raise ValueError(f"num_iters={num_iters} is not valid; EM needs at least one iteration (>= 1)")
    dtype, autocast = _compute_dtype(x)
    weights = (proj_weight, proj_bias, out_weight, out_bias)
    args = (x, bases, num_iters, temperature, base_norm, eps_mode, *weights)
    if torch.compiler.is_compiling():
        # One opaque op in the compiled graph (torch.compile cannot trace oneDNN's inner
        # product through Inductor's passes); the dtype is fixed here because autocast is not
        # active where Inductor's code later calls it.
        return torch.ops.emanet.fast_em_attention(*args, dtype, autocast)
    return _fast_em_core(*args, dtype, autocast)


@torch.no_grad()
def _fast_em_core(
    x: torch.Tensor,
    bases: torch.Tensor,
    num_iters: int,
    temperature: float,
    base_norm: str,
    eps_mode: str,
    proj_weight: torch.Tensor | None,
    proj_bias: torch.Tensor | None,
    out_weight: torch.Tensor | None,
    out_bias: torch.Tensor | None,
    dtype: torch.dtype,
    autocast: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`fast_em_attention` with the products' dtype given; `autocast` keeps z in fp32."""
    # Products run in `dtype` with autocast off; softmax and normalisations stay in fp32.
    with torch.autocast(x.device.type, enabled=False):
        x = x.to(dtype)
        b, c_in, h, w = x.shape
        n = h * w
        channels_last = _is_channels_last(x)
        # Views only: x_rows[i] is (N, C_in), x_cols[i] is (C_in, N); one of the two is a
        # transposed view, which the products read in place (no copy of x).
        if channels_last:
            x_rows = x.permute(0, 2, 3, 1).reshape(b, n, c_in)  # (B, N, C_in)
            x_cols = x_rows.transpose(1, 2)
        else:
            x_cols = x.reshape(b, c_in, n)  # (B, C_in, N)
            x_rows = x_cols.transpose(1, 2)
        inv_t = 1.0 / temperature
        if proj_weight is not None:
            w_proj = proj_weight.reshape(proj_weight.shape[0], c_in).to(dtype)  # (C, C_in)
            b_proj = proj_bias.float() if proj_bias is not None else None
        if out_weight is not None:
            w_out = out_weight.reshape(out_weight.shape[0], -1).to(dtype).contiguous()  # (C_out, C)
            b_out = out_bias.to(dtype) if out_bias is not None else None
        zs, mus, recons = [], [], []
        for i in range(b):
            mu = bases[i if bases.shape[0] > 1 else 0].float()  # (C, K)
            k = mu.shape[1]
            for _ in range(num_iters):
                mu_t = mu.t().contiguous()  # (K, C)
                if proj_weight is not None:
                    # E-step through conv_in: logits = (W^T mu)^T f + b^T mu.
                    weight = _mm_nt(mu_t.to(dtype), w_proj.t())  # (K, C_in)
                    bias = mu_t @ b_proj if b_proj is not None else None  # (K,)
                else:
                    weight, bias = mu_t.to(dtype), None
                if inv_t != 1.0:
                    weight = weight * inv_t
                    bias = bias * inv_t if bias is not None else None
                # The features are the first operand of whichever product their own rows suit
                # (the faster order, measured): the E-step for channels_last, else the M-step.
                if channels_last:
                    fuse_bias = bias is not None and dtype == torch.float32  # else added in fp32
                    logits = _mm_nt(x_rows[i], weight, bias if fuse_bias else None).float()  # (N, K)
                    if bias is not None and not fuse_bias:
                        logits += bias
                    z = logits.softmax(dim=1)  # (N, K), over the bases
                    s = z.sum(dim=0)  # (K,)
                else:
                    logits = _mm_nt(weight, x_rows[i]).float()  # (K, N)
                    if bias is not None:
                        logits += bias[:, None]
                    z = logits.softmax(dim=0)  # (K, N)
                    s = z.sum(dim=1)  # (K,)
                denom = _l1_denominator(s, eps_mode)
                # L1-normalised over N before the product, in the authors' order (scaling the
                # (C, K) result instead saves a pass over z but rounds differently).
                if channels_last:
                    z_l1 = torch.empty(k, n, dtype=dtype, device=z.device)
                    torch.div(z.t(), denom[:, None], out=z_l1)  # (K, N): divide and transpose, one pass
                    m = _mm_nt(z_l1, x_cols[i]).t()  # (C_in, K)
                else:
                    z_l1 = (z / denom[:, None]).to(dtype)  # (K, N)
                    m = _mm_nt(x_cols[i], z_l1)  # (C_in, K)
                if proj_weight is not None:
                    # M-step through conv_in: W (f z) + b (1^T z); 1^T z_l1 = s / denom exactly.
                    mu = _mm_nt(w_proj, m.t()).float()  # (C, K)
                    if b_proj is not None:
                        mu = mu + b_proj[:, None] * (s / denom)[None, :]
                else:
                    mu = m.float()
                mu = normalize_bases(mu[None], base_norm, eps_mode)[0]
            zc, muc = z.to(dtype), mu.to(dtype).contiguous()
            if channels_last:
                # (N, C) rows: X~ = z mu^T, then conv_out(ReLU(X~)) with its bias fused.
                if out_weight is None:
                    recon = _mm_nt(zc, muc)  # (N, C)
                else:  # the ReLU as the product's post-op
                    recon = _mm_nt(_mm_nt(zc, muc, relu=True), w_out, b_out)  # (N, C_out)
            else:
                # (C, N) rows: X~ = mu z, then conv_out(ReLU(X~)) = W_out ReLU(X~) + b_out.
                if out_weight is None:
                    recon = _mm_nt(muc, zc.t())  # (C, N)
                else:
                    recon = _mm_nt(w_out, _mm_nt(muc, zc.t(), relu=True).t())  # (C_out, N)
                    if b_out is not None:
                        recon += b_out[:, None]
            zs.append(z)
            mus.append(mu)
            recons.append(recon)
        z = torch.stack(zs) if b > 1 else zs[0][None]  # (B, N, K) for channels_last, else (B, K, N)
        z = z.view(b, h, w, k).permute(0, 3, 1, 2) if channels_last else z.view(b, k, h, w)  # (B, K, H, W)
        if not autocast:
            z = z.to(x.dtype)
        mu = torch.stack(mus)
        recon = torch.stack(recons) if b > 1 else recons[0][None]  # no copy for one image
        if channels_last:
            return z, mu, recon.view(b, h, w, -1).permute(0, 3, 1, 2)  # (B, C, H, W), channels_last
        return z, mu, recon.view(b, -1, h, w)


# The fast core as one custom op, for compiled graphs (eager calls `_fast_em_core` directly). The
# schema is spelled out (not inferred from the annotations) so that every torch >= 2.4 reads it.
_fast_em_attention_op = torch.library.custom_op(
    "emanet::fast_em_attention",
    _fast_em_core,
    mutates_args=(),
    schema="(Tensor x, Tensor bases, int num_iters, float temperature, str base_norm, str eps_mode, "
    "Tensor? proj_weight, Tensor? proj_bias, Tensor? out_weight, Tensor? out_bias, ScalarType dtype, "
    "bool autocast) -> (Tensor, Tensor, Tensor)",
)


@_fast_em_attention_op.register_fake
def _(x, bases, num_iters, temperature, base_norm, eps_mode, proj_weight, proj_bias, out_weight, out_bias,
      dtype, autocast):  # fmt: skip
    """Shapes, dtypes and layouts of `_fast_em_core`'s outputs, for tracing."""
    b, _, h, w = x.shape
    c, k = bases.shape[1], bases.shape[2]
    c_out = out_weight.shape[0] if out_weight is not None else c
    channels_last = _is_channels_last(x)
    z_dtype = torch.float32 if autocast else dtype
    layout = torch.channels_last if channels_last else torch.contiguous_format
    z = x.new_empty((b, k, h, w), dtype=z_dtype).contiguous(memory_format=layout)
    mu = x.new_empty((b, c, k), dtype=torch.float32)
    recon = x.new_empty((b, c_out, h, w), dtype=dtype).contiguous(memory_format=layout)
    return z, mu, recon


def _plain_1x1(conv: nn.Module) -> bool:
    return (
        type(conv) is nn.Conv2d
        and conv.kernel_size == (1, 1)
        and conv.groups == 1
        and not conv._forward_hooks
    )


class FusedEMAU(nn.Module):
    """An eval-mode `EMAU` with conv_in folded into the EM products and conv_out + BN folded
    into one product (see the module docstring): same outputs within fp32 rounding.

    Built from a unit whose convs are plain 1×1 convs and whose `bn_out` is an eval-mode
    BatchNorm (or already folded away); `applies_to` says whether a unit qualifies. The EM
    iterations are the unit's `eval_iters`. Buffers are copies: the unit is left as it was.

    Shapes:
        x: (B, C, H, W), contiguous or channels_last -> (B, C, H, W) in the same layout; with
        `return_attention=True` also (B, K, H, W) responsibilities.
    """

    # Buffers, registered in __init__.
    bases: torch.Tensor
    in_weight: torch.Tensor
    in_bias: torch.Tensor | None
    out_weight: torch.Tensor
    out_bias: torch.Tensor | None

    def __init__(self, unit: EMAU) -> None:
        super().__init__()
        if not self.applies_to(unit):
            raise ValueError(
                "FusedEMAU needs an EMAU with plain 1×1 convs and an eval-mode BatchNorm after conv_out"
            )
        self.channels, self.num_bases, self.num_iters = unit.channels, unit.num_bases, unit.eval_iters
        self.temperature, self.base_norm, self.eps_mode = unit.temperature, unit.base_norm, unit.eps_mode
        with torch.no_grad():
            out_weight, out_bias = unit.conv_out.weight, unit.conv_out.bias
            if isinstance(unit.bn_out, _BatchNorm):  # folded in float64, once
                out_weight, out_bias = fold_bn(out_weight, out_bias, unit.bn_out, torch.float64)
            self.register_buffer("bases", unit.bases.detach().clone())
            self.register_buffer("in_weight", unit.conv_in.weight.detach().clone())
            self.register_buffer(
                "in_bias", None if unit.conv_in.bias is None else unit.conv_in.bias.detach().clone()
            )
            self.register_buffer("out_weight", out_weight.detach().clone())
            self.register_buffer("out_bias", None if out_bias is None else out_bias.detach().clone())

    @staticmethod
    def applies_to(unit: nn.Module) -> TypeGuard[EMAU]:
        """Whether `unit` is an EMAU this class can replace."""
        if not isinstance(unit, EMAU) or not (_plain_1x1(unit.conv_in) and _plain_1x1(unit.conv_out)):
            return False
        return type(unit.bn_out) is nn.Identity or foldable_bn(unit.bn_out)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, num_bases={self.num_bases}, num_iters={self.num_iters}"

    def forward(
        self, x: torch.Tensor, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        attention, _, out = fast_em_attention(
            x, self.bases, self.num_iters, self.temperature, self.base_norm, self.eps_mode,
            self.in_weight, self.in_bias, self.out_weight, self.out_bias,
        )  # fmt: skip
        out = F.relu(out + x, inplace=True)  # out: conv_out(ReLU(X~)) with the BN folded in
        return (out, attention) if return_attention else out


def fuse_ema_units(model: nn.Module) -> int:
    """Replace, in place, every EMAU of an eval-mode `model` that `FusedEMAU` applies to.

    Returns:
        The number of units replaced.
    """
    replaced = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if FusedEMAU.applies_to(child):
                setattr(module, name, FusedEMAU(child))
                replaced += 1
    return replaced
