"""One-shot compression of a single Linear weight, given statistics of its calibration inputs.

Pure functions on tensors (no modules, no hooks), so each is tested on its own:

- :func:`magnitude_mask` - keep the largest |W| (per layer, or N:M).
- :func:`wanda_mask` - Wanda (Sun et al. 2023): score |W_ij| * ||X_j||_2, pruned per output row.
- :func:`sparsegpt_` - SparseGPT (Frantar & Alistarh 2023): prune column by column and correct the
  not-yet-visited columns with the inverse Hessian of the layer's inputs (H = 2 X^T X / n).
- :func:`gptq_` - GPTQ (Frantar et al. 2022): the same error feedback, rounding onto an int grid.
- :func:`rtn` - round-to-nearest onto the same grid (the baseline GPTQ must beat).

Weights are ``(out_features, in_features)``; every function works in float32 and returns new tensors.
"""

from __future__ import annotations

import torch

from ..pruning.masks import nm_mask, prune_lowest
from ..quantization.grids import minmax_grid


# -- pruning masks ---------------------------------------------------------------------------------
def _row_mask(scores: torch.Tensor, sparsity: float, nm: tuple[int, int] | None) -> torch.Tensor:
    """Prune the lowest scores of every row (exactly ``round(sparsity * cols)`` per row) or N:M groups."""
    if nm is not None:
        return nm_mask(scores, *nm)
    return prune_lowest(scores, sparsity, per_row=True)


def magnitude_mask(weight: torch.Tensor, sparsity: float, nm: tuple[int, int] | None = None) -> torch.Tensor:
    """The naive baseline: keep the largest |W| over the whole layer (or per N:M group)."""
    scores = weight.detach().float().abs()
    if nm is not None:
        return nm_mask(scores, *nm)
    return prune_lowest(scores, sparsity)


def wanda_mask(
    weight: torch.Tensor, input_sq_norms: torch.Tensor, sparsity: float, nm: tuple[int, int] | None = None
) -> torch.Tensor:
    """Wanda: |W_ij| * ||X_j||, compared within each output row (the paper's best grouping)."""
    scores = weight.detach().float().abs() * input_sq_norms.float().clamp(min=0).sqrt().unsqueeze(0)
    return _row_mask(scores, sparsity, nm)


