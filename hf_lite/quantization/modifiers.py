"""The quantization modifiers, one module each: ``qat`` (qat.py), ``ptq`` (ptq.py), ``bnb`` (bnb.py).
Kept so that imports from ``hf_lite.quantization.modifiers`` go on working, with a DeprecationWarning."""

from ..core.modifier import warn_moved
from .bnb import HEAD_NAMES, BnbModifier, BnbSettings  # noqa: F401
from .common import _IntGridModifier  # noqa: F401
from .ptq import PTQModifier, PTQSettings, dynamic_int8  # noqa: F401
from .qat import FakeQuantLinear, QATModifier, QATSettings, _QATState  # noqa: F401

warn_moved(__name__, "hf_lite.quantization or the method's module (hf_lite.quantization.{qat,ptq,bnb,common})")
