"""The one-shot modifiers, one module each: ``magnitude``, ``wanda``, ``sparsegpt`` (pruning), ``rtn``,
``gptq`` (quantization); what they share is in base.py. Kept so that imports from
``hf_lite.oneshot.modifiers`` go on working, with a DeprecationWarning."""

from ..core.modifier import warn_moved
from ..quantization.grids import GRID_FILE  # noqa: F401
from .base import GridLinear, OneShotModifier, OneShotPruningSettings, RTNSettings  # noqa: F401
from .gptq import GPTQModifier, GPTQSettings  # noqa: F401
from .magnitude import MagnitudeOneShotModifier  # noqa: F401
from .rtn import RTNModifier  # noqa: F401
from .sparsegpt import SparseGPTModifier, SparseGPTSettings  # noqa: F401
from .wanda import WandaModifier  # noqa: F401

warn_moved(
    __name__, "hf_lite.oneshot or the method's module (hf_lite.oneshot.{magnitude,wanda,sparsegpt,rtn,gptq,base})"
)