# -- inverse Hessian shared by SparseGPT and GPTQ -------------------------------------------------------
def _prepare(weight: torch.Tensor, hessian: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float copies; dead inputs (never active in calibration) get weight 0 and a unit diagonal."""
    w = weight.detach().float().clone()
    h = hessian.detach().float().clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    return w, h


def _upper_inverse_cholesky(h: torch.Tensor, damp: float) -> torch.Tensor:
    """Upper Cholesky factor of (H + damp * mean(diag H) * I)^-1; damping grows until H is positive definite."""
    eye = torch.eye(h.shape[0], dtype=h.dtype, device=h.device)
    mean_diag = torch.diag(h).mean()
    for attempt in range(6):
        try:
            lower = torch.linalg.cholesky(h + (damp * 10**attempt) * mean_diag * eye)
            inv = torch.cholesky_inverse(lower)
            return torch.linalg.cholesky(inv, upper=True)
        except torch.linalg.LinAlgError:
            continue
    raise RuntimeError("the calibration Hessian stays singular even with 1e5x damping; use more calibration samples")


def sparsegpt_(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    sparsity: float,
    nm: tuple[int, int] | None = None,
    block_size: int = 128,
    damp: float = 0.01,
    *,
    mask_block: int | None = None,
    per_row: bool = False,
    rule: str = "exact",
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SparseGPT: (pruned weight, mask). Every ``mask_block`` columns (default ``block_size``) the mask is
    chosen from the already-updated weights, keeping the largest w^2 / [H^-1]_jj^2 (over the whole
    sub-block, or ``per_row``; ``rule`` as in :func:`prune_lowest`), then each column's pruning error is
    pushed onto the later columns. ``dtype``: precision of the Hessian inverse and the updates."""
    w, h = _prepare(weight, hessian)
    w, h = w.to(dtype), h.to(dtype)
    hinv = _upper_inverse_cholesky(h, damp)
    rows, cols = w.shape
    mask = torch.ones_like(w)
    step = mask_block or block_size
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        w1 = w[:, i1:i2].clone()
        hinv1 = hinv[i1:i2, i1:i2]
        d1 = torch.diag(hinv1).unsqueeze(0)
        err1 = torch.zeros_like(w1)
        mask1 = torch.ones_like(w1)
        for i in range(i2 - i1):
            if nm is None and i % step == 0:  # choose the mask from the already-updated weights
                j = min(i + step, i2 - i1)
                mask1[:, i:j] = prune_lowest(w1[:, i:j] ** 2 / d1[:, i:j] ** 2, sparsity, per_row, rule)
            if nm is not None and i % nm[1] == 0:  # the N:M group, likewise
                group = w1[:, i : i + nm[1]] ** 2 / d1[:, i : i + nm[1]] ** 2
                drop = torch.topk(group, nm[1] - nm[0], dim=1, largest=False).indices
                mask1[:, i : i + nm[1]].scatter_(1, drop, 0.0)
            col = w1[:, i]
            q = col * mask1[:, i]
            e = (col - q) / hinv1[i, i]
            w1[:, i:] -= e.unsqueeze(1) @ hinv1[i, i:].unsqueeze(0)
            w1[:, i] = q
            err1[:, i] = e
        w[:, i1:i2] = w1
        mask[:, i1:i2] = mask1
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    return (w * mask).float(), mask.float()


# -- integer grids ----------------------------------------------------------------------------------
def grid_params(
    w: torch.Tensor, bits: int, symmetric: bool, observer: str = "minmax", float_zero: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, zero) per row of ``w`` (rows x group).

    With an integer zero point (the default) 0.0 is always on the grid, so pruned weights stay exact.
    ``float_zero`` (asymmetric only) spans exactly [min, max] of the row, GGUF Q4_1's grid: finer, but
    0.0 is in general not on it.

    ``minmax`` covers the row's full range. ``mse`` also tries ranges shrunk by up to 20% and keeps,
    per row, the one with the smallest sum |w - q(w)|^2.4 (clipping a few outliers buys resolution
    for the rest; the search of the GPTQ reference code, re-implemented).
    """
    if observer == "mse":
        return _mse_grid(w, bits, symmetric, float_zero)
    return minmax_grid(w, bits, symmetric, float_zero=float_zero)


def _mse_grid(
    w: torch.Tensor, bits: int, symmetric: bool, float_zero: bool = False, steps: int = 20, max_shrink: float = 0.2
):
    best_scale, best_zero = minmax_grid(w, bits, symmetric, float_zero=float_zero)
    best_err = (to_grid(w, best_scale, best_zero, bits, symmetric) - w).abs().pow(2.4).sum(1)
    for i in range(1, steps + 1):
        scale, zero = minmax_grid(w, bits, symmetric, 1.0 - max_shrink * i / steps, float_zero)
        err = (to_grid(w, scale, zero, bits, symmetric) - w).abs().pow(2.4).sum(1)
        better = err < best_err
        best_scale = torch.where(better, scale, best_scale)
        best_zero = torch.where(better, zero, best_zero)
        best_err = torch.where(better, err, best_err)
    return best_scale, best_zero


def to_grid(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int, symmetric: bool) -> torch.Tensor:
    """Round ``w`` (rows,) or (rows, k) onto the grid given per-row ``scale``/``zero``; returns dequantized values."""
    if w.dim() == 2:
        scale, zero = scale.unsqueeze(1), zero.unsqueeze(1)
    if symmetric:
        qmin, qmax = -(2 ** (bits - 1)) + 1, 2 ** (bits - 1) - 1
    else:
        qmin, qmax = 0, 2**bits - 1
    q = torch.clamp(torch.round(w / scale + zero), qmin, qmax)
    return (q - zero) * scale


def _groups(cols: int, group_size: int | None) -> list[tuple[int, int]]:
    g = group_size or cols
    return [(s, s + g) for s in range(0, cols, g)]


def rtn(
    weight: torch.Tensor,
    bits: int,
    group_size: int | None,
    symmetric: bool,
    observer: str = "minmax",
    float_zero: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Round-to-nearest: (quantized weight, scales, zeros), scales/zeros shaped (rows, groups)."""
    w = weight.detach().float()
    out = torch.empty_like(w)
    scales, zeros = [], []
    for a, b in _groups(w.shape[1], group_size):
        s, z = grid_params(w[:, a:b], bits, symmetric, observer, float_zero)
        out[:, a:b] = to_grid(w[:, a:b], s, z, bits, symmetric)
        scales.append(s)
        zeros.append(z)
    return out, torch.stack(scales, 1), torch.stack(zeros, 1)


def gptq_(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    bits: int,
    group_size: int | None,
    symmetric: bool,
    *,
    act_order: bool = False,
    damp: float = 0.01,
    block_size: int = 128,
    observer: str = "minmax",
    float_zero: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """GPTQ: (quantized weight, scales, zeros). Zeros already in the weight (a pruned model) stay zero.

    Group parameters come from the weights as updated when the group is reached. With ``act_order``
    columns are visited by decreasing Hessian diagonal and the groups are fixed up front on the
    original column order ("static groups"), so the saved weights keep a plain per-group grid.
    """
    w, h = _prepare(weight, hessian)
    keep = (weight.detach() != 0).float() if bool((weight == 0).any()) else None
    rows, cols = w.shape
    groups = _groups(cols, group_size)
    gsize = group_size or cols
    scales = torch.zeros(rows, len(groups))
    zeros = torch.zeros(rows, len(groups))
    if act_order:
        for gi, (a, b) in enumerate(groups):
            scales[:, gi], zeros[:, gi] = grid_params(w[:, a:b], bits, symmetric, observer, float_zero)
        perm = torch.argsort(torch.diag(h), descending=True)
    else:
        perm = torch.arange(cols)
    w, h = w[:, perm], h[perm][:, perm]
    keep_p = keep[:, perm] if keep is not None else None
    hinv = _upper_inverse_cholesky(h, damp)
    q_all = torch.zeros_like(w)
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        w1 = w[:, i1:i2].clone()
        hinv1 = hinv[i1:i2, i1:i2]
        err1 = torch.zeros_like(w1)
        for i in range(i2 - i1):
            col_index = int(perm[i1 + i])
            gi = col_index // gsize
            if not act_order and col_index % gsize == 0:  # first column of a group: fix its grid now
                a, b = groups[gi]
                span = torch.cat([w1[:, i:], w[:, i2:]], 1)[:, : b - a]
                scales[:, gi], zeros[:, gi] = grid_params(span, bits, symmetric, observer, float_zero)
            col = w1[:, i]
            q = to_grid(col, scales[:, gi], zeros[:, gi], bits, symmetric)
            if keep_p is not None:
                q = q * keep_p[:, i1 + i]
            e = (col - q) / hinv1[i, i]
            w1[:, i:] -= e.unsqueeze(1) @ hinv1[i, i:].unsqueeze(0)
            q_all[:, i1 + i] = q
            err1[:, i] = e
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    inverse = torch.argsort(perm)
    return q_all[:, inverse], scales, zeros
