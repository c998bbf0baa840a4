"""Quantization grids: integer (per-channel or per-group, symmetric or asymmetric) and NF4.

``quantize_dequantize`` snaps a weight onto its grid; ``fake_quant`` does the same in the forward
pass with a straight-through estimator (identity gradient for the weight; LSQ-style gradient for a
learnable scale).
"""

from __future__ import annotations

import functools
from typing import Any

import torch

NF4_BLOCK = 64  # bitsandbytes' default block size for 4-bit weights
#: written next to a model whose weights lie on an integer grid: ``<module>.scales``/``<module>.zeros``
#: (rows x groups) and the grid's settings as metadata
GRID_FILE = "quantization_grid.safetensors"
GRID_FORMAT = "hf_lite weight grid: W = (q - zero) * scale; input column c uses group c // group_size"


def round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (x.round() - x).detach()


def _grouped(w: torch.Tensor, group_size: int | None) -> torch.Tensor:
    rows, cols = w.shape
    if group_size is None:
        return w.reshape(rows, 1, cols)
    return w.reshape(rows, cols // group_size, group_size)


def minmax_grid(
    w: torch.Tensor, bits: int, symmetric: bool, shrink: float = 1.0, float_zero: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, zero) per row of ``w`` (rows x group) from its range, times ``shrink``: the one integer grid
    of QAT, PTQ, RTN and GPTQ.

    Symmetric: zero 0. Asymmetric: the range is widened to include 0 and the zero point is an integer,
    so 0.0 is always on the grid (pruned weights stay exact). ``float_zero`` (asymmetric only) spans
    exactly [min, max] of the row, GGUF Q4_1's grid, with a float zero point.
    """
    if float_zero:
        lo, hi = w.amin(1) * shrink, w.amax(1) * shrink
        scale = ((hi - lo) / (2**bits - 1)).clamp(min=1e-8)
        return scale, -lo / scale
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        scale = (w.abs().amax(1) * shrink).clamp(min=1e-8) / qmax
        return scale, torch.zeros_like(scale)
    lo = w.amin(1).clamp(max=0) * shrink
    hi = w.amax(1).clamp(min=0) * shrink
    scale = ((hi - lo) / (2**bits - 1)).clamp(min=1e-8)
    return scale, (-lo / scale).round()


def int_qparams(
    w: torch.Tensor, bits: int, group_size: int | None, symmetric: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, zero_point) per row or per group (shaped rows x groups x 1), by :func:`minmax_grid`."""
    g = _grouped(w.detach().float(), group_size)
    scale, zero = minmax_grid(g.reshape(-1, g.shape[-1]), bits, symmetric)
    return scale.reshape(*g.shape[:2], 1), zero.reshape(*g.shape[:2], 1)


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


def save_grid(
    folder: str, scales: dict[str, torch.Tensor], zeros: dict[str, torch.Tensor], settings: dict[str, Any]
) -> None:
    """Write the grid file: per module (named as in the saved model) its scales and zero points."""
    import json
    import os

    from safetensors.torch import save_file

    tensors = {}
    for name in scales:
        tensors[f"{name}.scales"] = scales[name].detach().float().cpu().contiguous()
        tensors[f"{name}.zeros"] = zeros[name].detach().float().cpu().contiguous()
    metadata = {"format": GRID_FORMAT, **{k: v if isinstance(v, str) else json.dumps(v) for k, v in settings.items()}}
    save_file(tensors, os.path.join(folder, GRID_FILE), metadata=metadata)


def load_grid(folder: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, Any]] | None:
    """(scales, zeros, settings) from a folder's grid file, or None when it has none."""
    import json
    import os

    from safetensors import safe_open

    path = os.path.join(folder, GRID_FILE)
    if not os.path.isfile(path):
        return None
    scales, zeros = {}, {}
    with safe_open(path, "pt") as f:
        meta = f.metadata() or {}
        for key in f.keys():
            name, kind = key.rsplit(".", 1)
            (scales if kind == "scales" else zeros)[name] = f.get_tensor(key)
    settings = {}
    for k, v in meta.items():
        if k == "format":
            continue
        try:
            settings[k] = json.loads(v)
        except json.JSONDecodeError:
            settings[k] = v  # plain strings: method, observer, zero_point
    return scales, zeros, settings
