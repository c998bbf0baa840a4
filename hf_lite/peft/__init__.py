"""Parameter-efficient adaptation: head-only, LoRA and QLoRA (peft + bitsandbytes)."""

from .modifiers import HeadOnlyModifier, LoraModifier, QLoraModifier, count_trainable, guard_cpu_4bit_training

__all__ = ["HeadOnlyModifier", "LoraModifier", "QLoraModifier", "count_trainable", "guard_cpu_4bit_training"]
