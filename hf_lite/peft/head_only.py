"""``head_only``: train the task head (and optionally the last blocks), everything else frozen."""

from __future__ import annotations

import dataclasses
import logging

from torch import nn

from ..core.modifier import Context, register_modifier
from ..core.settings import RecipeError, Settings
from ..core.targets import block_index
from .common import HEADS, _head_names, _TrainableCount, count_trainable

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class HeadOnlySettings(Settings):
    """Train only the task head (optionally also the last blocks) of a frozen pretrained model."""

    #: also train the last k transformer blocks
    unfreeze_last: int = 0
    #: also train BERT's pooler (the [CLS] projection feeding the classifier); sentence-transformers
    #: checkpoints such as all-MiniLM-L6-v2 ship it untrained, so a frozen pooler starves the head
    pooler: bool = True

    def validate(self) -> None:
        if self.unfreeze_last < 0:
            self.fail("unfreeze_last", "must be >= 0")


@register_modifier("head_only")
class HeadOnlyModifier(_TrainableCount):
    settings_cls = HeadOnlySettings

    def initialize(self, model: nn.Module, ctx: Context) -> nn.Module:
        heads = _head_names(model)
        if not heads:
            raise RecipeError(f"head_only: {type(model).__name__} has no task head named one of {HEADS}")
        n_layers = model.config.num_hidden_layers
        if self.settings.unfreeze_last > n_layers:
            raise RecipeError(f"head_only.unfreeze_last: {self.settings.unfreeze_last} > {n_layers} layers")
        keep_layers = set(range(n_layers - self.settings.unfreeze_last, n_layers))
        for name, p in model.named_parameters():
            in_kept_layer = block_index(name) in keep_layers
            in_pooler = self.settings.pooler and ".pooler." in f".{name}"
            p.requires_grad = any(name.startswith(h + ".") for h in heads) or in_kept_layer or in_pooler
        self.trainable, self.total = count_trainable(model)
        logger.info(
            "head_only: %s of %s parameters trainable (%.2f%%)",
            self.trainable,
            self.total,
            100 * self.trainable / self.total,
        )
        return model
