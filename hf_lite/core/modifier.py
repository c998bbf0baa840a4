"""The modifier lifecycle and the registry of modifier types.

Lifecycle, in order (the callback maps Trainer events onto these):

1. ``initialize(model, ctx)`` - once, before the optimizer exists: structural edits (freeze,
   swap layer classes, add trainable scales). May return a new model object (e.g. a peft wrapper).
2. ``on_train_begin(model, ctx)`` - ``ctx.max_steps`` is known: resolve ``start``/``end``.
3. per step: ``on_step_begin`` (before forward) -> ``loss`` (LiteTrainer only) ->
   ``before_optimizer_step`` (gradients are final) -> ``after_optimizer_step``.
   ``start``/``end`` are steps where a modifier changes phase; the modifier checks ``ctx.step``.
4. ``finalize(model, ctx)`` - at train end (or in one-shot use): make the compression permanent
   and return the model to save (may be a different object: merged, shrunk, converted).

Runtime state lives on the modifier and is saved with ``state_dict``/``load_state_dict``
(tensors and JSON-able scalars only: it is written as safetensors, never pickled).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from .settings import RecipeError, Settings, resolve_step


@dataclasses.dataclass
class Context:
    """What a modifier may read about the run. Owned by the session; one per run."""

    step: int = 0
    max_steps: int = 0
    world_size: int = 1
    teacher: nn.Module | None = None
    calibration: Any = None  # an iterable of input dicts (one-shot methods)


class Modifier:
    """Base class. Subclasses set ``settings_cls`` and register with :func:`register_modifier`."""

    settings_cls: ClassVar[type[Settings]] = Settings
    type_name: ClassVar[str] = ""
    #: True when the modifier changes the model object (peft wrapping) and so must run before
    #: ``Trainer(...)`` is built: use ``LiteTrainer`` or ``hf_lite.prepare_model``.
    replaces_model: ClassVar[bool] = False
    #: outputs the loss term needs from the forward pass (LiteTrainer asks the model for them)
    needs_outputs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, settings: Settings):
        self.settings = settings
        self.start_step = 0
        self.end_step = 0

    # -- lifecycle -----------------------------------------------------------------------------
    def initialize(self, model: nn.Module, ctx: Context) -> nn.Module:
        return model

    def on_train_begin(self, model: nn.Module, ctx: Context) -> None:
        start = getattr(self.settings, "start", None)
        end = getattr(self.settings, "end", None)
        self.start_step = resolve_step(start, ctx.max_steps, 0)
        self.end_step = resolve_step(end, ctx.max_steps, ctx.max_steps)
        if self.end_step < self.start_step:
            raise RecipeError(
                f"{self.type_name}: end (step {self.end_step}) comes before start (step {self.start_step}) "
                f"with max_steps={ctx.max_steps}; move end later or start earlier"
            )

    def on_step_begin(self, model: nn.Module, ctx: Context) -> None:
        pass

    def before_optimizer_step(self, model: nn.Module, ctx: Context) -> None:
        pass

    def after_optimizer_step(self, model: nn.Module, ctx: Context) -> None:
        pass

    def finalize(self, model: nn.Module, ctx: Context) -> nn.Module:
        return model

    def loss(self, outputs: Any, inputs: dict[str, Any], teacher_outputs: Any, ctx: Context) -> dict[str, torch.Tensor]:
        """Extra loss terms as {name: per-item mean}. LiteTrainer weights and logs them."""
        return {}

    # -- reporting and checkpoints -----------------------------------------------------------
    def stats(self) -> dict[str, float]:
        """Numbers to log (keys without prefix; the session prefixes them)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"start_step": self.start_step, "end_step": self.end_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.start_step = int(state.get("start_step", self.start_step))
        self.end_step = int(state.get("end_step", self.end_step))

    def describe(self) -> str:
        return f"{self.type_name}({', '.join(f'{k}={v}' for k, v in self.settings.to_dict().items())})"


MODIFIERS: dict[str, type[Modifier]] = {}


def register_modifier(name: str):
    """Class decorator: make a modifier available to recipes as ``type: name``."""

    def wrap(cls: type[Modifier]) -> type[Modifier]:
        if name in MODIFIERS and MODIFIERS[name] is not cls:
            raise ValueError(f"modifier type {name!r} is registered twice")
        cls.type_name = name
        cls.settings_cls.section = name
        MODIFIERS[name] = cls
        return cls

    return wrap


def build_modifier(spec: dict[str, Any], index: int = 0) -> Modifier:
    """A modifier from a recipe entry ``{type: name, ...settings}``."""
    from .. import _register_all

    _register_all()
    if not isinstance(spec, dict) or "type" not in spec:
        raise RecipeError(f"modifiers[{index}]: each entry needs a 'type:' key, got {spec!r}")
    spec = dict(spec)
    name = spec.pop("type")
    if name not in MODIFIERS:
        raise RecipeError(f"modifiers[{index}].type: unknown modifier {name!r}; known types are {sorted(MODIFIERS)}")
    cls = MODIFIERS[name]
    settings = cls.settings_cls.from_dict(spec, section=f"modifiers[{index}] ({name})")
    return cls(settings)
