"""The PEFT modifiers, one module each: ``head_only`` (head_only.py), ``lora`` (lora.py), ``qlora``
(qlora.py). Kept so that imports from ``hf_lite.peft.modifiers`` go on working, with a DeprecationWarning."""

from ..core.modifier import warn_moved
from .common import HEADS, count_trainable  # noqa: F401
from .head_only import HeadOnlyModifier, HeadOnlySettings  # noqa: F401
from .lora import LoraModifier, LoraSettings  # noqa: F401
from .qlora import QLoraModifier, QLoraSettings, guard_cpu_4bit_training  # noqa: F401

warn_moved(__name__, "hf_lite.peft or the method's module (hf_lite.peft.{head_only,lora,qlora,common})")
