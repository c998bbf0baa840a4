"""The pruning modifiers, one module each: ``magnitude_pruning`` (magnitude.py), ``movement_pruning``
(movement.py), ``constant_pruning`` (constant.py); ``obs_pruning`` and ``structured_pruning`` in obs.py and
structured.py. Kept so that imports from ``hf_lite.pruning.modifiers`` go on working."""

from .constant import ConstantPruningModifier, ConstantPruningSettings
from .magnitude import MagnitudePruningModifier, MagnitudePruningSettings, check_schedule
from .movement import MovementPruningModifier, MovementPruningSettings

__all__ = [
    "ConstantPruningModifier",
    "ConstantPruningSettings",
    "MagnitudePruningModifier",
    "MagnitudePruningSettings",
    "MovementPruningModifier",
    "MovementPruningSettings",
    "check_schedule",
]
