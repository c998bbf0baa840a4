"""Python entry points: ``prepare_model``, ``run_recipe`` (what ``hf-lite run`` does)."""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import time
from typing import Any

import torch
from torch import nn

from .card import card_name
from .core.distributed import is_main
from .core.recipe import Recipe, load_recipe
from .core.session import CompressionSession
from .core.settings import RecipeError

logger = logging.getLogger(__name__)
#: causal-LM reports end with a greedy continuation of this prompt (a quick look at what compression did)
SAMPLE_PROMPT = "The history of the city begins"


def prepare_model(
    model: nn.Module, recipe: Any, train_dataset: Any = None, data_collator: Any = None
) -> tuple[nn.Module, CompressionSession]:
    """Initialize a recipe's modifiers on ``model`` before ``Trainer(...)`` is built.

    Returns the (possibly wrapped or shrunk) model and the session to hand to
    ``CompressionCallback(session=session)``. Needed for modifiers that replace the model object (LoRA,
    ``model.init_from_teacher``) when you keep your own ``Trainer``; the Lite trainers do this for you.
    ``train_dataset`` and ``data_collator``: the rows ``init_from_teacher: {keep: N}`` ranks the cuts on.
    """
    from .trainer import apply_model_section

    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    session = CompressionSession(recipe.build_modifiers())
    model = apply_model_section(model, recipe, "prepare_model", train_dataset, data_collator)
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
    from transformers import Seq2SeqTrainingArguments, TrainingArguments

    kwargs: dict[str, Any] = {
        "report_to": "none",
        # checkpoints at every quarter of the run, the last two kept: a killed run resumes (--resume)
        "save_strategy": "steps",
        "save_steps": 0.25,
        "save_total_limit": 2,
        "logging_steps": 20,
        "disable_tqdm": True,
        "seed": 0,
        "data_seed": 0,
        "use_cpu": not torch.cuda.is_available(),
        "per_device_eval_batch_size": 64,
    }
    kwargs.update(recipe.training)
    cls = Seq2SeqTrainingArguments if recipe.model.task == "seq2seq" else TrainingArguments
    return cls(output_dir=output_dir, **kwargs)


def _check_model_source(name: str, key: str) -> None:
    from .data import looks_local
    from .models import ALIASES, _package_folder

    if name in ALIASES:
        try:
            _package_folder(ALIASES[name].module, ALIASES[name].package)
        except FileNotFoundError as e:
            raise RecipeError(f"{key}: {e}") from None
        return
    path = os.path.expanduser(name)
    if os.path.isdir(path):
        if not any(os.path.isfile(os.path.join(path, f)) for f in ("config.json", "adapter_config.json")):
            raise RecipeError(f"{key}: {name!r} is a folder without config.json; give a saved model folder")
        return
    if looks_local(name) or os.path.exists(path) or name.count("/") > 1:
        raise RecipeError(f"{key}: {name!r} does not exist (looked in {os.path.abspath(path)!r})")
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        raise RecipeError(
            f"{key}: {name!r} is not a local folder or offline alias, and the Hub is off (HF_HUB_OFFLINE=1); "
            f"run the recipe that writes it first, or fix the path (looked in {os.path.abspath(path)!r})"
        )


def _check_data_source(source: str | None, key: str, fallback: str | None) -> None:
    from .data import looks_local

    if source is None or not looks_local(source):
        return
    path = os.path.expanduser(source)
    if os.path.isdir(path):
        raise RecipeError(f"{key}: {source!r} is a folder; give a csv/tsv/json/jsonl/txt file")
    if not os.path.exists(path) and not fallback:
        raise RecipeError(
            f"{key}: {source!r} does not exist (looked in {os.path.abspath(path)!r}); fix the path or set "
            "data.fallback to a Hub dataset id"
        )


