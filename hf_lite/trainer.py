"""LiteTrainer: a ``transformers.Trainer`` that adds modifier loss terms in ``compute_loss``.

It overrides nothing else of the training loop: the modifiers run through
:class:`~hf_lite.callback.CompressionCallback`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Trainer, TrainingArguments

from .callback import CompressionCallback
from .core.recipe import Recipe, load_recipe
from .core.session import CompressionSession


@dataclasses.dataclass
class LiteTrainingArguments(TrainingArguments):
    """``TrainingArguments`` plus ``--recipe`` for ``HfArgumentParser`` scripts."""

    recipe: str | None = dataclasses.field(
        default=None, metadata={"help": "hf_lite recipe YAML (its `modifiers:` are applied during training)"}
    )


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
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    return type(base).__name__.endswith("ForSequenceClassification") and getattr(config, "problem_type", None) in (
        None,
        "single_label_classification",
        "regression",
    )


class LiteTrainer(Trainer):
    """Drop-in ``Trainer`` that runs an hf_lite recipe.

    Args:
        recipe: path, YAML text, dict or parsed ``Recipe``; defaults to ``args.recipe``.
        teacher_model: teacher for the ``distillation`` modifier (overrides the recipe's ``teacher:``).
        All other arguments are ``transformers.Trainer``'s.
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        args: TrainingArguments | None = None,
        *pos: Any,
        recipe: str | os.PathLike | dict | list | Recipe | None = None,
        teacher_model: nn.Module | None = None,
        **kwargs: Any,
    ):
        if pos:
            raise TypeError("LiteTrainer takes keyword arguments after `model` and `args`")
        if recipe is None and args is not None:
            recipe = getattr(args, "recipe", None)
        parsed = None
        if recipe is not None:
            parsed = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
        self.session = CompressionSession(parsed.build_modifiers() if parsed else [])
        if teacher_model is None and parsed is not None and parsed.teacher is not None:
            from .models import load_model

            teacher_model = load_model(parsed.teacher.name_or_path, parsed.model.task, dtype=parsed.teacher.dtype)
        self.teacher = teacher_model
        self.session.ctx.teacher = teacher_model
        if model is not None:
            model = self.session.initialize(model)
        if "compute_loss_func" not in kwargs and model is not None and _is_sequence_classifier(model):
            kwargs["compute_loss_func"] = sequence_classification_loss
        self.compression = CompressionCallback(session=self.session)
        kwargs["callbacks"] = list(kwargs.get("callbacks") or []) + [self.compression]
        super().__init__(model=model, args=args, **kwargs)
        self.compression.trainer = self
        if self.teacher is not None:
            self.teacher.to(self.args.device).eval()
            self.teacher.requires_grad_(False)
        self._term_sums: dict[str, torch.Tensor] = {}  # on device: no host sync per step
        # the distillation modifier may serve cached teacher logits; looked up once, not per step
        self._teacher_forward = next(
            (m.teacher_forward for m in self.session.modifiers if hasattr(m, "teacher_forward")), None
        )
        self._term_count = 0

    @property
    def final_model(self) -> nn.Module:
        """The model after ``finalize`` (merged, converted, shrunk); ``self.model`` before training ends."""
        return self.compression.final_model if self.compression.final_model is not None else self.model

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self.session.has_loss or not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        extra = {k: True for k in self.session.needs_outputs}
        loss, outputs = super().compute_loss(model, {**inputs, **extra}, True, num_items_in_batch)
        teacher_outputs = None
        if self.teacher is not None:
            forward = self._teacher_forward
            with torch.no_grad():
                if forward is not None:
                    teacher_outputs = forward(self.teacher, inputs, extra)
                else:
                    t_inputs = {k: v for k, v in inputs.items() if k != "labels"}
                    teacher_outputs = self.teacher(**t_inputs, **extra)
        terms = self.session.loss_terms(outputs, inputs, teacher_outputs)
        if terms:
            loss = loss * self._task_weight() + self._scale(sum(terms.values()), inputs, num_items_in_batch)
            for k, v in terms.items():
                self._term_sums[k] = self._term_sums.get(k, 0.0) + v.detach()
            self._term_count += 1
        return (loss, outputs) if return_outputs else loss

    def _task_weight(self) -> float:
        weight = 1.0
        for m in self.session.modifiers:
            weight *= getattr(m, "task_loss_weight", 1.0)
        return weight

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
