"""One-shot LLM compression: Wanda, SparseGPT, GPTQ, RTN and magnitude, block by block."""

from .apply import apply_recipe_, run_oneshot
from .modifiers import (
    GPTQModifier,
    MagnitudeOneShotModifier,
    OneShotModifier,
    RTNModifier,
    SparseGPTModifier,
    WandaModifier,
)

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
