"""The one-shot modifiers, one module each: ``magnitude``, ``wanda``, ``sparsegpt`` (pruning), ``rtn``,
``gptq`` (quantization); what they share is in base.py. Kept so that imports from
``hf_lite.oneshot.modifiers`` go on working."""

from ..quantization.grids import GRID_FILE
from .base import GridLinear, OneShotModifier, OneShotPruningSettings, RTNSettings
from .gptq import GPTQModifier, GPTQSettings
from .magnitude import MagnitudeOneShotModifier
from .rtn import RTNModifier
from .sparsegpt import SparseGPTModifier, SparseGPTSettings
from .wanda import WandaModifier

__all__ = [
    "GRID_FILE",
    "GPTQModifier",
    "GPTQSettings",
    "GridLinear",
    "MagnitudeOneShotModifier",
    "OneShotModifier",
    "OneShotPruningSettings",
    "RTNModifier",
    "RTNSettings",
    "SparseGPTModifier",
    "SparseGPTSettings",
    "WandaModifier",
]
