"""The quantization modifiers, one module each: ``qat`` (qat.py), ``ptq`` (ptq.py), ``bnb`` (bnb.py).
Kept so that imports from ``hf_lite.quantization.modifiers`` go on working."""

from .bnb import HEAD_NAMES, BnbModifier, BnbSettings  # noqa: F401
from .common import _IntGridModifier  # noqa: F401
from .ptq import PTQModifier, PTQSettings, dynamic_int8  # noqa: F401
from .qat import FakeQuantLinear, QATModifier, QATSettings, _QATState  # noqa: F401
