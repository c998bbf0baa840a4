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

    Returns the (possibly wrapped) model and the session to hand to
    ``CompressionCallback(session=session)``. Needed for modifiers that wrap the model (LoRA) when
    you keep your own ``Trainer``; ``LiteTrainer`` does this for you.
    """
    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    session = CompressionSession(recipe.build_modifiers())
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


def run_recipe(
    recipe: str | os.PathLike | dict | Recipe,
    output_dir: str | None = None,
    overrides: list[str] | None = None,
    overwrite: bool | None = None,
    return_model: bool = False,
) -> dict[str, Any] | tuple[dict[str, Any], nn.Module]:
    """Run a whole job: load, evaluate, compress/train, evaluate, export, report.

    Returns the report (also written as ``report.json``), or ``(report, model)`` with
    ``return_model=True``: the compressed model as exported, still in memory.
    """
    from transformers import DataCollatorWithPadding, default_data_collator, set_seed

    from .export import prepare_output_dir, save_model, write_json
    from .metrics import classification_metrics, perplexity_from_loss
    from .report import model_report
    from .trainer import LiteTrainer

    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe, overrides)
    out = output_dir or recipe.export.output_dir
    prepare_output_dir(out, recipe.export.overwrite if overwrite is None else overwrite)
    set_seed(int(recipe.training.get("seed", 0)))
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    model, tokenizer = _build_model(recipe)
    train_ds, eval_ds = _datasets(recipe, tokenizer)
    timings["load_s"] = time.perf_counter() - t0
    causal = recipe.model.task == "causal-lm"
    args = _training_args(recipe, out)
    trainer = LiteTrainer(
        model=model,
        args=args,
        recipe=recipe,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        data_collator=default_data_collator if causal else DataCollatorWithPadding(tokenizer),
        compute_metrics=None if causal else classification_metrics,
    )

    def evaluate(tag: str) -> dict[str, float]:
        if eval_ds is None:
            return {}
        t = time.perf_counter()
        metrics = trainer.evaluate(metric_key_prefix=tag)
        timings[f"{tag}_eval_s"] = time.perf_counter() - t
        if causal:
            metrics[f"{tag}_perplexity"] = perplexity_from_loss(metrics[f"{tag}_loss"])
        return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}

    metrics = {"before": evaluate("before")}
    oneshot = [m for m in trainer.session.modifiers if getattr(m, "one_shot", False)]
    if oneshot:
        from .oneshot.apply import run_oneshot

        t = time.perf_counter()
        run_oneshot(trainer.model, oneshot, recipe, tokenizer)
        timings["oneshot_s"] = time.perf_counter() - t
        metrics["after_oneshot"] = evaluate("oneshot")
    # what the fine-tune trains, counted after the one-shot step (``recovery: scales`` swaps frozen weights
    # for per-group scales); the scales are not counted in the total
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    total_params = sum(p.numel() for n, p in trainer.model.named_parameters() if not n.endswith("weight_qscale"))
    steps = recipe.training.get("max_steps", -1)
    epochs = recipe.training.get("num_train_epochs", 3.0)
    if train_ds is not None and (steps > 0 or (steps in (-1, None) and epochs > 0)):
        t = time.perf_counter()
        result = trainer.train()
        timings["train_s"] = time.perf_counter() - t
        metrics["train"] = {k: float(v) for k, v in result.metrics.items() if isinstance(v, (int, float))}
    else:
        trainer.compression.finalize(trainer.model)
    final = trainer.final_model
    metrics["after"] = evaluate("after")

    t = time.perf_counter()
    # the last modifier with its own format (bnb, dynamic int8) writes the folder; otherwise plain safetensors
    exporter = next((m for m in reversed(trainer.session.modifiers) if hasattr(m, "export")), None)
    if exporter is not None:
        exporter.export(final, out, tokenizer)
    else:
        save_model(final, out, tokenizer)
    for m in trainer.session.modifiers:
        if hasattr(m, "write_extras"):
            m.write_extras(out, recipe.export)
    timings["export_s"] = time.perf_counter() - t
    recipe.save(out)
    ckpt = os.path.join(out, "checkpoints")
    if os.path.isdir(ckpt) and not os.listdir(ckpt):
        os.rmdir(ckpt)
    report = {
        "model": recipe.model.name_or_path,
        "task": recipe.model.task,
        "modifiers": [m.describe() for m in trainer.session.modifiers],
        "metrics": metrics,
        "compression": model_report(final, out),
        "trainable_parameters": trainable,
        "trainable_fraction": trainable / max(total_params, 1),
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "load_snippet": next(
            (
                snippet
                for m in reversed(trainer.session.modifiers)
                if hasattr(m, "load_snippet") and (snippet := m.load_snippet(recipe.model.task, out))
            ),
            None,
        ),
        "versions": versions(),
        "machine": {"cores": os.cpu_count(), "cpu": platform.processor() or platform.machine()},
    }
    if causal and hasattr(final, "generate"):
        from .oneshot.evaluate import generation_sample

        report["generation_sample"] = {
            "prompt": SAMPLE_PROMPT,
            "greedy": generation_sample(final, tokenizer, SAMPLE_PROMPT),
        }
    write_json(os.path.join(out, "report.json"), report)
    from .card import write_model_card

    write_model_card(out, recipe, report)
    if recipe.export.push_to_hub:
        from .hub import push_folder

        push_folder(out, recipe.export.hub_repo_id or os.path.basename(os.path.abspath(out)), recipe.export.private)
    return (report, final) if return_model else report
