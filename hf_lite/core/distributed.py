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


def is_main() -> bool:
    """The process that writes files (rank 0, or the only one)."""
    return not is_distributed() or torch.distributed.get_rank() == 0


def is_sharded(t: torch.Tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def check_supported_sharding(model: torch.nn.Module) -> None:
    """Refuse, before training, the sharding schemes whose parameters the modifiers cannot read whole:
    FSDP1 (flat parameter shards) and DeepSpeed ZeRO-3 (empty placeholders outside forward)."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    from .settings import RecipeError

    if is_deepspeed_zero3_enabled() or any(hasattr(p, "ds_id") for p in model.parameters()):
        raise RecipeError(
            "hf_lite: DeepSpeed ZeRO-3 is not supported (parameters are empty placeholders outside forward); "
            "use FSDP2 (fsdp='full_shard', fsdp_config={'fsdp_version': 2}) or ZeRO stage 1/2"
        )
    from torch.distributed.fsdp import FullyShardedDataParallel

    if any(isinstance(m, FullyShardedDataParallel) for m in model.modules()):
        raise RecipeError(
            "hf_lite: FSDP1 is not supported (it flattens parameters into shards); "
            "use FSDP2: fsdp_config={'fsdp_version': 2} (the transformers 5 default)"
        )


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


def shard_as(module: torch.nn.Module, like: torch.nn.Module) -> torch.nn.Module:
    """Shard ``module`` (a frozen teacher) with FSDP2 on the mesh of ``like``'s sharded parameters:
    each transformer block, then the root, as the Trainer shards the student. In place; returned."""
    from torch.distributed.fsdp import FSDPModule, fully_shard

    from .settings import RecipeError
    from .targets import decoder_blocks

    if isinstance(module, FSDPModule):
        return module
    mesh = next(p.device_mesh for p in like.parameters() if is_sharded(p))
    try:
        _, blocks = decoder_blocks(module)
    except RecipeError:  # no block list: one unit for the whole module
        blocks = []
    for block in blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(module, mesh=mesh)
    return module
