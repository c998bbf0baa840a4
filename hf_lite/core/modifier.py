"""The modifier lifecycle and the registry of modifier types.

Lifecycle, in order (the callback maps Trainer events onto these):

1. ``initialize(model, ctx)`` - once, before the optimizer exists: structural edits (freeze,
   swap layer classes, add trainable scales). May return a new model object (e.g. a peft wrapper).
2. ``on_train_begin(model, ctx)`` - ``ctx.max_steps`` is known: resolve ``start``/``end``.
3. calibration - one-shot modifiers (``one_shot = True``) compress once, block by block, through
   ``compression_step()``; the session runs them after ``on_train_begin`` (or before training, in
   ``hf-lite run``) on calibration batches when ``requires_calibration``, else data-free.
4. per step: ``on_step_begin`` (before forward) -> ``loss`` (Lite trainers only) ->
   ``before_optimizer_step`` (gradients are final) -> ``after_optimizer_step``.
   ``start``/``end`` are steps where a modifier changes phase; the modifier checks ``ctx.step``.
5. ``finalize(model, ctx)`` - at train end (or in one-shot use): make the compression permanent
   and return the model to save (may be a different object: merged, shrunk, converted).
6. export - ``export`` (a modifier with its own format writes the folder), ``extra_files`` (files
   next to the model), ``card_snippet`` (how to load it, for the model card and report.json).

Every capability is a method or class attribute declared here with its default; the session and
the trainers call them, never probe for them. Runtime state lives on the modifier and is saved with
``state_dict``/``load_state_dict`` (tensors and JSON-able scalars only: written as safetensors,
never pickled).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from .settings import RecipeError, Settings, resolve_step


@dataclasses.dataclass
class Context:
    """What a modifier may read about the run. Owned by the session; one per run."""

    step: int = 0
    max_steps: int = 0
    teacher: nn.Module | None = None
    #: the run's modifiers, told when one of them swaps a layer (``swap_module``)
    modifiers: list[Modifier] = dataclasses.field(default_factory=list)

    def swap_module(self, model: nn.Module, old: nn.Module, new: nn.Module) -> None:
        """Put ``new`` in place of the submodule ``old``; every modifier that held ``old`` holds ``new``
        from now on (a mask written through a stale module would miss a sharded model)."""
        from .targets import replace_module

        replace_module(model, old, new)
        for m in self.modifiers:
            m.module_replaced(old, new)


#: what a one-shot modifier hands the block-by-block runner: its target Linears, the input statistic
#: its ``compress`` needs (``hessian``, ``sq_norms``, or None for data-free) and ``compress(name, module, stat)``
CompressionStep = tuple[dict[str, nn.Module], str | None, Callable[[str, nn.Module, Any], None]]


class Modifier:
    """Base class. Subclasses set ``settings_cls`` and register with :func:`register_modifier`."""

    settings_cls: ClassVar[type[Settings]] = Settings
    type_name: ClassVar[str] = ""
    #: True when the modifier changes the model object (peft wrapping) and so must run before
    #: ``Trainer(...)`` is built: use ``LiteTrainer`` or ``hf_lite.prepare_model``.
    replaces_model: ClassVar[bool] = False
    #: outputs the loss term needs from the forward pass (the Lite trainers ask the model for them)
    needs_outputs: ClassVar[tuple[str, ...]] = ()
    #: compresses once (calibration phase) instead of, or before, acting during training
    one_shot: ClassVar[bool] = False
    #: its loss terms compare with a teacher's outputs: the run needs ``teacher:`` / ``teacher_model=``
    needs_teacher: ClassVar[bool] = False
    #: works on FSDP2-sharded parameters (reads and writes them through ``hf_lite.core.distributed``);
    #: a run that shards the model refuses the others at train begin instead of failing at the end
    supports_sharded: ClassVar[bool] = False

    def __init__(self, settings: Settings):
        self.settings = settings
        self.start_step = 0
        self.end_step = 0
        #: one-shot modifiers: True once ``compression_step`` has run (checkpointed, so resume skips it)
        self.applied = False
        #: the modules this modifier acts on, by qualified name (filled at ``initialize``)
        self.modules: dict[str, nn.Module] = {}

    # -- lifecycle -----------------------------------------------------------------------------
    def initialize(self, model: nn.Module, ctx: Context) -> nn.Module:
        return model

    def module_replaced(self, old: nn.Module, new: nn.Module) -> None:
        """Another modifier swapped ``old`` for ``new`` in the model (``Context.swap_module``)."""
        for name, m in self.modules.items():
            if m is old:
                self.modules[name] = new

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
        """Extra loss terms as {name: per-item mean}. The Lite trainers weight and log them."""
        return {}

    @property
    def has_loss_term(self) -> bool:
        """True when the subclass overrides ``loss`` (so only a Lite trainer can run it)."""
        return type(self).loss is not Modifier.loss

    @property
    def task_loss_weight(self) -> float:
        """Factor on the task (label) loss when this modifier adds its own terms (distillation: 1 - alpha)."""
        return 1.0

    # -- one-shot (calibration phase) --------------------------------------------------------------
    @property
    def requires_calibration(self) -> bool:
        """True when ``compression_step`` needs input statistics, i.e. calibration batches."""
        return False

    def compression_step(self) -> CompressionStep | None:
        """For ``one_shot`` modifiers: (targets, statistic, compress) run once block by block."""
        return None

    # -- teacher -----------------------------------------------------------------------------------
    def teacher_forward(self, teacher: nn.Module, inputs: dict[str, Any], extra: dict[str, bool]) -> Any:
        """The teacher's outputs for a batch (labels removed). A modifier may serve cached outputs."""
        with torch.no_grad():
            return teacher(**teacher_inputs(teacher, inputs), **extra)

    # -- export ------------------------------------------------------------------------------------
    def export(self, model: nn.Module, folder: str, tokenizer: Any = None) -> bool:
        """Write the finalized model in this modifier's own format; return False to leave it to the
        default (plain safetensors). When several modifiers have a format, the last one in the recipe writes."""
        return False

    def extra_files(self, folder: str, export_settings: Any) -> None:
        """Write files next to the exported model (an adapter, a quantization grid)."""

    def weight_grid(self) -> dict[str, Any] | None:
        """The integer grid this modifier leaves the target weights on, as written to the grid file
        (``bits``, ``group_size``, ``symmetric``, ``zero_point``), or None. Deployment formats that store
        integer codes (compressed-tensors) need one."""
        return None

    def card_snippet(self, task: str, repo: str) -> str | None:
        """Python that loads the exported folder, when plain ``from_pretrained`` is not the whole story."""
        return None

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