def preflight(recipe: Recipe, output_dir: str | None = None) -> None:
    """Everything ``hf-lite run`` can check before loading anything: the model and teacher resolve, data
    files exist, a distillation modifier has a teacher, the training arguments build, something trains.
    ``hf-lite validate`` runs the same checks."""
    if "model" not in recipe.raw:
        raise RecipeError("model: missing; a recipe for hf-lite run names its model: model: {name_or_path: ...}")
    _check_model_source(recipe.model.name_or_path, "model.name_or_path")
    if recipe.teacher is not None:
        _check_model_source(recipe.teacher.name_or_path, "teacher.name_or_path")
    d = recipe.data
    _check_data_source(d.train, "data.train", d.fallback)
    _check_data_source(d.eval, "data.eval", d.fallback)
    if recipe.calibration is not None:
        _check_data_source(recipe.calibration.source, "calibration.source", None)
    modifiers = recipe.build_modifiers()
    needs = [m.type_name for m in modifiers if m.needs_teacher]
    if needs and recipe.teacher is None:
        raise RecipeError(f"teacher: {needs} need a teacher; add teacher: {{name_or_path: ...}}")
    if d.train is None and _trains(recipe):
        raise RecipeError(
            "data.train: not set, so nothing would train; set data.train, or training.max_steps: 0 for a "
            "run without training (one-shot methods)"
        )
    if any(m.requires_calibration for m in modifiers) and not (recipe.calibration and recipe.calibration.source):
        if d.train is None:
            raise RecipeError("calibration.source: one-shot methods need calibration text; set it or data.train")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        try:
            _training_args(recipe, output_dir or tmp)
        except Exception as e:  # TrainingArguments' own checks: any of them is about the recipe's values
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise RecipeError(f"training: {first}") from None


def _trains(recipe: Recipe) -> bool:
    steps = recipe.training.get("max_steps", -1)
    epochs = recipe.training.get("num_train_epochs", 3.0)
    return steps > 0 or (steps == -1 and epochs > 0)


def _build_model(recipe: Recipe, labels=None, train_ds=None, collator=None) -> tuple[nn.Module, list[int] | None]:
    """The model of the recipe, and the teacher blocks a student keeps (``model.init_from_teacher``; with
    ``keep`` they are ranked on the first rows of ``train_ds``). A classifier gets the classes found in
    the data (``labels``)."""
    from .models import load_model

    m = recipe.model
    overrides = labels.config() if labels is not None and m.task == "sequence-classification" else {}
    model = load_model(m.name_or_path, m.head, dtype=m.dtype, **overrides)
    if not m.init_from_teacher:
        return model, None
    from .distillation.student import student_from_spec

    return student_from_spec(model, m.init_from_teacher, train_ds, collator)


