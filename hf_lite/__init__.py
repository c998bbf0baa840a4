"""hf_lite: pruning, quantization, distillation and PEFT inside ``Trainer.train()``."""

from __future__ import annotations

from .core.modifier import MODIFIERS, Context, Modifier, register_modifier
from .core.recipe import Recipe, load_recipe
from .core.session import CompressionSession
from .core.settings import RecipeError, Settings

__version__ = "0.1.0"

_registered = False


#: subpackages that hold no methods; every other one is a method package and is imported for the registry
_INFRASTRUCTURE = {"core", "deploy"}


def _register_all() -> None:
    """Import every method package once (found on disk, not listed) so their modifiers are registered."""
    global _registered
    if _registered:
        return
    _registered = True
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        if info.ispkg and info.name not in _INFRASTRUCTURE:
            importlib.import_module(f"{__name__}.{info.name}")


def __getattr__(name: str):
    # keep `import hf_lite` light: transformers is imported only when these are used
    if name in ("CompressionCallback",):
        from .callback import CompressionCallback

        return CompressionCallback
    if name in ("LiteTrainer", "LiteTrainingArguments", "LiteSeq2SeqTrainer", "LiteSeq2SeqTrainingArguments"):
        from . import trainer

        return getattr(trainer, name)
    if name in ("LiteSFTTrainer", "LiteSFTConfig"):
        from . import sft  # needs TRL; its ImportError names the extra

        return getattr(sft, name)
    if name in ("prepare_model", "run_recipe"):
        from . import api

        return getattr(api, name)
    raise AttributeError(name)


__all__ = [
    "MODIFIERS",
    "CompressionCallback",
    "CompressionSession",
    "Context",
    "LiteSFTConfig",
    "LiteSFTTrainer",
    "LiteSeq2SeqTrainer",
    "LiteSeq2SeqTrainingArguments",
    "LiteTrainer",
    "LiteTrainingArguments",
    "Modifier",
    "Recipe",
    "RecipeError",
    "Settings",
    "load_recipe",
    "prepare_model",
    "register_modifier",
    "run_recipe",
]
