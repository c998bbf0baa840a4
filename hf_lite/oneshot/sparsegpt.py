"""``sparsegpt``: one-shot OBS-style pruning with the remaining weights updated (Frantar & Alistarh 2023)."""

from __future__ import annotations

import dataclasses

from ..core.distributed import full
from ..core.modifier import register_modifier
from ..pruning.base import base_weight
from . import algorithms as alg
from .base import OneShotPruningSettings, _check_solver, _OneShotPruning


@dataclasses.dataclass
class SparseGPTSettings(OneShotPruningSettings):
    """SparseGPT: pruning with second-order error correction."""

    #: columns processed per lazy-update block (the paper uses 128)
    block_size: int = 128
    #: Hessian dampening, as a fraction of its mean diagonal. 0.1 rather than the paper's 0.01: with
    #: the default calibration (32 sequences of 256 tokens) the Hessian is noisy and the stronger
    #: damping gives the lower perplexity (docs/pruning.md); 0.01 may suit thousands of samples
    damp: float = 0.1
    #: unstructured only: the mask is chosen every ``mask_block`` columns from the already-updated
    #: weights (null: once per ``block_size`` block, as the paper and llm-compressor do)
    mask_block: int | None = None

    def validate(self) -> None:
        super().validate()
        _check_solver(self)
        if self.mask_block is not None and not 1 <= self.mask_block <= self.block_size:
            self.fail("mask_block", f"must be between 1 and block_size ({self.block_size}), or null")


@register_modifier("sparsegpt")
class SparseGPTModifier(_OneShotPruning):
    """SparseGPT: OBS-style pruning with the remaining weights updated to compensate."""

    settings_cls = SparseGPTSettings
    statistic = "hessian"

    def compress(self, name, module, stat) -> None:
        s = self.settings
        new, mask = alg.sparsegpt_(
            full(base_weight(module)), stat, s.sparsity, self.nm, s.block_size, s.damp, mask_block=s.mask_block
        )
        self._install(name, module, new, mask)
