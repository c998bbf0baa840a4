"""What the PEFT modifiers share: the task head names and the trainable-parameter count."""

from __future__ import annotations

from torch import nn

from ..core.modifier import Modifier

HEADS = ("classifier", "score", "lm_head")


def _head_names(model: nn.Module) -> list[str]:
    return [n for n in HEADS if isinstance(getattr(model, n, None), nn.Module)]


def count_trainable(model: nn.Module) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total


class _TrainableCount(Modifier):
    """Counts what is left trainable at initialize, for the logs and the report."""

    def __init__(self, settings):
        super().__init__(settings)
        self.trainable = self.total = 0

    def stats(self) -> dict[str, float]:
        return {"trainable_fraction": self.trainable / self.total} if self.total else {}