class _Run:
    """One ``hf-lite run``: the recipe, the trainer over the session, and what it measured. Each step is
    a method of a few lines over the same trainer/session API a user's script has.

    Everything is written under a hidden work folder next to the output folder (``.NAME.hf_lite-run``:
    the recipe, ``checkpoints/``, the export being written); the finished export replaces the output
    folder in one rename at the end, and the work folder is removed."""

    def __init__(self, recipe: Recipe, out: str):
        from .export import sibling

        self.recipe, self.out = recipe, out
        self.work = sibling(out, "hf_lite-run")
        self.checkpoints = os.path.join(self.work, "checkpoints")
        self.stage = os.path.join(self.work, os.path.basename(os.path.abspath(out)))
        self.causal = recipe.model.head == "causal-lm"
        self.chat = recipe.model.task == "chat"
        self.seq2seq = recipe.model.task == "seq2seq"
        self.generative = self.chat or self.seq2seq  # scored by generating (generation: settings)
        self.eval_conversations: list | None = None
        self.answers: dict[str, list[str]] = {}  # tag -> generated answers to the first eval rows
        self.prompt_answers: dict[str, list[str]] = {}  # tag -> answers to generation.prompts
        self.timings: dict[str, float] = {}
        self.metrics: dict[str, dict[str, float]] = {}
        self.resume_from: str | None = None
        self.student_layers: list[int] | None = None
        self.display = card_name(recipe, out)  # a published card names no local folders

    def timed(self, key: str, fn, *args):
        t = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.timings[key] = time.perf_counter() - t

    def load(self) -> None:
        from transformers import DataCollatorForSeq2Seq, DataCollatorWithPadding, default_data_collator

        from .data import causal_lm_datasets, read_classification, tokenize_classification
        from .metrics import classification_metrics
        from .models import load_tokenizer
        from .trainer import LiteSeq2SeqTrainer, LiteTrainer

        self.tokenizer = load_tokenizer(self.recipe.model.name_or_path)
        d, labels = self.recipe.data, None
        collator = default_data_collator if self.causal else DataCollatorWithPadding(self.tokenizer)
        if self.generative:
            from .chat import chat_dataset, check_chat_tokenizer, read_chat_rows, seq2seq_dataset
            from .generation import check_metrics

            if self.chat:
                check_chat_tokenizer(self.tokenizer)
            check_metrics(self.recipe.generation)
            train, self.eval_conversations = read_chat_rows(d)
            if d.response_source == "teacher" and train is not None:
                train = self.timed("teacher_answers_s", self.teacher_answers, train)
            tokenize = chat_dataset if self.chat else seq2seq_dataset
            self.train_ds = tokenize(train, self.tokenizer, d.max_length, "train")
            self.eval_ds = tokenize(self.eval_conversations, self.tokenizer, d.max_length, "eval")
        elif self.causal:
            self.train_ds, self.eval_ds = causal_lm_datasets(d, self.tokenizer)
        else:  # labels are read and checked before the model loads: its head is sized from them
            train, eval_, labels = read_classification(d, self.recipe.model)
            self.train_ds = tokenize_classification(train, d, self.tokenizer, labels, "train")
            self.eval_ds = tokenize_classification(eval_, d, self.tokenizer, labels, "eval")
        self.labels = labels
        # a chat batch pads its labels with -100 (the collator an encoder-decoder gets needs the model)
        ranking = DataCollatorForSeq2Seq(self.tokenizer) if self.generative else collator
        model, self.student_layers = _build_model(self.recipe, labels, self.train_ds, ranking)
        if getattr(model.config, "pad_token_id", None) is None:
            model.config.pad_token_id = self.tokenizer.pad_token_id
        if self.generative:  # labels padded with -100; an encoder-decoder's decoder inputs made from them
            collator = DataCollatorForSeq2Seq(self.tokenizer, model=model if self.seq2seq else None)
        trainer_class = LiteSeq2SeqTrainer if self.seq2seq else LiteTrainer
        self.trainer = trainer_class(
            model=model,
            args=_training_args(self.recipe, self.checkpoints),
            recipe=self.recipe,
            pipeline=True,
            train_dataset=self.train_ds,
            eval_dataset=self.eval_ds,
            processing_class=self.tokenizer,
            data_collator=collator,
            compute_metrics=None if self.causal or self.generative else classification_metrics,
        )

    def teacher_answers(self, train: list) -> list:
        """Sequence-level KD: the teacher's answers to the training prompts replace the references."""
        from .generation import teacher_answers, teacher_cache_file
        from .models import load_model

        t, g = self.recipe.teacher, self.recipe.generation
        teacher = load_model(t.name_or_path, self.recipe.model.head, dtype=t.dtype, key="teacher.name_or_path")
        return teacher_answers(teacher, self.tokenizer, train, g, teacher_cache_file(t.name_or_path, train, g))

    def evaluate(self, tag: str) -> None:
        from .metrics import perplexity_from_loss

        if self.eval_ds is None:
            self.metrics[tag] = {}
            return
        metrics = self.timed(f"{tag}_eval_s", self.trainer.evaluate, None, None, tag)
        if self.causal or self.seq2seq:  # of the answers only, for chat and seq2seq
            metrics[f"{tag}_perplexity"] = perplexity_from_loss(metrics[f"{tag}_loss"])
        if self.generative:
            metrics.update(self.timed(f"{tag}_generate_s", self.generate, tag))
        self.metrics[tag] = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}

    def generate(self, tag: str) -> dict[str, float]:
        """Answers to the evaluation rows, scored (ROUGE / exact match), and to the fixed prompts."""
        from .generation import evaluate_generation, generate

        g = self.recipe.generation
        model = self.trainer.final_model
        metrics, self.answers[tag] = evaluate_generation(model, self.tokenizer, self.eval_conversations, g, tag)
        if g.prompts:
            self.prompt_answers[tag] = generate(model, self.tokenizer, list(g.prompts), g)[0]
        return metrics

    def calibrate(self) -> None:
        """One-shot modifiers compress before the recovery fine-tune, so their effect is measured alone."""
        from .oneshot.apply import recipe_calibration

        session = self.trainer.session
        if not session.pending_one_shot or self.resume_from:  # a checkpoint holds the one-shot result
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
        if self.train_ds is not None and _trains(self.recipe):
            result = self.timed("train_s", self.trainer.train, self.resume_from)
            self.metrics["train"] = {k: float(v) for k, v in result.metrics.items() if isinstance(v, (int, float))}
        else:
            self.trainer.compression.finalize(self.trainer.model)
        self.final = self.trainer.final_model

    def export(self) -> None:
        import shutil

        if is_main():  # only the rank that writes: another rank's late rmtree would delete rank 0's export
            shutil.rmtree(self.stage, ignore_errors=True)  # a half-written export of a killed run
        session = self.trainer.session
        self.timed("export_s", session.export, self.final, self.stage, self.tokenizer, self.recipe.export)
        if is_main():
            self.recipe.save(self.stage, portable=True)

    def measure_onnx(self) -> dict[str, Any]:
        """Accuracy and latency of the ONNX graphs next to the exported PyTorch folder (rank 0)."""
        from .deploy.onnx import measure_onnx

        collate = self.trainer.data_collator
        rows = [self.eval_ds[i] for i in range(len(self.eval_ds))]
        batches = [collate(rows[i : i + 64]) for i in range(0, len(rows), 64)]
        return measure_onnx(self.stage, os.path.join(self.stage, "onnx"), batches, self.recipe.data.max_length)

    def report(self) -> dict[str, Any]:
        from .export import write_json
        from .report import model_report

        session = self.trainer.session
        report = {
            "model": self.recipe.model.name_or_path,
            "task": self.recipe.model.task,
            "modifiers": [m.describe() for m in session.modifiers],
            "metrics": self.metrics,
            "compression": model_report(self.final, self.stage if is_main() else None),
            "trainable_parameters": self.trainable,
            "trainable_fraction": self.trainable / max(self.total, 1),
            "timings_s": {k: round(v, 2) for k, v in self.timings.items()},
            "resumed_from": os.path.basename(self.resume_from) if self.resume_from else None,
            "load_snippet": session.card_snippet(self.recipe.model.head, self.display),
            "versions": versions(),
            "machine": {"cores": os.cpu_count(), "cpu": platform.processor() or platform.machine()},
        }
        if self.labels is not None and self.labels.names is not None:
            report["labels"] = self.labels.names
        if self.student_layers is not None:  # the teacher's blocks the student kept (chosen, with `keep`)
            report["student_layers"] = self.student_layers
        if is_main():
            report["formats"] = session.formats_written
            if "onnx" in session.formats_written and self.eval_ds is not None:
                report["deployment"] = {"onnx": self.timed("deploy_check_s", self.measure_onnx)}
                report["timings_s"]["deploy_check_s"] = round(self.timings["deploy_check_s"], 2)
        if self.generative:
            from .generation import report_samples

            g = self.recipe.generation
            report["generation"] = {
                "settings": dataclasses.asdict(g),
                "samples": report_samples(self.eval_conversations or [], self.answers, g.samples),
                "prompts": [
                    {"prompt": p, **{tag: a[i] for tag, a in self.prompt_answers.items()}}
                    for i, p in enumerate(g.prompts)
                ],
            }
        elif self.causal:
            from .oneshot.evaluate import generation_sample

            greedy = generation_sample(self.final, self.tokenizer, SAMPLE_PROMPT)
            report["generation_sample"] = {"prompt": SAMPLE_PROMPT, "greedy": greedy}
        if is_main():
            write_json(os.path.join(self.stage, "report.json"), report)
        return report

    def publish(self, report: dict[str, Any]) -> None:
        """The model card, then the finished folder into place; the work folder goes; push if asked."""
        import shutil

        from .card import write_model_card
        from .export import replace_folder

        write_model_card(self.stage, self.recipe, report, repo_id=self.display)
        if self.recipe.export.checkpoints and os.path.isdir(self.checkpoints):  # asked for: kept with the model
            os.rename(self.checkpoints, os.path.join(self.stage, "checkpoints"))
        replace_folder(self.stage, self.out)
        shutil.rmtree(self.work, ignore_errors=True)
        e = self.recipe.export
        if e.push_to_hub:
            from .hub import push_folder

            push_folder(self.out, e.hub_repo_id or os.path.basename(os.path.abspath(self.out)), e.private)


