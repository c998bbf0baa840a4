"""Reading and writing parameters that may be sharded, in one place: no modifier knows FSDP.

Under FSDP2 a parameter outside forward is a ``DTensor`` holding this rank's shard. Masks, scores and
grids are computed from the full tensor (``full``: a collective, so every rank calls it at the same
point of the lifecycle), then handed back in the parameter's own placement (``shard_like``), and
written with in-place ops (FSDP2 ignores ``param.data = x``). Under DDP and in one process the same
calls are plain tensors, with rank 0's copy broadcast so every rank holds the same state.
"""

from __future__ import annotations

import torch


def is_distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def is_sharded(t: torch.Tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def broadcast_(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Make every rank hold rank 0's copy (masks, scales). A no-op in one process."""
    if is_distributed():
        torch.distributed.broadcast(tensor, src=src)
    return tensor


def full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor on every rank (gathers a sharded one; a plain tensor is returned as it is)."""
    return t.full_tensor() if is_sharded(t) else t


def shard_like(value: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``value`` (whole, same on every rank) laid out like ``ref``: this rank's shard of a sharded
    parameter, else rank 0's copy broadcast."""
    value = value.to(dtype=ref.dtype).contiguous()
    if is_sharded(ref):
        from torch.distributed.tensor import distribute_tensor

        return distribute_tensor(value.to(ref.to_local().device), ref.device_mesh, ref.placements)
    return broadcast_(value.to(ref.device))


@torch.no_grad()
def write_(param: torch.Tensor, value: torch.Tensor) -> None:
    """``param[...] = value`` in place, for a sharded or a plain parameter."""
    param.copy_(shard_like(value, param))
