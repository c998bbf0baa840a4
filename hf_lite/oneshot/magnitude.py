"""``magnitude``: one-shot magnitude pruning, the data-free baseline."""

from __future__ import annotations

from ..core.distributed import full
from ..core.modifier import register_modifier
from ..pruning.base import base_weight
from . import algorithms as alg
from .base import _OneShotPruning


@register_modifier("magnitude")
class MagnitudeOneShotModifier(_OneShotPruning):
    """Naive baseline: zero the smallest |W| of each layer (data-free)."""

    def compress(self, name, module, stat) -> None:
        w = full(base_weight(module))
        mask = alg.magnitude_mask(w, self.settings.sparsity, self.nm)
        self._install(name, module, w.float() * mask, mask)
