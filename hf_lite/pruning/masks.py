"""Mask computation. Masks are float tensors (1 keep, 0 prune) shaped like the weight."""

from __future__ import annotations

import torch

from ..core.settings import Settings


def parse_pattern(pattern: str) -> tuple[int, int] | None:
    """``"2:4"`` -> (2, 4); ``"unstructured"`` -> None."""
    if pattern == "unstructured":
        return None
    n, m = (int(x) for x in pattern.split(":"))
    return n, m


def check_pattern(s: Settings) -> None:
    """``s.pattern`` of any pruning settings: ``unstructured`` or a valid ``"N:M"``."""
    if s.pattern == "unstructured":
        return
    try:
        n, m = parse_pattern(s.pattern)
    except ValueError:
        s.fail("pattern", 'use "unstructured" or "N:M" with integers, e.g. "2:4"')
    if not 0 < n < m:
        s.fail("pattern", "N:M needs 0 < N < M, e.g. 2:4")


def topk_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep the largest ``(1 - sparsity)`` fraction of ``scores`` (exact count, ties broken by index)."""
    return prune_lowest(scores, sparsity)


def prune_lowest(scores: torch.Tensor, sparsity: float, per_row: bool = False, rule: str = "exact") -> torch.Tensor:
    """Mask (1 keep, 0 prune) over ``scores``, pruning the lowest ``sparsity`` fraction of the whole tensor
    or of each row. ``exact``: exactly ``round(sparsity * n)`` entries, ties broken by position.
    ``threshold``: every score <= the ``int(sparsity * n)``-th smallest, llm-compressor's rule (one entry
    more than ``exact``, plus any ties at the threshold)."""
    flat = scores if per_row else scores.reshape(1, -1)
    n = flat.shape[1]
    if rule == "threshold":
        thresh = torch.sort(flat, dim=1).values[:, min(int(n * sparsity), n - 1)].unsqueeze(1)
        return (flat > thresh).to(scores.dtype).reshape(scores.shape)
    mask = torch.ones_like(flat)
    k = int(round(sparsity * n))
    if k > 0:
        mask.scatter_(1, torch.topk(flat, k, dim=1, largest=False).indices, 0.0)
    return mask.reshape(scores.shape)


def global_masks(scores: dict[str, torch.Tensor], sparsity: float) -> dict[str, torch.Tensor]:
    """One threshold across all layers: the ``sparsity`` fraction of all scores is pruned."""
    flat = torch.cat([s.reshape(-1).float() for s in scores.values()])
    k = int(round(sparsity * flat.numel()))
    if k <= 0:
        return {n: torch.ones_like(s) for n, s in scores.items()}
    prune = torch.zeros(flat.numel(), dtype=torch.bool)
    prune[torch.topk(flat, k, largest=False, sorted=False).indices] = True
    out, offset = {}, 0
    for name, s in scores.items():
        n = s.numel()
        out[name] = (~prune[offset : offset + n]).reshape(s.shape).to(s.dtype)
        offset += n
    return out


def nm_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep the ``n`` largest of every ``m`` consecutive input weights of each row."""
    rows, cols = scores.shape
    if cols % m:
        raise ValueError(f"N:M pattern {n}:{m} needs in_features divisible by {m}, got {cols}")
    groups = scores.reshape(rows, cols // m, m)
    keep = torch.topk(groups, n, dim=-1).indices
    mask = torch.zeros_like(groups)
    mask.scatter_(-1, keep, 1.0)
    return mask.reshape(rows, cols)


def sparsity_of(t: torch.Tensor) -> float:
    return float((t == 0).sum()) / t.numel()