def _begin(run: _Run, overwrite: bool, resume: bool) -> None:
    """Check the output folder and set up the work folder; with ``resume``, find the last complete
    checkpoint of the same recipe. Raises before anything is loaded."""
    import shutil

    from .export import check_output_dir

    check_output_dir(run.out, overwrite)
    saved = os.path.join(run.work, "recipe.yaml")
    if resume:
        if not os.path.isfile(saved):
            raise RecipeError(f"--resume: no interrupted run of {run.out!r} to resume ({run.work} does not exist)")
        differ = recipe_differences(load_recipe(saved).raw, run.recipe.raw)
        if differ:
            raise RecipeError(
                f"--resume: the recipe differs from the interrupted run's at {differ}; run it under another "
                "output folder, or start over with --overwrite"
            )
        run.resume_from = last_checkpoint(run.checkpoints)
        if run.resume_from is None:
            logger.warning("hf_lite: --resume: no complete checkpoint in %s yet; starting from step 0", run.checkpoints)
        return
    if os.path.isdir(run.work):
        if not overwrite:
            raise RecipeError(
                f"an interrupted run of {run.out!r} is in {run.work}: continue it with --resume, or start over "
                "with --overwrite"
            )
        shutil.rmtree(run.work)
    os.makedirs(run.work)
    run.recipe.save(run.work)


