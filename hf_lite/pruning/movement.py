"""``movement_pruning``: scores accumulated from -W * dL/dW while training (Sanh et al. 2020)."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..core.distributed import full, shard_like
from ..core.modifier import Context, register_modifier
from .base import base_weight
from .magnitude import MagnitudePruningModifier, MagnitudePruningSettings


@dataclasses.dataclass
class MovementPruningSettings(MagnitudePruningSettings):
    """Movement pruning (Sanh et al. 2020): scores accumulate -W * dL/dW during training."""


@register_modifier("movement_pruning")
class MovementPruningModifier(MagnitudePruningModifier):
    """Top-k of accumulated movement scores, on the same schedules as magnitude pruning."""

    settings_cls = MovementPruningSettings

    def __init__(self, settings):
        super().__init__(settings)
        self.movement: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def before_optimizer_step(self, model: nn.Module, ctx: Context) -> None:
        if ctx.step <= self.end_step:
            for name, module in self.modules.items():
                w = base_weight(module)
                if w.grad is None:
                    continue
                acc = self.movement.get(name)
                if acc is None:
                    acc = self.movement[name] = torch.zeros_like(w, dtype=torch.float32)
                acc.add_(-(w * w.grad).float())
        super().before_optimizer_step(model, ctx)

    def scores(self) -> dict[str, torch.Tensor]:
        if not self.movement:  # no gradient seen yet: fall back to magnitude
            return super().scores()
        return {
            n: full(self.movement[n])
            if n in self.movement
            else torch.zeros_like(full(base_weight(m)), dtype=torch.float32)
            for n, m in self.modules.items()
        }

    def state_dict(self) -> dict:
        state = super().state_dict()
        state.update({f"movement.{n}": full(t) for n, t in self.movement.items()})
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.movement = {
            k[len("movement.") :]: shard_like(v.float(), base_weight(self.modules[k[len("movement.") :]])).float()
            for k, v in state.items()
            if k.startswith("movement.")
        }
