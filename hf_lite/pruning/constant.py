"""``constant_pruning``: keep the zeros already in the weights fixed while fine-tuning."""

from __future__ import annotations

import dataclasses
import logging

import torch
from torch import nn

from ..core.modifier import Context, register_modifier
from ..core.settings import Settings
from .base import MaskedModifier, base_weight

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class ConstantPruningSettings(Settings):
    """Keep the zeros already in the weights at zero while fine-tuning."""

    #: module-name suffixes or ``re:`` regexes; default: every Linear in the transformer blocks
    targets: list[str] | None = None
    #: modules to leave alone
    ignore: list[str] | None = None


@register_modifier("constant_pruning")
class ConstantPruningModifier(MaskedModifier):
    """Masks = (W != 0) at the start of training; recovery after one-shot pruning."""

    settings_cls = ConstantPruningSettings

    def on_train_begin(self, model: nn.Module, ctx: Context) -> None:
        super().on_train_begin(model, ctx)
        if not self.masks:
            self.capture()

    @torch.no_grad()
    def capture(self) -> None:
        self.set_masks({n: (base_weight(m) != 0).float() for n, m in self.modules.items()})
        if not any(bool((mask == 0).any()) for mask in self.masks.values()):
            logger.warning(
                "constant_pruning: the target weights hold no zeros, so it keeps nothing; load a pruned model "
                "or put a pruning modifier (wanda, magnitude, ...) before it"
            )
