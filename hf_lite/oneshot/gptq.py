"""``gptq``: int4/int8 weights with the rounding error compensated column by column (Frantar et al. 2022)."""

from __future__ import annotations

import dataclasses

from ..core.distributed import full
from ..core.modifier import register_modifier
from ..pruning.base import base_weight
from . import algorithms as alg
from .base import RTNSettings, _check_solver, _WeightQuantizer


@dataclasses.dataclass
class GPTQSettings(RTNSettings):
    """GPTQ: weight-only quantization with second-order error correction."""

    #: visit columns by decreasing Hessian diagonal (groups stay on the original column order)
    act_order: bool = False
    #: Hessian dampening, as a fraction of its mean diagonal
    damp: float = 0.01
    #: columns processed per lazy-update block
    block_size: int = 128

    def validate(self) -> None:
        super().validate()
        _check_solver(self)


@register_modifier("gptq")
class GPTQModifier(_WeightQuantizer):
    """GPTQ int4/int8 weights with Hessian-based error feedback."""

    settings_cls = GPTQSettings
    statistic = "hessian"

    def compress(self, name, module, stat) -> None:
        s = self.settings
        q, scales, zeros = alg.gptq_(
            full(base_weight(module)),
            stat,
            s.bits,
            s.group_size,
            s.symmetric,
            act_order=s.act_order,
            damp=s.damp,
            block_size=s.block_size,
            observer=s.observer,
            float_zero=s.zero_point == "float",
        )
        self._install(name, module, q, scales, zeros)
