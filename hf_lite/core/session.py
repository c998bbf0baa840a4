"""A run's modifiers, driven through the lifecycle, with their state saved as safetensors."""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .distributed import broadcast_, is_distributed  # noqa: F401 - re-exported: the names moved to .distributed
from .modifier import Context, Modifier

STATE_FILE = "hf_lite_state.safetensors"


class CompressionSession:
    """Holds the modifiers of one run and calls them in recipe order."""

    def __init__(self, modifiers: list[Modifier]):
        self.modifiers = modifiers
        self.ctx = Context(modifiers=self.modifiers)
        self.initialized = False
        self.finalized = False
        self.formats_written: dict[str, dict[str, Any]] = {}  # by export(): each format's path and size

    # -- lifecycle -------------------------------------------------------------------------------
    def initialize(self, model: nn.Module) -> nn.Module:
        if self.initialized:
            return model
        for m in self.modifiers:
            model = m.initialize(model, self.ctx)
        self.initialized = True
        return model

    def on_train_begin(self, model: nn.Module, max_steps: int, step: int) -> None:
        self.ctx.max_steps, self.ctx.step = max_steps, step
        for m in self.modifiers:
            m.on_train_begin(model, self.ctx)

    # -- calibration (one-shot modifiers) ----------------------------------------------------------
    @property
    def pending_one_shot(self) -> list[Modifier]:
        """One-shot modifiers that have not compressed yet (resume restores ``applied``)."""
        return [m for m in self.modifiers if m.one_shot and not m.applied]

    @property
    def requires_calibration(self) -> bool:
        return any(m.requires_calibration for m in self.pending_one_shot)

    def calibrate(self, model: nn.Module, batches: list[dict[str, torch.Tensor]] | None, **options: Any) -> dict:
        """Run every pending one-shot modifier once, in recipe order, block by block. ``batches`` are
        model inputs (``input_ids``, ``attention_mask``); None is fine when every one is data-free.
        ``options``: ``progress``, ``true_sequential``. Returns wall times per phase."""
        from ..oneshot.apply import run_oneshot

        self.timings = run_oneshot(model, self.pending_one_shot, batches, **options)
        return self.timings

    def on_step_begin(self, model: nn.Module, step: int) -> None:
        self.ctx.step = step
        for m in self.modifiers:
            m.on_step_begin(model, self.ctx)

    def before_optimizer_step(self, model: nn.Module) -> None:
        for m in self.modifiers:
            m.before_optimizer_step(model, self.ctx)

    def after_optimizer_step(self, model: nn.Module) -> None:
        for m in self.modifiers:
            m.after_optimizer_step(model, self.ctx)

    def finalize(self, model: nn.Module) -> nn.Module:
        if self.finalized:
            return model
        pending = [m.type_name for m in self.pending_one_shot]
        if pending:
            raise RuntimeError(
                f"one-shot modifier(s) {pending} never compressed the model: the calibration phase did not run. "
                "Use LiteTrainer/CompressionCallback (they run it at train begin), hf_lite.oneshot.apply_recipe_, "
                "or call session.calibrate(model, batches) before finalize"
            )
        for m in self.modifiers:
            model = m.finalize(model, self.ctx)
        self.finalized = True
        return model

    def loss_terms(self, outputs: Any, inputs: dict[str, Any], teacher_outputs: Any) -> dict[str, torch.Tensor]:
        terms: dict[str, torch.Tensor] = {}
        for m in self.modifiers:
            for k, v in m.loss(outputs, inputs, teacher_outputs, self.ctx).items():
                terms[f"{m.type_name}/{k}"] = v
        return terms

    @property
    def needs_outputs(self) -> set[str]:
        return {o for m in self.modifiers for o in m.needs_outputs}

    @property
    def has_loss(self) -> bool:
        return any(m.has_loss_term for m in self.modifiers)

    @property
    def teacher_modifier(self) -> Modifier | None:
        """The modifier that runs the teacher (its ``teacher_forward`` may serve cached outputs)."""
        return next((m for m in self.modifiers if m.needs_teacher), None)

    @property
    def task_loss_weight(self) -> float:
        weight = 1.0
        for m in self.modifiers:
            weight *= m.task_loss_weight
        return weight

    # -- export ----------------------------------------------------------------------------------
    def export(
        self,
        model: nn.Module,
        folder: str,
        tokenizer: Any = None,
        export_settings: Any = None,
        write: bool | None = None,
    ) -> None:
        """Write the finalized model: the last modifier with a format of its own, else plain safetensors;
        then every modifier's extra files. Under DDP/FSDP every rank calls this (FSDP-sharded weights are
        gathered) and only ``write`` (default: rank 0) writes."""
        from ..export import save_model
        from .distributed import full, is_main, is_sharded
        from .recipe import ExportSettings

        export_settings = export_settings or ExportSettings()
        write = is_main() if write is None else write
        if any(is_sharded(p) for p in model.parameters()):  # the modifiers with a format refuse FSDP
            state = {k: full(v).detach().cpu() for k, v in model.state_dict().items()}
            if write:
                save_model(model, folder, tokenizer, state_dict=state)
        elif write and not any(m.export(model, folder, tokenizer) for m in reversed(self.modifiers)):
            save_model(model, folder, tokenizer)
        if write:
            for m in self.modifiers:
                m.extra_files(folder, export_settings)
            from ..deploy import write_formats

            self.formats_written = write_formats(folder, export_settings.formats, export_settings.gguf_type)

    def export_copy(self, model: nn.Module, folder: str, tokenizer: Any = None, export_settings: Any = None) -> None:
        """Export what finalize would make of ``model`` now, leaving the training model and this session
        untouched: the model and the modifiers are deep-copied together, so the copies share their modules."""
        import copy

        model_copy, modifiers = copy.deepcopy((model, self.modifiers))
        twin = CompressionSession(modifiers)
        twin.initialized = True
        twin.ctx = Context(
            step=self.ctx.step, max_steps=self.ctx.max_steps, teacher=self.ctx.teacher, modifiers=modifiers
        )
        twin.export(twin.finalize(model_copy), folder, tokenizer, export_settings)

    def card_snippet(self, task: str, repo: str) -> str | None:
        return next((s for m in reversed(self.modifiers) if (s := m.card_snippet(task, repo))), None)

    def stats(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for m in self.modifiers:
            for k, v in m.stats().items():
                out[f"hf_lite/{m.type_name}/{k}"] = float(v)
        return out

    # -- checkpoints -----------------------------------------------------------------------------
    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Tensors (for safetensors) and JSON-able scalars, keyed by modifier index and type."""
        tensors: dict[str, torch.Tensor] = {}
        scalars: dict[str, Any] = {}
        for i, m in enumerate(self.modifiers):
            prefix = f"{i}.{m.type_name}"
            for k, v in m.state_dict().items():
                if isinstance(v, torch.Tensor):
                    tensors[f"{prefix}/{k}"] = v.detach().cpu().contiguous()
                else:
                    scalars[f"{prefix}/{k}"] = v
        return tensors, scalars

    def save(self, folder: str, write: bool = True) -> str:
        """Write the state into ``folder``. Under FSDP every rank calls this (sharded state is gathered),
        and only the one with ``write`` writes."""
        tensors, scalars = self.state_dict()
        path = os.path.join(folder, STATE_FILE)
        if write:
            os.makedirs(folder, exist_ok=True)
            save_file(tensors, path, metadata={"hf_lite_scalars": json.dumps(scalars), "format": "pt"})
        return path

    def load(self, folder: str) -> None:
        path = os.path.join(folder, STATE_FILE)
        with safe_open(path, framework="pt") as f:
            scalars = json.loads(f.metadata()["hf_lite_scalars"])
        tensors = load_file(path)
        for i, m in enumerate(self.modifiers):
            prefix = f"{i}.{m.type_name}/"
            state: dict[str, Any] = {k[len(prefix) :]: v for k, v in scalars.items() if k.startswith(prefix)}
            state.update({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
            if not state:
                raise ValueError(
                    f"{path} holds no state for modifier {i} ({m.type_name}); the recipe differs from the "
                    "one the checkpoint was written with"
                )
            m.load_state_dict(state)
