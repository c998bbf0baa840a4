"""CompressionCallback: maps Trainer events onto the modifier lifecycle.

Works with a plain ``transformers.Trainer`` (or TRL's ``SFTTrainer``) for every modifier that adds no
loss term; the Lite trainers install one themselves. Callbacks decide *when*; modifiers decide *what*.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from .core.modifier import Modifier
from .core.recipe import CalibrationSettings, Recipe, load_recipe
from .core.session import STATE_FILE, CompressionSession
from .core.settings import RecipeError

logger = logging.getLogger(__name__)

LITE_TRAINERS = "hf_lite.LiteTrainer / LiteSeq2SeqTrainer / LiteSFTTrainer"


class CompressionCallback(TrainerCallback):
    """Run a recipe's modifiers inside ``Trainer.train()``.

    One-shot modifiers (Wanda, SparseGPT, GPTQ, RTN, magnitude) compress at train begin, on
    ``calibration_dataset``, else the recipe's ``calibration.source`` (tokenized with the trainer's
    ``processing_class``), else the first ``calibration.samples`` rows of the training set padded by
    its data collator. Modifiers that add a loss term (distillation) need a Lite trainer.

    Args:
        recipe: a recipe path, YAML text, dict, list of modifier dicts, or a parsed ``Recipe``.
        modifiers: modifier objects instead of a recipe.
        session: an existing session (from ``hf_lite.prepare_model``); excludes ``recipe``/``modifiers``.
        calibration_dataset: token ids for the one-shot modifiers (see above).
        export_checkpoints: also write ``checkpoint-N/export/``, the finalized model at that step
            (default: the recipe's ``export.checkpoints``).
        owned: set by the Lite trainers, which add the loss terms this callback cannot.
    """

    def __init__(
        self,
        recipe: str | os.PathLike | dict | list | Recipe | None = None,
        *,
        modifiers: list[Modifier] | None = None,
        session: CompressionSession | None = None,
        calibration_dataset: Any = None,
        export_checkpoints: bool | None = None,
        owned: bool = False,
    ):
        parsed = None if recipe is None else recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
        if session is None:
            session = CompressionSession(
                modifiers if modifiers is not None else parsed.build_modifiers() if parsed else []
            )
        self.session = session
        self.recipe = parsed
        self.calibration_dataset = calibration_dataset
        if export_checkpoints is None:
            export_checkpoints = parsed is not None and parsed.export.checkpoints
        self.export_checkpoints = export_checkpoints
        self.owned = owned
        self.final_model = None
        self.trainer = None  # a Lite trainer sets this so finalize can hand back a new model object

    # -- setup -----------------------------------------------------------------------------------
    def on_init_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None, **kw):
        if self.session.initialized or model is None:
            return
        self._check_plain_trainer()
        for m in self.session.modifiers:
            if m.replaces_model:
                raise RecipeError(
                    f"modifier {m.type_name!r} wraps the model (peft) and must run before Trainer(...) is built: "
                    f"use {LITE_TRAINERS}, or call `model, session = hf_lite.prepare_model(model, recipe)` first and "
                    "pass CompressionCallback(session=session)"
                )
        if self.recipe is not None and self.recipe.model.init_from_teacher:
            raise RecipeError(
                "model.init_from_teacher builds a new model object: use a Lite trainer, or "
                "`model, session = hf_lite.prepare_model(model, recipe)` before Trainer(...)"
            )
        if self.recipe is not None:
            from .trainer import apply_model_section

            apply_model_section(model, self.recipe, "CompressionCallback")  # warns about ignored sections
        new = self.session.initialize(model)
        assert new is model
        if self.recipe is not None:  # a model the export formats cannot take: refused before training
            from .deploy import check_model

            check_model(model, self.recipe.export.formats, self.session.modifiers)

    def _check_plain_trainer(self) -> None:
        if self.owned:
            return
        adds_loss = [m.type_name for m in self.session.modifiers if m.needs_teacher or m.has_loss_term]
        if adds_loss:
            raise RecipeError(
                f"modifier(s) {adds_loss} add a loss term, which a callback cannot: use {LITE_TRAINERS} "
                "(the same arguments plus recipe=) instead of Trainer + CompressionCallback"
            )

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None, **kw):
        if not self.session.initialized:  # callback added after Trainer.__init__
            self.on_init_end(args, state, control, model=model)
        self._check_plain_trainer()
        self._check_sharding(model)
        self._check_options(args)
        if state.global_step > 0:  # resume: the checkpoint holds the one-shot result and every modifier's state
            self.session.on_train_begin(model, state.max_steps, state.global_step)
            self._restore(args, state)
            return
        if self.session.pending_one_shot:  # first, so e.g. constant_pruning sees the pruned weights
            loader = kw.get("train_dataloader")
            self.calibrate(
                model,
                kw.get("processing_class"),
                None if loader is None else loader.dataset,
                None if loader is None else loader.collate_fn,
            )
        self.session.on_train_begin(model, state.max_steps, state.global_step)

    def _check_sharding(self, model) -> None:
        from .core.distributed import check_supported_sharding, is_sharded

        if model is None or not self.session.modifiers:
            return
        check_supported_sharding(model)
        if not any(is_sharded(p) for p in model.parameters()):
            return
        if self.export_checkpoints:  # the finalized copy would be made on rank 0 alone: a collective on one rank
            raise RecipeError(
                "export_checkpoints / export.checkpoints: not supported on FSDP-sharded models yet; turn it off "
                "and export the final model with trainer.save_model"
            )
        unsupported = [m.type_name for m in self.session.modifiers if not m.supports_sharded]
        if unsupported:
            raise RecipeError(
                f"{unsupported}: not supported on FSDP-sharded parameters yet (see docs/distributed.md); run them "
                "with DDP (no fsdp= in TrainingArguments) or in one process"
            )
        if self.session.ctx.teacher is not None:  # sharded like the student: no full copy per rank
            from .core.distributed import shard_as

            shard_as(self.session.ctx.teacher, model)

    def _check_options(self, args: TrainingArguments) -> None:
        """Options that this run would accept and never use: said by name."""
        if self.export_checkpoints and args.save_strategy == "no":
            logger.warning("hf_lite: export_checkpoints is set but save_strategy is 'no': no checkpoint is written")
        if self.calibration_dataset is not None and not any(m.one_shot for m in self.session.modifiers):
            logger.warning("hf_lite: calibration_dataset is set but no one-shot modifier (wanda, gptq, ...) uses it")

    # -- calibration -------------------------------------------------------------------------------
    def _settings(self) -> CalibrationSettings:
        return (self.recipe.calibration if self.recipe is not None else None) or CalibrationSettings()

    def check_calibration_source(self, train_dataset: Any, tokenizer: Any) -> None:
        """Before training: refuse a run whose one-shot modifiers would have no calibration data."""
        if not self.session.requires_calibration or self.calibration_dataset is not None:
            return
        names = [m.type_name for m in self.session.pending_one_shot if m.requires_calibration]
        if self._settings().source is not None:
            if tokenizer is None:
                raise RecipeError(
                    f"{names}: calibration.source is text; pass processing_class= (the tokenizer) to the trainer"
                )
            return
        if train_dataset is None:
            raise RecipeError(
                f"{names}: need calibration data; pass calibration_dataset= (token ids) or train_dataset= to the "
                "trainer, or set calibration.source in the recipe"
            )

    def calibrate(
        self, model, tokenizer=None, dataset: Any = None, collator: Any = None, data: Any = None
    ) -> dict[str, float]:
        """Run the pending one-shot modifiers on ``model``: on ``data`` or ``calibration_dataset`` when
        given, else the recipe's ``calibration.source``, else a sample of ``dataset``."""
        from .oneshot.apply import calibration_batches, dataset_calibration, recipe_calibration

        cal = self._settings()
        data = data if data is not None else self.calibration_dataset
        batches = None
        if self.session.requires_calibration:
            if data is not None:
                batches = calibration_batches(data, cal.batch_size)
            elif cal.source is not None and self.recipe is not None and tokenizer is not None:
                batches = calibration_batches(recipe_calibration(self.recipe, tokenizer), cal.batch_size)
            elif dataset is not None:
                batches = dataset_calibration(dataset, collator, cal.samples, cal.batch_size)
            else:
                self.check_calibration_source(None, tokenizer)
        return self.session.calibrate(model, batches, progress=False, true_sequential=cal.true_sequential)

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
    def on_save(self, args, state, control, model=None, **kw):
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        self.session.save(folder, write=state.is_world_process_zero)  # every rank: sharded state is gathered
        if state.is_world_process_zero:
            if self.export_checkpoints:  # a deployable model next to the training state
                export = self.recipe.export if self.recipe is not None else None
                self.session.export_copy(model, os.path.join(folder, "export"), kw.get("processing_class"), export)

    def save_model(self, output_dir: str, tokenizer: Any = None) -> None:
        """Write the finalized model as ``hf-lite run`` exports it (a plain transformers folder, plus the
        modifiers' own files). Call it on every rank: under FSDP the shards are gathered, rank 0 writes."""
        if self.final_model is None:
            raise RuntimeError("CompressionCallback.save_model: training has not finished (no final model yet)")
        export = self.recipe.export if self.recipe is not None else None
        self.session.export(self.final_model, output_dir, tokenizer, export)

    def on_train_end(self, args, state, control, model=None, **kw):
        self.finalize(model)

    def finalize(self, model):
        """Make the compression permanent; a Lite trainer then holds the final model object."""
        self.final_model = self.session.finalize(model)
        if self.trainer is not None and self.final_model is not model:
            self.trainer.model = self.trainer.model_wrapped = self.final_model
        return self.final_model
