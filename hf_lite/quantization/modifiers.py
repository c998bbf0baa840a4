"""The quantization modifiers, one module each: ``qat`` (qat.py), ``ptq`` (ptq.py), ``bnb`` (bnb.py).
Kept so that imports from ``hf_lite.quantization.modifiers`` go on working."""

from .bnb import HEAD_NAMES, BnbModifier, BnbSettings
from .common import _IntGridModifier
from .ptq import PTQModifier, PTQSettings, dynamic_int8
from .qat import FakeQuantLinear, QATModifier, QATSettings, _QATState

__all__ = [
    "HEAD_NAMES",
    "BnbModifier",
    "BnbSettings",
    "FakeQuantLinear",
    "PTQModifier",
    "PTQSettings",
    "QATModifier",
    "QATSettings",
    "_IntGridModifier",
    "_QATState",
    "dynamic_int8",
]
