"""``rtn``: round-to-nearest int4/int8 weights per group (data-free)."""

from __future__ import annotations

from ..core.distributed import full
from ..core.modifier import register_modifier
from ..pruning.base import base_weight
from . import algorithms as alg
from .base import _WeightQuantizer


@register_modifier("rtn")
class RTNModifier(_WeightQuantizer):
    """Round-to-nearest int4/int8 weights per group (data-free)."""

    def compress(self, name, module, stat) -> None:
        s = self.settings
        q, scales, zeros = alg.rtn(
            full(base_weight(module)), s.bits, s.group_size, s.symmetric, s.observer, s.zero_point == "float"
        )
        self._install(name, module, q, scales, zeros)
