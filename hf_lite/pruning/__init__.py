"""Pruning inside Trainer.train(): magnitude (GMP, one-shot, N:M), movement, constant."""

from .modifiers import (
    ConstantPruningModifier,
    ConstantPruningSettings,
    MagnitudePruningModifier,
    MagnitudePruningSettings,
    MovementPruningModifier,
    MovementPruningSettings,
)
from .schedules import sparsity_at

__all__ = [
    "ConstantPruningModifier",
    "ConstantPruningSettings",
    "MagnitudePruningModifier",
    "MagnitudePruningSettings",
    "MovementPruningModifier",
    "MovementPruningSettings",
    "sparsity_at",
]
