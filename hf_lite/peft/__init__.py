"""Parameter-efficient adaptation: head-only, LoRA and QLoRA (peft + bitsandbytes)."""

from ..core.modifier import import_submodules
from .common import count_trainable
from .head_only import HeadOnlyModifier
from .lora import LoraModifier
from .qlora import QLoraModifier, guard_cpu_4bit_training

__all__ = ["HeadOnlyModifier", "LoraModifier", "QLoraModifier", "count_trainable", "guard_cpu_4bit_training"]

import_submodules(__name__, __path__)  # every method module registers itself, listed here or not