def last_checkpoint(folder: str) -> str | None:
    """The newest ``checkpoint-N`` whose writing finished (hf_lite's state is written last, on save)."""
    from .core.session import STATE_FILE

    if not os.path.isdir(folder):
        return None
    done = [
        d
        for d in os.listdir(folder)
        if d.startswith("checkpoint-")
        and d.split("-")[-1].isdigit()
        and os.path.isfile(os.path.join(folder, d, "trainer_state.json"))
        and os.path.isfile(os.path.join(folder, d, STATE_FILE))
    ]
    return os.path.join(folder, max(done, key=lambda d: int(d.split("-")[-1]))) if done else None


def recipe_differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys where two raw recipes differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b), key=str)
        return [d for k in keys for d in recipe_differences(a.get(k), b.get(k), f"{prefix}{k}.")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in recipe_differences(x, y, f"{prefix}{i}.")]
    return [] if a == b else [prefix.rstrip(".") or "(recipe)"]


def run_recipe(
    recipe: str | os.PathLike | dict | Recipe,
    output_dir: str | None = None,
    overrides: list[str] | None = None,
    overwrite: bool | None = None,
    return_model: bool = False,
    resume: bool = False,
) -> dict[str, Any] | tuple[dict[str, Any], nn.Module]:
    """Run a whole job: load, evaluate, calibrate (one-shot), train, finalize, evaluate, export, report.

    The output folder appears (or replaces the old one, with ``overwrite``) only when complete. A failed
    or killed run keeps its checkpoints in a hidden work folder next to it; ``resume=True`` continues from
    the last one. Returns the report (also written as ``report.json``), or ``(report, model)`` with
    ``return_model=True``: the compressed model as exported, still in memory.
    """
    from accelerate import PartialState
    from transformers import set_seed

    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe, overrides)
    run = _Run(recipe, output_dir or recipe.export.output_dir)
    preflight(recipe, run.checkpoints)
    state = PartialState()  # under torchrun / accelerate launch: every rank runs this; rank 0 writes files
    if state.is_main_process:
        _begin(run, recipe.export.overwrite if overwrite is None else overwrite, resume)
    state.wait_for_everyone()
    if resume and not state.is_main_process:
        run.resume_from = last_checkpoint(run.checkpoints)
    set_seed(int(recipe.training.get("seed", 0)))
    run.timed("load_s", run.load)
    run.evaluate("before")
    run.calibrate()
    run.train()
    run.evaluate("after")
    run.export()
    report = run.report()
    if state.is_main_process:
        run.publish(report)
    state.wait_for_everyone()
    return (report, run.final) if return_model else report
