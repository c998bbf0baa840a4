"""The pruning modifiers, one module each: ``magnitude_pruning`` (magnitude.py), ``movement_pruning``
(movement.py), ``constant_pruning`` (constant.py); ``obs_pruning`` and ``structured_pruning`` in obs.py and
structured.py. Kept so that imports from ``hf_lite.pruning.modifiers`` go on working, with a DeprecationWarning."""

from ..core.modifier import warn_moved
from .constant import ConstantPruningModifier, ConstantPruningSettings  # noqa: F401
from .magnitude import MagnitudePruningModifier, MagnitudePruningSettings, check_schedule  # noqa: F401
from .movement import MovementPruningModifier, MovementPruningSettings  # noqa: F401

warn_moved(__name__, "hf_lite.pruning or the method's module (hf_lite.pruning.{magnitude,movement,constant})")
