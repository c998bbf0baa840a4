"""``LiteSFTTrainer`` and ``LiteSFTConfig``: TRL's ``SFTTrainer``/``SFTConfig`` with an hf_lite recipe.

TRL is an optional extra (``pip install 'hf-lite[trl]'``); this module imports it, so import it only
through ``hf_lite.LiteSFTTrainer`` / ``hf_lite.LiteSFTConfig``, which say what to install when it is absent.
"""

from __future__ import annotations

import dataclasses
from typing import Any

try:
    from trl import SFTConfig, SFTTrainer
except ImportError as e:  # pragma: no cover - exercised by the import-error test with trl hidden
    raise ImportError("LiteSFTTrainer needs TRL: pip install 'hf-lite[trl]'") from e
from transformers import Trainer

from .core.settings import RecipeError
from .trainer import RECIPE_HELP, LiteTrainerMixin


@dataclasses.dataclass
class LiteSFTConfig(SFTConfig):
    """``trl.SFTConfig`` plus ``--recipe``."""

    recipe: str | None = dataclasses.field(default=None, metadata={"help": RECIPE_HELP})


class LiteSFTTrainer(LiteTrainerMixin, SFTTrainer):
    """Drop-in ``trl.SFTTrainer`` that runs an hf_lite recipe (see :class:`hf_lite.trainer.LiteTrainerMixin`).

    Pass the model object (not a Hub id string) so the recipe's modifiers can act on it before TRL
    builds its optimizer. With a loss-adding modifier (distillation) the task loss is the model's own
    causal-LM loss over the labels TRL's collator builds (prompt and padding at -100, so
    ``assistant_only_loss``/``completion_only_loss`` carry over to the distillation term), and TRL's
    entropy/token-accuracy metrics are not logged, as they come from TRL's fused loss path.
    """

    def __init__(self, model: Any = None, args: Any = None, *pos: Any, **kwargs: Any):
        if isinstance(model, str):
            raise RecipeError(
                "LiteSFTTrainer: pass a loaded model (AutoModelForCausalLM.from_pretrained(...)), not a name, "
                "so the recipe's modifiers act on it before the optimizer is built"
            )
        super().__init__(model, args, *pos, **kwargs)
        if self.session.has_loss and getattr(self.args, "loss_type", "nll") != "nll":
            raise RecipeError(
                f"LiteSFTTrainer: loss_type {self.args.loss_type!r} with a loss-adding modifier; use loss_type='nll'"
            )

    def _task_loss(self, model, inputs, num_items_in_batch):
        # TRL's own compute_loss returns no logits (fused head); the loss terms need them
        return Trainer.compute_loss(self, model, {**inputs, "use_cache": False}, True, num_items_in_batch)


__all__ = ["LiteSFTConfig", "LiteSFTTrainer"]