def teacher_inputs(teacher: nn.Module, inputs: dict[str, Any]) -> dict[str, Any]:
    """A batch for the teacher: no labels (no teacher loss to compute); an encoder-decoder teacher gets
    the decoder inputs its own forward would have made from them."""
    out = {k: v for k, v in inputs.items() if k != "labels"}
    labels = inputs.get("labels")
    if labels is not None and "decoder_input_ids" not in out and getattr(teacher.config, "is_encoder_decoder", False):
        out["decoder_input_ids"] = teacher.prepare_decoder_input_ids_from_labels(labels=labels)
    return out


MODIFIERS: dict[str, type[Modifier]] = {}


def import_submodules(package: str, path: list[str]) -> None:
    """Import every module of a method package, so each registers its modifiers: a method added as a new
    file is found without an import list to edit."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(path):
        if info.name != DEPRECATED_ALIAS_MODULE:
            importlib.import_module(f"{package}.{info.name}")


#: the name of each family's deprecated alias module (the layout before one module per method)
DEPRECATED_ALIAS_MODULE = "modifiers"


def warn_moved(old: str, new: str) -> None:
    """Warn, from a deprecated alias module ``old``, that its names now live in ``new``."""
    import warnings

    # stacklevel 3: the line of the user's code that imported ``old``
    warnings.warn(f"{old} is deprecated: import from {new}", DeprecationWarning, stacklevel=3)


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
    if not isinstance(name, str):
        raise RecipeError(f"modifiers[{index}].type: expected a name such as 'qat', got {name!r}")
    if name not in MODIFIERS:
        raise RecipeError(f"modifiers[{index}].type: unknown modifier {name!r}; known types are {sorted(MODIFIERS)}")
    cls = MODIFIERS[name]
    settings = cls.settings_cls.from_dict(spec, section=f"modifiers[{index}] ({name})")
    return cls(settings)
