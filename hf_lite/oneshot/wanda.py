"""``wanda``: one-shot pruning by |weight| x input norm, per output row (Sun et al. 2023)."""

from __future__ import annotations

from ..core.distributed import full
from ..core.modifier import register_modifier
from ..pruning.base import base_weight
from . import algorithms as alg
from .base import _OneShotPruning


@register_modifier("wanda")
class WandaModifier(_OneShotPruning):
    """Wanda: |W| times the input activation norm, per output row; no weight update."""

    statistic = "sq_norms"

    def compress(self, name, module, stat) -> None:
        w = full(base_weight(module))
        mask = alg.wanda_mask(w, stat, self.settings.sparsity, self.nm)
        self._install(name, module, w.float() * mask, mask)
