"""CompressionCallback: maps Trainer events onto the modifier lifecycle.

Works with a plain ``transformers.Trainer`` (or TRL's ``SFTTrainer``) for every modifier that needs
no extra loss term. Callbacks decide *when*; modifiers decide *what*.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from .core.modifier import Modifier
from .core.recipe import Recipe, parse_modifiers
from .core.session import STATE_FILE, CompressionSession

logger = logging.getLogger(__name__)


class CompressionCallback(TrainerCallback):
    """Run a recipe's modifiers inside ``Trainer.train()``.

    Args:
        recipe: a recipe path, YAML text, dict, list of modifier dicts, or a parsed ``Recipe``.
        session: an existing session (LiteTrainer passes its own); excludes ``recipe``.
    """

    def __init__(
        self,
        recipe: str | os.PathLike | dict | list | Recipe | None = None,
        *,
        modifiers: list[Modifier] | None = None,
        session: CompressionSession | None = None,
    ):
        if session is None:
            session = CompressionSession(modifiers if modifiers is not None else parse_modifiers(recipe))
        self.session = session
        self.final_model = None
        self.trainer = None  # LiteTrainer sets this so finalize can hand back a new model object

    # -- setup -----------------------------------------------------------------------------------
    def on_init_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None, **kw):
        if self.session.initialized or model is None:
            return
        for m in self.session.modifiers:
            if m.replaces_model:
                raise ValueError(
                    f"modifier {m.type_name!r} wraps the model (peft) and must run before Trainer(...) is built: "
                    "use hf_lite.LiteTrainer, or call `model = hf_lite.prepare_model(model, recipe)` first and "
                    "pass CompressionCallback(session=...) from its result"
                )
        new = self.session.initialize(model)
        assert new is model

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None, **kw):
        if not self.session.initialized:  # callback added after Trainer.__init__
            self.on_init_end(args, state, control, model=model)
        self.session.on_train_begin(model, state.max_steps, state.global_step)
        if state.global_step > 0:
            self._restore(args, state)

    def _restore(self, args: TrainingArguments, state: TrainerState) -> None:
        candidates = []
        if isinstance(args.resume_from_checkpoint, str):
            candidates.append(args.resume_from_checkpoint)
        candidates.append(os.path.join(args.output_dir, f"checkpoint-{state.global_step}"))
        for folder in candidates:
            if os.path.isfile(os.path.join(folder, STATE_FILE)):
                self.session.load(folder)
                logger.info("hf_lite: restored compression state from %s", folder)
                return
        if self.session.modifiers:
            raise FileNotFoundError(
                f"resuming at step {state.global_step} but no {STATE_FILE} was found in {candidates}; "
                "the checkpoint was not written with this recipe's CompressionCallback"
            )

    # -- per step --------------------------------------------------------------------------------
    def on_step_begin(self, args, state, control, model=None, **kw):
        self.session.on_step_begin(model, state.global_step)

    def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
        self.session.before_optimizer_step(model)

    def on_optimizer_step(self, args, state, control, model=None, **kw):
        self.session.after_optimizer_step(model)

    def on_log(self, args, state, control, logs: dict[str, Any] | None = None, **kw):
        if logs is not None and self.session.modifiers:
            stats = self.session.stats()
            for target in (logs, state.log_history[-1] if state.log_history else {}):
                for k, v in stats.items():
                    target.setdefault(k, v)

    # -- checkpoints and the end -----------------------------------------------------------------
    def on_save(self, args, state, control, **kw):
        if state.is_world_process_zero:
            self.session.save(os.path.join(args.output_dir, f"checkpoint-{state.global_step}"))

    def on_train_end(self, args, state, control, model=None, **kw):
        self.finalize(model)

    def finalize(self, model):
        """Make the compression permanent; a LiteTrainer then holds the final model object."""
        self.final_model = self.session.finalize(model)
        if self.trainer is not None and self.final_model is not model:
            self.trainer.model = self.trainer.model_wrapped = self.final_model
        return self.final_model
