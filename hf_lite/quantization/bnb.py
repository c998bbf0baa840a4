"""``bnb``: export in a bitsandbytes 8-bit or 4-bit format that reloads with ``from_pretrained``."""

from __future__ import annotations

import dataclasses
import logging
from typing import Literal

import torch
from torch import nn

from ..core.modifier import Context, Modifier, register_modifier
from ..core.settings import Settings
from .grids import NF4_BLOCK

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class BnbSettings(Settings):
    """Export in a bitsandbytes format that reloads with ``from_pretrained(dir)``."""

    #: 8 (LLM.int8) or 4
    bits: int = 4
    #: 4-bit data type
    quant_type: Literal["nf4", "fp4"] = "nf4"
    #: quantize the 4-bit absmax statistics too (smaller, not bit-exact with an NF4-QAT grid)
    double_quant: bool = False
    #: modules kept in full precision (the task head is always kept)
    ignore: list[str] | None = None

    def validate(self) -> None:
        if self.bits not in (4, 8):
            self.fail("bits", "bitsandbytes exports 8 (LLM.int8) or 4 (nf4/fp4)")


HEAD_NAMES = ["classifier", "score", "lm_head", "pooler"]


@register_modifier("bnb")
class BnbModifier(Modifier):
    """At export: save the float model, reload it through ``BitsAndBytesConfig``, save that."""

    settings_cls = BnbSettings

    def initialize(self, model: nn.Module, ctx: Context) -> nn.Module:
        if self.settings.bits == 4:
            # bitsandbytes 0.50 on an AVX-512 CPU, rows that are not a whole number of 64-blocks: its CPU
            # dequantize_4bit reads the wrong absmax, and Linear4bit's CPU forward fails repacking them
            # (codes and absmax are stored right). Real models' widths are multiples of 64.
            skip = self.skip_modules()
            narrow = [
                name
                for name, m in model.named_modules()
                if isinstance(m, nn.Linear) and m.in_features % NF4_BLOCK and not any(k in name for k in skip)
            ]
            if narrow:
                logger.warning(
                    "bnb 4-bit: %d Linear(s) have in_features not a multiple of %d (e.g. %s); bitsandbytes' CPU "
                    "kernels get such layers wrong or fail on them on AVX-512 CPUs (GPU is fine): add them to ignore to "
                    "keep them in float if the model will run on CPU",
                    len(narrow),
                    NF4_BLOCK,
                    narrow[0],
                )
        return model

    def skip_modules(self) -> list[str]:
        """Module names bitsandbytes leaves in float: the task heads and ``ignore``."""
        return HEAD_NAMES + list(self.settings.ignore or [])

    def quantization_config(self):
        from transformers import BitsAndBytesConfig

        s = self.settings
        skip = self.skip_modules()
        if s.bits == 8:
            return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=s.quant_type,
            bnb_4bit_use_double_quant=s.double_quant,
            bnb_4bit_compute_dtype=torch.float32,
            llm_int8_skip_modules=skip,
        )

    def card_snippet(self, task: str, repo: str) -> str:
        from ..card import LOAD_SNIPPETS

        return "# needs bitsandbytes; the saved quantization_config is applied on load\n" + LOAD_SNIPPETS[task].format(
            repo=repo
        )

    def export(self, model: nn.Module, folder: str, tokenizer=None) -> bool:
        import tempfile

        from ..export import save_model

        with tempfile.TemporaryDirectory() as tmp:
            save_model(model, tmp)
            quantized = type(model).from_pretrained(tmp, quantization_config=self.quantization_config())
            save_model(quantized, folder, tokenizer)
        return True
