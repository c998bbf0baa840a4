"""Quantization: QAT (int8/int4/NF4 fake-quant), PTQ (RTN, dynamic int8), bitsandbytes export."""

from .grids import int_fake_quant, int_qparams, nf4_fake_quant, quantize_dequantize
from .modifiers import BnbModifier, PTQModifier, QATModifier, dynamic_int8

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
