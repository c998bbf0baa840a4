"""The PEFT modifiers, one module each: ``head_only`` (head_only.py), ``lora`` (lora.py), ``qlora``
(qlora.py). Kept so that imports from ``hf_lite.peft.modifiers`` go on working."""

from .common import HEADS, count_trainable
from .head_only import HeadOnlyModifier, HeadOnlySettings
from .lora import LoraModifier, LoraSettings
from .qlora import QLoraModifier, QLoraSettings, guard_cpu_4bit_training

__all__ = [
    "HEADS",
    "HeadOnlyModifier",
    "HeadOnlySettings",
    "LoraModifier",
    "LoraSettings",
    "QLoraModifier",
    "QLoraSettings",
    "count_trainable",
    "guard_cpu_4bit_training",
]
