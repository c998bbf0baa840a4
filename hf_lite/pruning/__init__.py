"""Pruning inside Trainer.train(): magnitude (GMP, one-shot, N:M), movement, constant, structured."""

from .modifiers import (
    ConstantPruningModifier,
    ConstantPruningSettings,
    MagnitudePruningModifier,
    MagnitudePruningSettings,
    MovementPruningModifier,
    MovementPruningSettings,
)
from .schedules import sparsity_at
from .structured import StructuredPruningModifier, StructuredPruningSettings

__all__ = [
    "ConstantPruningModifier",
    "ConstantPruningSettings",
    "MagnitudePruningModifier",
    "MagnitudePruningSettings",
    "MovementPruningModifier",
    "MovementPruningSettings",
    "StructuredPruningModifier",
    "StructuredPruningSettings",
    "sparsity_at",
]
