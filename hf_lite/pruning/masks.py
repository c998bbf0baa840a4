"""Mask computation. Masks are float tensors (1 keep, 0 prune) shaped like the weight."""

from __future__ import annotations

import torch


def parse_pattern(pattern: str) -> tuple[int, int] | None:
    """``"2:4"`` -> (2, 4); ``"unstructured"`` -> None."""
    if pattern == "unstructured":
        return None
    n, m = (int(x) for x in pattern.split(":"))
    return n, m


def topk_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep the largest ``(1 - sparsity)`` fraction of ``scores`` (exact count, ties broken by index)."""
    k = int(round(sparsity * scores.numel()))
    mask = torch.ones_like(scores)
    if k <= 0:
        return mask
    idx = torch.topk(scores.reshape(-1), k, largest=False, sorted=False).indices
    mask.view(-1)[idx] = 0.0
    return mask


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
