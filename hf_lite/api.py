"""Python entry points: ``prepare_model``, ``run_recipe`` (what ``hf-lite run`` does)."""

from __future__ import annotations

import logging
import os
import platform
import time
from typing import Any

import torch
from torch import nn

from .core.recipe import Recipe, load_recipe
from .core.session import CompressionSession

logger = logging.getLogger(__name__)
#: causal-LM reports end with a greedy continuation of this prompt (a quick look at what compression did)
SAMPLE_PROMPT = "The history of the city begins"


def prepare_model(model: nn.Module, recipe: Any) -> tuple[nn.Module, CompressionSession]:
    """Initialize a recipe's modifiers on ``model`` before ``Trainer(...)`` is built.

    Returns the (possibly wrapped or shrunk) model and the session to hand to
    ``CompressionCallback(session=session)``. Needed for modifiers that replace the model object (LoRA,
    ``model.init_from_teacher``) when you keep your own ``Trainer``; the Lite trainers do this for you.
    """
    from .trainer import apply_model_section

    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    session = CompressionSession(recipe.build_modifiers())
    model = apply_model_section(model, recipe, "prepare_model")
    return session.initialize(model), session


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("hf_lite", "torch", "transformers", "accelerate", "peft", "bitsandbytes", "datasets"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _training_args(recipe: Recipe, output_dir: str):
    from transformers import TrainingArguments

    kwargs: dict[str, Any] = {
        "report_to": "none",
        "save_strategy": "no",
        "logging_steps": 20,
        "disable_tqdm": True,
        "seed": 0,
        "data_seed": 0,
        "use_cpu": not torch.cuda.is_available(),
        "per_device_eval_batch_size": 64,
    }
    kwargs.update(recipe.training)
    return TrainingArguments(output_dir=os.path.join(output_dir, "checkpoints"), **kwargs)


def _build_model(recipe: Recipe):
    from .models import load_model, load_tokenizer

    m = recipe.model
    tokenizer = load_tokenizer(m.name_or_path)
    num_labels = m.num_labels if m.task == "sequence-classification" else None
    model = load_model(m.name_or_path, m.task, num_labels=num_labels, dtype=m.dtype)
    if m.init_from_teacher:
        from .distillation.student import student_from_teacher

        model = student_from_teacher(model, m.init_from_teacher["layers"])
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _datasets(recipe: Recipe, tokenizer):
    from .data import causal_lm_datasets, classification_datasets

    if recipe.model.task == "causal-lm":
        return causal_lm_datasets(recipe.data, tokenizer)
    return classification_datasets(recipe.data, tokenizer)


class _Run:
    """One ``hf-lite run``: the recipe, the trainer over the session, and what it measured. Each step is
    a method of a few lines over the same trainer/session API a user's script has."""

    def __init__(self, recipe: Recipe, out: str):
        self.recipe, self.out = recipe, out
        self.causal = recipe.model.task == "causal-lm"
        self.timings: dict[str, float] = {}
        self.metrics: dict[str, dict[str, float]] = {}

    def timed(self, key: str, fn, *args):
        t = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.timings[key] = time.perf_counter() - t

    def load(self) -> None:
        from transformers import DataCollatorWithPadding, default_data_collator

        from .metrics import classification_metrics
        from .trainer import LiteTrainer

        model, self.tokenizer = _build_model(self.recipe)
        self.train_ds, self.eval_ds = _datasets(self.recipe, self.tokenizer)
        self.trainer = LiteTrainer(
            model=model,
            args=_training_args(self.recipe, self.out),
            recipe=self.recipe,
            pipeline=True,
            train_dataset=self.train_ds,
            eval_dataset=self.eval_ds,
            processing_class=self.tokenizer,
            data_collator=default_data_collator if self.causal else DataCollatorWithPadding(self.tokenizer),
            compute_metrics=None if self.causal else classification_metrics,
        )

    def evaluate(self, tag: str) -> None:
        from .metrics import perplexity_from_loss

        if self.eval_ds is None:
            self.metrics[tag] = {}
            return
        metrics = self.timed(f"{tag}_eval_s", self.trainer.evaluate, None, None, tag)
        if self.causal:
            metrics[f"{tag}_perplexity"] = perplexity_from_loss(metrics[f"{tag}_loss"])
        self.metrics[tag] = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}

    def calibrate(self) -> None:
        """One-shot modifiers compress before the recovery fine-tune, so their effect is measured alone."""
        from .oneshot.apply import recipe_calibration

        session = self.trainer.session
        if not session.pending_one_shot:
            return
        data = recipe_calibration(self.recipe, self.tokenizer) if session.requires_calibration else None
        self.timed("oneshot_s", self.trainer.calibrate, data)
        self.evaluate("oneshot")
        self.metrics["after_oneshot"] = self.metrics.pop("oneshot")

    def train(self) -> None:
        # what the fine-tune trains, counted after the one-shot step; the quantizers' scales are not counted
        model = self.trainer.model
        self.trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        self.total = sum(p.numel() for n, p in model.named_parameters() if not n.endswith("weight_qscale"))
        steps = self.recipe.training.get("max_steps", -1)
        epochs = self.recipe.training.get("num_train_epochs", 3.0)
        if self.train_ds is not None and (steps > 0 or (steps in (-1, None) and epochs > 0)):
            result = self.timed("train_s", self.trainer.train)
            self.metrics["train"] = {k: float(v) for k, v in result.metrics.items() if isinstance(v, (int, float))}
        else:
            self.trainer.compression.finalize(self.trainer.model)
        self.final = self.trainer.final_model

    def export(self) -> None:
        session = self.trainer.session
        self.timed("export_s", session.export, self.final, self.out, self.tokenizer, self.recipe.export)
        self.recipe.save(self.out)
        ckpt = os.path.join(self.out, "checkpoints")
        if os.path.isdir(ckpt) and not os.listdir(ckpt):
            os.rmdir(ckpt)

    def report(self) -> dict[str, Any]:
        from .export import write_json
        from .report import model_report

        session = self.trainer.session
        report = {
            "model": self.recipe.model.name_or_path,
            "task": self.recipe.model.task,
            "modifiers": [m.describe() for m in session.modifiers],
            "metrics": self.metrics,
            "compression": model_report(self.final, self.out),
            "trainable_parameters": self.trainable,
            "trainable_fraction": self.trainable / max(self.total, 1),
            "timings_s": {k: round(v, 2) for k, v in self.timings.items()},
            "load_snippet": session.card_snippet(self.recipe.model.task, self.out),
            "versions": versions(),
            "machine": {"cores": os.cpu_count(), "cpu": platform.processor() or platform.machine()},
        }
        if self.causal:
            from .oneshot.evaluate import generation_sample

            greedy = generation_sample(self.final, self.tokenizer, SAMPLE_PROMPT)
            report["generation_sample"] = {"prompt": SAMPLE_PROMPT, "greedy": greedy}
        write_json(os.path.join(self.out, "report.json"), report)
        return report

    def publish(self, report: dict[str, Any]) -> None:
        from .card import write_model_card

        write_model_card(self.out, self.recipe, report)
        e = self.recipe.export
        if e.push_to_hub:
            from .hub import push_folder

            push_folder(self.out, e.hub_repo_id or os.path.basename(os.path.abspath(self.out)), e.private)


def run_recipe(
    recipe: str | os.PathLike | dict | Recipe,
    output_dir: str | None = None,
    overrides: list[str] | None = None,
    overwrite: bool | None = None,
    return_model: bool = False,
) -> dict[str, Any] | tuple[dict[str, Any], nn.Module]:
    """Run a whole job: load, evaluate, calibrate (one-shot), train, finalize, evaluate, export, report.

    Returns the report (also written as ``report.json``), or ``(report, model)`` with
    ``return_model=True``: the compressed model as exported, still in memory.
    """
    from transformers import set_seed

    from .export import prepare_output_dir

    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe, overrides)
    run = _Run(recipe, output_dir or recipe.export.output_dir)
    prepare_output_dir(run.out, recipe.export.overwrite if overwrite is None else overwrite)
    set_seed(int(recipe.training.get("seed", 0)))
    run.timed("load_s", run.load)
    run.evaluate("before")
    run.calibrate()
    run.train()
    run.evaluate("after")
    run.export()
    report = run.report()
    run.publish(report)
    return (report, run.final) if return_model else report
