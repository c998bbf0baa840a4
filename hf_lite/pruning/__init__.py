"""Pruning inside Trainer.train(): magnitude (GMP, one-shot, N:M), movement, OBS (oBERT), constant, structured,
whole blocks (block_drop)."""

from ..core.modifier import import_submodules
from .constant import ConstantPruningModifier, ConstantPruningSettings
from .depth import BlockDropModifier, BlockDropSettings
from .magnitude import MagnitudePruningModifier, MagnitudePruningSettings
from .movement import MovementPruningModifier, MovementPruningSettings
from .obs import ObsPruningModifier, ObsPruningSettings
from .schedules import sparsity_at
from .structured import StructuredPruningModifier, StructuredPruningSettings

__all__ = [
    "BlockDropModifier",
    "BlockDropSettings",
    "ConstantPruningModifier",
    "ConstantPruningSettings",
    "MagnitudePruningModifier",
    "MagnitudePruningSettings",
    "MovementPruningModifier",
    "MovementPruningSettings",
    "ObsPruningModifier",
    "ObsPruningSettings",
    "StructuredPruningModifier",
    "StructuredPruningSettings",
    "sparsity_at",
]

import_submodules(__name__, __path__)  # every method module registers itself, listed here or not
