"""Quantization grids: integer (per-channel or per-group, symmetric or asymmetric) and NF4.

``quantize_dequantize`` snaps a weight onto its grid; ``fake_quant`` does the same in the forward
pass with a straight-through estimator (identity gradient for the weight; LSQ-style gradient for a
learnable scale).
"""

from __future__ import annotations

import functools

import torch

NF4_BLOCK = 64  # bitsandbytes' default block size for 4-bit weights


def round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (x.round() - x).detach()


def _grouped(w: torch.Tensor, group_size: int | None) -> torch.Tensor:
    rows, cols = w.shape
    if group_size is None:
        return w.reshape(rows, 1, cols)
    return w.reshape(rows, cols // group_size, group_size)


def int_qparams(
    w: torch.Tensor, bits: int, group_size: int | None, symmetric: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, zero_point) per row or per group, from the weight's min/max; zero is always on the grid."""
    g = _grouped(w.detach().float(), group_size)
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        scale = g.abs().amax(-1, keepdim=True).clamp(min=1e-8) / qmax
        return scale, torch.zeros_like(scale)
    lo = g.amin(-1, keepdim=True).clamp(max=0)
    hi = g.amax(-1, keepdim=True).clamp(min=0)
    scale = ((hi - lo) / (2**bits - 1)).clamp(min=1e-8)
    zero = (-lo / scale).round()
    return scale, zero


def int_fake_quant(
    w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int, group_size: int | None, symmetric: bool
) -> torch.Tensor:
    """Differentiable quantize -> dequantize (STE for rounding, gradient flows to a learnable scale)."""
    g = _grouped(w, group_size)
    if symmetric:
        qmin, qmax = -(2 ** (bits - 1)) + 1, 2 ** (bits - 1) - 1
    else:
        qmin, qmax = 0, 2**bits - 1
    q = torch.clamp(round_ste(g / scale) + zero, qmin, qmax)
    return ((q - zero) * scale).reshape(w.shape).to(w.dtype)


@functools.lru_cache(maxsize=8)
def nf4_code(device: torch.device | str = "cpu") -> torch.Tensor:
    """The 16 NF4 values, taken from bitsandbytes so the grids agree exactly (cached per device)."""
    from bitsandbytes.functional import get_4bit_type

    return get_4bit_type("nf4", device="cpu").float().to(device)


def nf4_fake_quant(w: torch.Tensor, block: int = NF4_BLOCK) -> torch.Tensor:
    """Blockwise absmax over the flattened weight (as bitsandbytes does), nearest NF4 value, STE."""
    flat = w.reshape(-1, block)
    absmax = flat.detach().abs().amax(-1, keepdim=True).clamp(min=1e-12)
    code = nf4_code(w.device)
    normed = (flat / absmax).detach()
    idx = (normed.unsqueeze(-1) - code).abs().argmin(-1)
    snapped = code[idx] * absmax
    out = flat + (snapped - flat).detach()
    return out.reshape(w.shape).to(w.dtype)


def quantize_dequantize(
    w: torch.Tensor, bits: int, group_size: int | None, symmetric: bool, grid: str = "int"
) -> torch.Tensor:
    """Round-to-nearest onto the grid (no gradient)."""
    with torch.no_grad():
        if grid == "nf4":
            return nf4_fake_quant(w)
        scale, zero = int_qparams(w, bits, group_size, symmetric)
        return int_fake_quant(w, scale, zero, bits, group_size, symmetric)


def per_token_fake_quant(x: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Dynamic symmetric per-token activation fake-quant (last dimension), STE."""
    qmax = 2 ** (bits - 1) - 1
    scale = x.detach().abs().amax(-1, keepdim=True).clamp(min=1e-8) / qmax
    return torch.clamp(round_ste(x / scale), -qmax, qmax) * scale
