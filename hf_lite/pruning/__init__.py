"""Pruning inside Trainer.train(): magnitude (GMP, one-shot, N:M), movement, OBS (oBERT), constant, structured."""

from .modifiers import (
    ConstantPruningModifier,
    ConstantPruningSettings,
    MagnitudePruningModifier,
    MagnitudePruningSettings,
    MovementPruningModifier,
    MovementPruningSettings,
)
from .obs import ObsPruningModifier, ObsPruningSettings
from .schedules import sparsity_at
from .structured import StructuredPruningModifier, StructuredPruningSettings

__all__ = [
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
