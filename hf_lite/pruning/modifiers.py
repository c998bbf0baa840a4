"""The pruning modifiers, one module each: ``magnitude_pruning`` (magnitude.py), ``movement_pruning``
(movement.py), ``constant_pruning`` (constant.py); ``obs_pruning`` and ``structured_pruning`` in obs.py and
structured.py. Kept so that imports from ``hf_lite.pruning.modifiers`` go on working."""

from .constant import ConstantPruningModifier, ConstantPruningSettings  # noqa: F401
from .magnitude import MagnitudePruningModifier, MagnitudePruningSettings, check_schedule  # noqa: F401
from .movement import MovementPruningModifier, MovementPruningSettings  # noqa: F401
