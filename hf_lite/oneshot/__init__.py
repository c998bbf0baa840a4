"""One-shot LLM compression: Wanda, SparseGPT, GPTQ, RTN and magnitude, block by block."""

from ..core.modifier import import_submodules
from .apply import apply_recipe_, run_oneshot
from .base import OneShotModifier
from .gptq import GPTQModifier
from .magnitude import MagnitudeOneShotModifier
from .rtn import RTNModifier
from .sparsegpt import SparseGPTModifier
from .wanda import WandaModifier

__all__ = [
    "GPTQModifier",
    "MagnitudeOneShotModifier",
    "OneShotModifier",
    "RTNModifier",
    "SparseGPTModifier",
    "WandaModifier",
    "apply_recipe_",
    "run_oneshot",
]

import_submodules(__name__, __path__)  # every method module registers itself, listed here or not
