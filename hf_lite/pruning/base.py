"""Masks owned by hf_lite (never ``torch.nn.utils.prune``, whose ``weight_orig``/``weight_mask``
break ``save_pretrained``). Masks multiply the gradients before the optimizer step and the weights
after it, so the weights on disk are plain tensors with exact zeros."""

from __future__ import annotations

import torch
from torch import nn

from ..core.distributed import full, shard_like
from ..core.modifier import Context, Modifier
from ..core.targets import find_linear_targets
from .masks import sparsity_of


def base_weight(module: nn.Module) -> torch.Tensor:
    """The dense weight a mask applies to (a peft LoRA layer wraps the original Linear)."""
    inner = getattr(module, "base_layer", module)
    return inner.weight


class MaskedModifier(Modifier):
    """Shared machinery: target resolution, mask application, mask checkpoints, sparsity stats."""

    def __init__(self, settings):
        super().__init__(settings)
        self.masks: dict[str, torch.Tensor] = {}
        self.modules: dict[str, nn.Module] = {}
        self._pruned: dict[str, tuple[int, int]] = {}  # (zeros, size) per mask, counted on the whole mask

    def initialize(self, model: nn.Module, ctx: Context) -> nn.Module:
        self.modules = find_linear_targets(model, self.settings.targets, self.settings.ignore, self.type_name)
        return model

    def _ensure_modules(self, model: nn.Module) -> None:
        if not self.modules:
            self.initialize(model, Context())

    def set_masks(self, masks: dict[str, torch.Tensor]) -> None:
        """Install new masks (whole, from rank 0) in each weight's own layout and zero the pruned weights now."""
        for name, mask in masks.items():
            self.masks[name] = shard_like(mask, base_weight(self.modules[name]))
            self._pruned[name] = (int((mask == 0).sum()), mask.numel())
        self.apply_to_weights()

    @torch.no_grad()
    def apply_to_weights(self) -> None:
        for name, mask in self.masks.items():
            base_weight(self.modules[name]).mul_(mask)

    @torch.no_grad()
    def apply_to_grads(self) -> None:
        for name, mask in self.masks.items():
            g = base_weight(self.modules[name]).grad
            if g is not None:
                g.mul_(mask)

    def before_optimizer_step(self, model: nn.Module, ctx: Context) -> None:
        self.apply_to_grads()

    def after_optimizer_step(self, model: nn.Module, ctx: Context) -> None:
        self.apply_to_weights()

    def finalize(self, model: nn.Module, ctx: Context) -> nn.Module:
        self.apply_to_weights()
        return model

    # -- reporting and state ---------------------------------------------------------------------
    def stats(self) -> dict[str, float]:
        """Counted when the masks change (every rank, whole masks): logging needs no collective."""
        if not self._pruned:
            return {}
        return {"sparsity": sum(z for z, _ in self._pruned.values()) / sum(n for _, n in self._pruned.values())}

    def layer_sparsity(self) -> dict[str, float]:
        return {n: sparsity_of(full(base_weight(m))) for n, m in self.modules.items()}

    def state_dict(self) -> dict:
        state = super().state_dict()
        for name, mask in self.masks.items():
            state[f"mask.{name}"] = full(mask).to(torch.uint8)
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        masks = {k[len("mask.") :]: v for k, v in state.items() if k.startswith("mask.")}
        unknown = set(masks) - set(self.modules)
        if unknown:
            raise ValueError(f"{self.type_name}: checkpoint has masks for unknown modules {sorted(unknown)[:3]}")
        self.set_masks(masks)
