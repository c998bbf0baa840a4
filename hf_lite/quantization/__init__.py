"""Quantization: QAT (int8/int4/NF4 fake-quant), PTQ (RTN, dynamic int8), bitsandbytes export."""

from ..core.modifier import import_submodules
from .bnb import BnbModifier
from .grids import int_fake_quant, int_qparams, nf4_fake_quant, quantize_dequantize
from .ptq import PTQModifier, dynamic_int8
from .qat import QATModifier

__all__ = [
    "BnbModifier",
    "PTQModifier",
    "QATModifier",
    "dynamic_int8",
    "int_fake_quant",
    "int_qparams",
    "nf4_fake_quant",
    "quantize_dequantize",
]

import_submodules(__name__, __path__)  # every method module registers itself, listed here or not
