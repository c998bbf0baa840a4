"""The Lite trainers: ``LiteTrainer``, ``LiteSeq2SeqTrainer`` (and ``LiteSFTTrainer`` in :mod:`hf_lite.sft`).

All three are :class:`LiteTrainerMixin` over a transformers/TRL trainer class. The mixin adds the
modifiers' loss terms in ``compute_loss`` and nothing else of the training loop: the modifiers run
through :class:`~hf_lite.callback.CompressionCallback`, which it installs.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments, Trainer, TrainingArguments

from .callback import CompressionCallback
from .core.recipe import Recipe, load_recipe
from .core.session import CompressionSession
from .core.settings import RecipeError

logger = logging.getLogger(__name__)

RECIPE_HELP = "hf_lite recipe YAML (its `modifiers:` act during training)"


@dataclasses.dataclass
class LiteTrainingArguments(TrainingArguments):
    """``TrainingArguments`` plus ``--recipe`` for ``HfArgumentParser`` scripts."""

    recipe: str | None = dataclasses.field(default=None, metadata={"help": RECIPE_HELP})


@dataclasses.dataclass
class LiteSeq2SeqTrainingArguments(Seq2SeqTrainingArguments):
    """``Seq2SeqTrainingArguments`` plus ``--recipe`` (run_summarization/run_translation style scripts)."""

    recipe: str | None = dataclasses.field(default=None, metadata={"help": RECIPE_HELP})


def sequence_classification_loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
    """Cross-entropy (or MSE for one label) as sum / ``num_items_in_batch``.

    BERT-style models ignore ``num_items_in_batch`` and return a per-batch mean, which the Trainer
    then mis-scales under gradient accumulation and ``average_tokens_across_devices`` (DDP).
    """
    logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
    if logits.shape[-1] == 1:
        losses = F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype), reduction="none")
    else:
        losses = F.cross_entropy(
            logits.view(-1, logits.shape[-1]), labels.view(-1), reduction="none", ignore_index=-100
        )
    if num_items_in_batch is None:
        return losses.sum() / (labels != -100).sum().clamp(min=1)
    return losses.sum() / num_items_in_batch


def _is_sequence_classifier(model: nn.Module) -> bool:
    from .models import task_of

    config = getattr(model, "config", None)
    return task_of(model) == "sequence-classification" and getattr(config, "problem_type", None) in (
        None,
        "single_label_classification",
        "regression",
    )


def load_teacher(recipe: Recipe, student: nn.Module) -> nn.Module:
    """The recipe's ``teacher:``, with the student's head class (causal LM teaches causal LM)."""
    from .models import load_model, task_of

    t = recipe.teacher
    return load_model(t.name_or_path, task_of(student), dtype=t.dtype, key="teacher.name_or_path")


class LiteTrainerMixin:
    """What every Lite trainer adds to its transformers/TRL base class.

    Args:
        recipe: path, YAML text, dict, list of modifier dicts or parsed ``Recipe``; defaults to
            ``args.recipe``. Of a full recipe, the script's own model, data and TrainingArguments win:
            ``model.init_from_teacher`` is applied to the model passed in; other ``model``, ``data``,
            ``training`` and ``export`` keys are reported in one warning as not used here.
        teacher_model: teacher for the ``distillation`` modifier (overrides the recipe's ``teacher:``).
        calibration_dataset: data for one-shot modifiers (Wanda, SparseGPT, GPTQ), which compress at
            train begin: a (samples, seq_len) tensor of token ids, a dataset or a list of dicts with
            ``input_ids``. Default: the recipe's ``calibration.source`` when set, else the first
            ``calibration.samples`` (32) rows of ``train_dataset``, padded by the data collator.
        export_checkpoints: also write ``checkpoint-N/export/`` with the model as it would be exported at
            that step, so a checkpoint (and ``load_best_model_at_end``'s pick) deploys; default: the
            recipe's ``export.checkpoints``.
        pipeline: set by :func:`hf_lite.run_recipe`, which has already built the model from the recipe's
            ``model`` section and honours ``data``/``training``/``export`` itself.
        All other arguments are the base trainer's.
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        args: TrainingArguments | None = None,
        *pos: Any,
        recipe: str | os.PathLike | dict | list | Recipe | None = None,
        teacher_model: nn.Module | None = None,
        calibration_dataset: Any = None,
        export_checkpoints: bool | None = None,
        pipeline: bool = False,
        **kwargs: Any,
    ):
        if pos:
            raise TypeError(f"{type(self).__name__} takes keyword arguments after `model` and `args`")
        if recipe is None:
            recipe = getattr(args, "recipe", None)  # the Lite*Arguments / LiteSFTConfig field
        parsed = None if recipe is None else recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
        self.recipe = parsed
        self.session = CompressionSession(parsed.build_modifiers() if parsed else [])
        if parsed is not None and model is not None and not pipeline:
            model = apply_model_section(
                model, parsed, type(self).__name__, kwargs.get("train_dataset"), self._ranking_collator(kwargs)
            )
        teacher_model = self._resolve_teacher(parsed, model, teacher_model)
        self.teacher = teacher_model
        self.session.ctx.teacher = teacher_model
        if model is not None:
            model = self.session.initialize(model)
            if parsed is not None:  # a model the export formats cannot take: refused before training
                from .deploy import check_model

                check_model(model, parsed.export.formats, self.session.modifiers)
        if "compute_loss_func" not in kwargs and model is not None and _is_sequence_classifier(model):
            kwargs["compute_loss_func"] = sequence_classification_loss
        self.compression = CompressionCallback(
            session=self.session,
            recipe=parsed,
            calibration_dataset=calibration_dataset,
            export_checkpoints=export_checkpoints,
            owned=True,
        )
        kwargs["callbacks"] = list(kwargs.get("callbacks") or []) + [self.compression]
        super().__init__(model=model, args=args, **kwargs)
        self.compression.trainer = self
        self.compression.check_calibration_source(self.train_dataset, self.processing_class)
        if self.teacher is not None:
            if not self.is_fsdp_enabled:  # under FSDP2 it is sharded at train begin, moving only its shards
                self.teacher.to(self.args.device)
            self.teacher.eval().requires_grad_(False)
        self._term_sums: dict[str, torch.Tensor] = {}  # on device: no host sync per step
        self._term_count = 0
        # looked up once, not per step
        self._teacher_modifier = self.session.teacher_modifier
        self._task_weight = self.session.task_loss_weight

    @staticmethod
    def _ranking_collator(kwargs: dict) -> Any:
        """The collator the Trainer will batch with (its own default when none is passed)."""
        from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase, default_data_collator

        if kwargs.get("data_collator") is not None:
            return kwargs["data_collator"]
        tok = kwargs.get("processing_class")
        return DataCollatorWithPadding(tok) if isinstance(tok, PreTrainedTokenizerBase) else default_data_collator

    def _resolve_teacher(self, recipe: Recipe | None, model: nn.Module | None, teacher: nn.Module | None):
        wanted = self.session.teacher_modifier is not None
        if teacher is not None or recipe is None or recipe.teacher is None:
            if teacher is not None and not wanted:
                logger.warning("hf_lite: teacher_model is set but no modifier uses a teacher (add a distillation one)")
            return teacher
        if not wanted:
            if recipe.data.response_source != "teacher":  # else it wrote the training answers, and is done
                logger.warning(
                    "hf_lite: the recipe's teacher: is not loaded; no modifier uses it (add a distillation one)"
                )
            return None
        if model is None:
            raise RecipeError("teacher: the teacher's head follows the student's; pass model= to the trainer")
        return load_teacher(recipe, model)

    @property
    def final_model(self) -> nn.Module:
        """The model after ``finalize`` (merged, converted, shrunk); ``self.model`` before training ends."""
        return self.compression.final_model if self.compression.final_model is not None else self.model

    def calibrate(self, calibration_data: Any = None) -> dict[str, float]:
        """Run the one-shot modifiers now (they otherwise run at train begin). Returns wall times."""
        return self.compression.calibrate(
            self.model, self.processing_class, self.train_dataset, self.data_collator, calibration_data
        )

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """After training, what ``hf-lite run`` exports (the modifiers' format, grid files, the adapter
        next to a merged model); before it, and for checkpoints, the base trainer's save."""
        if _internal_call or not self.session.finalized:
            return super().save_model(output_dir, _internal_call)
        output_dir = output_dir or self.args.output_dir
        export = self.recipe.export if self.recipe is not None else None
        # every rank calls this (the Trainer does): sharded weights are gathered, the main process writes
        self.session.export(self.model, output_dir, self.processing_class, export, write=self.args.should_save)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self.session.has_loss or not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        extra = {k: True for k in self.session.needs_outputs}
        loss, outputs = self._task_loss(model, {**inputs, **extra}, num_items_in_batch)
        teacher_outputs = None
        if self.teacher is not None:
            teacher_outputs = self._teacher_modifier.teacher_forward(self.teacher, inputs, extra)
        terms = self.session.loss_terms(outputs, inputs, teacher_outputs)
        if terms:
            loss = loss * self._task_weight + self._scale(sum(terms.values()), inputs, num_items_in_batch)
            for k, v in terms.items():
                self._term_sums[k] = self._term_sums.get(k, 0.0) + v.detach()
            self._term_count += 1
        return (loss, outputs) if return_outputs else loss

    def _task_loss(self, model, inputs, num_items_in_batch) -> tuple[torch.Tensor, Any]:
        """The base trainer's loss and the model outputs (with logits) the loss terms read."""
        return super().compute_loss(model, inputs, True, num_items_in_batch)

    def _scale(self, term: torch.Tensor, inputs: dict[str, Any], num_items_in_batch: Any) -> torch.Tensor:
        """Give a per-item-mean term the normalisation the Trainer applies to its own loss."""
        scaled_by_trainer = (self.model_accepts_loss_kwargs and num_items_in_batch is not None) or (
            self.compute_loss_func is not None
        )
        if not scaled_by_trainer or num_items_in_batch is None or "labels" not in inputs:
            return term  # the Trainer divides by the accumulation steps itself
        labels = inputs["labels"][..., 1:] if self._loss_shifts_labels else inputs["labels"]
        local = labels.ne(-100).sum()
        term = term * local / num_items_in_batch
        if self.args.average_tokens_across_devices:
            term = term * self.accelerator.num_processes
        return term

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self._term_count and "loss" in logs:
            for k, v in self._term_sums.items():
                v = torch.as_tensor(v, device=self.args.device, dtype=torch.float32)
                if self.accelerator.num_processes > 1:  # log the mean over ranks, like the Trainer's loss
                    v = self.accelerator.reduce(v, reduction="mean")
                logs[f"loss/{k}"] = round(float(v) / self._term_count, 6)
            self._term_sums, self._term_count = {}, 0
        if self.session.modifiers:
            logs.update(self.session.stats())
        super().log(logs, start_time)


class LiteTrainer(LiteTrainerMixin, Trainer):
    """Drop-in ``transformers.Trainer`` that runs an hf_lite recipe (see :class:`LiteTrainerMixin`)."""


class LiteSeq2SeqTrainer(LiteTrainerMixin, Seq2SeqTrainer):
    """Drop-in ``transformers.Seq2SeqTrainer`` (summarization, translation) that runs an hf_lite recipe."""


#: recipe sections a script's own objects replace, what replaces them, and the keys of them that still act
SCRIPT_OWNED = {
    "model": ("the model passed in", {"init_from_teacher"}),
    "data": ("the datasets passed in", set()),
    "training": ("the TrainingArguments", set()),
    "export": ("your own save_model / push_to_hub calls", {"checkpoints", "save_adapter", "formats", "gguf_type"}),
    "generation": ("your own hf_lite.generation.evaluate_generation calls", set()),
}


def apply_model_section(
    model: nn.Module, recipe: Recipe, where: str, train_dataset: Any = None, data_collator: Any = None
) -> nn.Module:
    """What a trainer in a user's script does with a full recipe's ``model``/``data``/``training``/
    ``export`` sections: ``model.init_from_teacher`` builds the student from the model passed in (a
    ``keep: N`` cut ranked on the first rows of ``train_dataset``); every other key is named in one
    warning (the script's own objects win)."""
    if recipe.model.init_from_teacher:
        from .distillation.student import student_from_spec

        model, _ = student_from_spec(model, recipe.model.init_from_teacher, train_dataset, data_collator)
    ignored = []
    for section, (instead, used) in SCRIPT_OWNED.items():
        keys = recipe.raw.get(section) or {}
        names = [k for k in keys if k not in used] if isinstance(keys, dict) else []
        if names:
            ignored.append(f"{section}.{{{', '.join(names)}}} ({instead} are used)")
    if ignored:
        logger.warning(
            "hf_lite: %s uses the recipe's modifiers, teacher, calibration, model.init_from_teacher and "
            "export.checkpoints/save_adapter/formats/gguf_type; "
            "ignored here: %s. `hf-lite run` reads them.",
            where,
            "; ".join(ignored),
        )
    return model


__all__ = [
    "LiteSeq2SeqTrainer",
    "LiteSeq2SeqTrainingArguments",
    "LiteTrainer",
    "LiteTrainerMixin",
    "LiteTrainingArguments",
    "apply_model_section",
    "sequence_classification_loss",
]
