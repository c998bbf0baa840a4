"""The recipe: one YAML file that describes a whole job (model, data, training, modifiers, export).

Parsing is strict and happens before anything is loaded: unknown keys, wrong types and out-of-range
values raise :class:`RecipeError` with the field, the value and what is allowed. YAML is read with
``yaml.safe_load`` only.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import re
from typing import Any, Literal

import yaml

from .modifier import Modifier, build_modifier
from .settings import RecipeError, Settings

logger = logging.getLogger(__name__)

TOP_LEVEL_KEYS = (
    "version",
    "model",
    "teacher",
    "data",
    "training",
    "modifiers",
    "calibration",
    "generation",
    "export",
)


@dataclasses.dataclass
class ModelSettings(Settings):
    """Which model to compress."""

    section = "model"
    #: Hub id, local folder, or an offline alias (``minilm-l6``, ``smollm2-135m``)
    name_or_path: str = "minilm-l6"
    #: what the model is trained for: ``sequence-classification``; ``causal-lm`` (plain text in blocks,
    #: perplexity); ``chat`` (a causal LM on prompt/response pairs or conversations rendered with the
    #: tokenizer's chat template, loss on the assistant tokens only, generation metrics); ``seq2seq`` (an
    #: encoder-decoder such as T5/BART on prompt/response pairs, generation metrics)
    task: Literal["sequence-classification", "causal-lm", "chat", "seq2seq"] = "sequence-classification"
    #: number of classes (sequence classification); null: inferred from the training labels
    num_labels: int | None = None
    #: ``regression`` trains one float output (``num_labels: 1``); null: classification
    problem_type: Literal["regression"] | None = None
    #: build a shallower student from this model: ``{layers: [0, 2, 4]}`` keeps those blocks;
    #: ``{keep: 15}`` keeps 15 blocks, choosing the cut that leaves out one contiguous run of blocks with
    #: the lowest loss on the first ``rank_rows`` (default 16) training rows before training;
    #: ``{keep: 15, by: cosine}`` keeps the 15 blocks that change their input most on those rows (lowest
    #: cosine between a block's input and output; any blocks, not one cut); ``by: search`` starts there and
    #: swaps blocks near the cosine boundary while that lowers the loss on those rows
    init_from_teacher: dict | None = None
    #: load weights in this dtype (float32 for CPU training)
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"

    def validate(self) -> None:
        if self.num_labels is not None and self.num_labels < 1:
            self.fail("num_labels", "must be >= 1")
        if self.num_labels == 1 and self.problem_type != "regression":
            self.fail(
                "num_labels", "1 trains a regression; ask for it with problem_type: regression, or remove num_labels"
            )
        if self.problem_type == "regression" and self.num_labels not in (None, 1):
            self.fail("num_labels", "a regression has one output; remove num_labels or set it to 1")
        if self.init_from_teacher is not None:
            spec = self.init_from_teacher
            layers, keep, rows = spec.get("layers"), spec.get("keep"), spec.get("rank_rows", 16)

            def positive(v) -> bool:
                return isinstance(v, int) and not isinstance(v, bool) and v > 0

            picked = (
                set(spec) == {"layers"}
                and isinstance(layers, list)
                and bool(layers)
                and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in layers)
            )
            ranked = (
                "keep" in spec
                and set(spec) <= {"keep", "rank_rows", "by"}
                and positive(keep)
                and positive(rows)
                and spec.get("by", "cut") in ("cut", "cosine", "search")
            )
            if not (picked or ranked):
                self.fail(
                    "init_from_teacher",
                    "expected {layers: [non-negative ints, ...]} (e.g. {layers: [0, 2, 4]}) or {keep: N} "
                    "(optionally with rank_rows: M, and by: cut, cosine or search) to choose N blocks on the training rows",
                )

    @property
    def head(self) -> str:
        """The model class the task loads: a chat model is a causal LM."""
        return "causal-lm" if self.task == "chat" else self.task


@dataclasses.dataclass
class TeacherSettings(Settings):
    """The teacher for distillation."""

    section = "teacher"
    #: Hub id, local folder or offline alias of the (fine-tuned) teacher
    name_or_path: str = ""
    #: teacher weights dtype; bfloat16 halves its memory at a small accuracy cost
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"

    def validate(self) -> None:
        if not self.name_or_path:
            self.fail("name_or_path", "give the teacher's folder or Hub id")


@dataclasses.dataclass
class DataSettings(Settings):
    """Training and evaluation data."""

    section = "data"
    #: Hub dataset id (``name:config`` picks a config, e.g. ``glue:sst2``) or a local csv/tsv/json/jsonl/txt file
    train: str | None = None
    #: same forms as ``train``; for a Hub id the split ``validation`` (or ``test``) is used
    eval: str | None = None
    #: column holding the text
    text_column: str = "sentence"
    #: optional second text column (sentence pairs)
    text_pair_column: str | None = None
    #: column holding the label (classification): integers, or names such as ``sadness``
    label_column: str = "label"
    #: the class names in id order (fixes the order and catches typos); null: integer labels as they
    #: are, names sorted alphabetically
    labels: list[str] | None = None
    #: chat, seq2seq: column with the user's message / the model's input (e.g. a dialogue to summarize)
    prompt_column: str = "prompt"
    #: chat, seq2seq: column with the reference answer the model learns to give
    response_column: str = "response"
    #: chat: column with whole conversations instead (lists of ``{role, content}``, roles system / user /
    #: assistant); every assistant turn is trained. Replaces prompt_column/response_column
    messages_column: str | None = None
    #: chat, seq2seq: the user's message (the encoder's input) built from the prompt column; ``{prompt}`` is
    #: replaced by the row's text (e.g. ``"summarize: {prompt}"`` for T5)
    prompt_template: str = "{prompt}"
    #: chat: a system message put first in every conversation (null: the chat template's own default)
    system_prompt: str | None = None
    #: chat, seq2seq: ``teacher`` replaces each training row's (last) answer by the teacher's greedy answer
    #: to its prompt (sequence-level distillation; needs ``teacher:``), generated once and cached under
    #: ``$HF_LITE_CACHE/teacher_answers``; ``dataset`` trains on the answers in the data
    response_source: Literal["dataset", "teacher"] = "dataset"
    #: tokens per example (classification; chat: longer conversations are left out with a warning;
    #: seq2seq: longer inputs and targets are cut, with a warning) or per block (causal LM)
    max_length: int = 128
    #: keep the first N training rows (null: all)
    max_train_samples: int | None = None
    #: keep the first N evaluation rows (null: all)
    max_eval_samples: int | None = None
    #: Hub dataset used when a local path does not exist (e.g. ``glue:sst2``)
    fallback: str | None = None

    def validate(self) -> None:
        for f in ("train", "eval", "fallback"):
            if getattr(self, f) is not None and not getattr(self, f).strip():
                self.fail(f, "is empty; give a file path or Hub dataset id, or remove the key")
        if self.max_length < 8:
            self.fail("max_length", "must be >= 8")
        import string

        fields = [f for _, f, _, _ in string.Formatter().parse(self.prompt_template) if f is not None]
        if fields != ["prompt"]:
            self.fail("prompt_template", "must contain {prompt} exactly once (and no other {...} fields)")
        for f in ("prompt_column", "response_column", "messages_column"):
            v = getattr(self, f)
            if v is not None and not v.strip():
                self.fail(f, "is empty; give a column name")
        if self.labels is not None and (len(self.labels) < 2 or len(set(self.labels)) != len(self.labels)):
            self.fail("labels", "list two or more distinct class names, in id order")
        for f in ("max_train_samples", "max_eval_samples"):
            v = getattr(self, f)
            if v is not None and v < 1:
                self.fail(f, "must be >= 1 or null")


@dataclasses.dataclass
class CalibrationSettings(Settings):
    """Calibration data for one-shot methods (Wanda, SparseGPT, GPTQ)."""

    section = "calibration"
    #: local text file or Hub dataset id; null uses ``data.train``
    source: str | None = None
    #: number of sequences
    samples: int = 32
    #: tokens per sequence
    seq_len: int = 256
    #: take consecutive chunks from token 0 (``sequential``) or random windows (``random``)
    sampling: Literal["sequential", "random"] = "sequential"
    #: random seed for ``random`` sampling
    seed: int = 0
    #: sequences per forward pass while collecting statistics (memory vs speed)
    batch_size: int = 8
    #: collect each Linear's statistics with the Linears before it in its block already compressed
    #: (q/k/v, then o, then gate/up, then down): one extra pass over the block per stage. Off: one
    #: pass per block, every Linear sees the block's uncompressed inside
    true_sequential: bool = False

    def validate(self) -> None:
        if self.source is not None and not self.source.strip():
            self.fail("source", "is empty; give a text file or Hub dataset id, or remove the key")
        if self.batch_size < 1:
            self.fail("batch_size", "must be >= 1")
        if self.samples < 1:
            self.fail("samples", "must be >= 1")
        if self.seq_len < 8:
            self.fail("seq_len", "must be >= 8")


@dataclasses.dataclass
class GenerationSettings(Settings):
    """How a chat or seq2seq model is evaluated by generating: answers to the evaluation rows scored
    against the references, before and after compression, plus fixed prompts answered both times."""

    section = "generation"
    #: tokens generated at most per answer
    max_new_tokens: int = 64
    #: 1: greedy decoding; more: beam search
    num_beams: int = 1
    #: prompts per ``generate`` call
    batch_size: int = 8
    #: evaluation rows answered for the metrics (the first N; null: all of them)
    max_samples: int | None = 100
    #: ``rouge`` (ROUGE-1/2/L F1, stemmed, needs ``pip install 'hf-lite[generation]'``) and/or
    #: ``exact_match`` (answers equal to the reference after lower-casing and dropping punctuation)
    metrics: list[Literal["rouge", "exact_match"]] = dataclasses.field(default_factory=lambda: ["rouge"])
    #: generated answers of the first N evaluation rows kept in report.json and the model card
    samples: int = 3
    #: user messages answered before and after compression (in report.json and the model card): a
    #: quick look at whether the model kept its chat behaviour
    prompts: list[str] = dataclasses.field(default_factory=list)

    def validate(self) -> None:
        for f in ("max_new_tokens", "num_beams", "batch_size"):
            if getattr(self, f) < 1:
                self.fail(f, "must be >= 1")
        if self.max_samples is not None and self.max_samples < 1:
            self.fail("max_samples", "must be >= 1 or null")
        if self.samples < 0:
            self.fail("samples", "must be >= 0")
        if len(set(self.metrics)) != len(self.metrics):
            self.fail("metrics", "list each metric once")
        if any(not p.strip() for p in self.prompts):
            self.fail("prompts", "has an empty prompt")


#: data keys that only the chat task reads, and those only classification reads
CHAT_DATA_KEYS = (
    "prompt_column",
    "response_column",
    "messages_column",
    "prompt_template",
    "system_prompt",
    "response_source",
)
CLASSIFICATION_DATA_KEYS = ("text_column", "text_pair_column", "label_column", "labels")


#: tasks that train on prompt/response pairs and are scored by generating
GENERATIVE_TASKS = ("chat", "seq2seq")


def _check_task_keys(data: dict[str, Any], task: str) -> None:
    """A data or generation key the task does not read is refused (it would silently do nothing)."""
    given = set(data.get("data") or {})
    if task not in GENERATIVE_TASKS:
        unused = sorted(given & set(CHAT_DATA_KEYS))
        if unused:
            raise RecipeError(
                f"data: {unused} are read by model.task: chat / seq2seq only (the task is {task}); remove them"
            )
        if data.get("generation"):
            raise RecipeError(
                f"generation: read by model.task: chat / seq2seq only (the task is {task}); remove the section"
            )
    else:
        unused = sorted(given & set(CLASSIFICATION_DATA_KEYS))
        if unused:
            raise RecipeError(
                f"data: {unused} are not read by model.task: {task}; use prompt_column / response_column"
                + (" (or messages_column)" if task == "chat" else "")
            )
        if task == "seq2seq" and given & {"messages_column", "system_prompt"}:
            raise RecipeError(
                "data: messages_column / system_prompt need a chat template (model.task: chat); an encoder-decoder "
                "reads prompt_column / response_column"
            )
        if (data.get("data") or {}).get("messages_column") and given & {
            "prompt_column",
            "response_column",
            "prompt_template",
        }:
            raise RecipeError(
                "data.messages_column: whole conversations replace prompt_column / response_column / "
                "prompt_template; remove those"
            )


@dataclasses.dataclass
class ExportSettings(Settings):
    """Where and how the result is written."""

    section = "export"
    #: output folder; must be empty or absent unless ``overwrite`` is true
    output_dir: str = "runs/hf_lite"
    #: replace the contents of an existing non-empty ``output_dir``
    overwrite: bool = False
    #: upload the folder to the Hub after export
    push_to_hub: bool = False
    #: Hub repo id for ``push_to_hub`` (default: the folder name)
    hub_repo_id: str | None = None
    #: create the Hub repo as private
    private: bool = False
    #: also write the LoRA adapter alone (``adapter/``) next to the merged model
    save_adapter: bool = True
    #: each ``checkpoint-N/`` also gets ``export/``: the model as it would be exported at that step
    #: (finalized on a copy: QAT snapped, LoRA merged, structured pruning sliced). Costs one model copy
    #: and one save per checkpoint. ``hf-lite run`` then keeps its checkpoints in ``output_dir/checkpoints``
    #: (otherwise they only serve ``--resume`` and are removed when the run succeeds)
    checkpoints: bool = False
    #: what to write: ``safetensors`` (the output folder itself: plain transformers weights) and deployment
    #: formats, each into its own subfolder: ``compressed-tensors`` (int4/int8 weight-only pack-quantized,
    #: for transformers and vLLM; needs an int-grid quantizer and ``pip install 'hf-lite[deploy]'``), ``onnx``
    #: (sequence classifiers: fp32 and dynamic-int8 graphs for onnxruntime; same extra), ``gguf`` (Llama-
    #: architecture causal LMs for llama.cpp; see ``gguf_type``)
    formats: list[Literal["safetensors", "compressed-tensors", "onnx", "gguf"]] = dataclasses.field(
        default_factory=lambda: ["safetensors"]
    )
    #: GGUF type of the block Linears (format ``gguf``): ``auto`` is the type that holds the recipe's int
    #: grid exactly (symmetric int4 in groups of 32 -> q4_0, int4 g32 with a zero point -> q4_1, symmetric
    #: int8 g32 -> q8_0), else q8_0
    gguf_type: Literal["auto", "f32", "f16", "q8_0", "q4_0", "q4_1"] = "auto"
    #: require the GGUF block weights to be written exactly from the recipe's int grid (its own codes and
    #: scales): a recipe whose grid the chosen ``gguf_type`` cannot hold is refused when it is loaded,
    #: instead of being re-quantized by the gguf package
    gguf_exact: bool = False

    def validate(self) -> None:
        if "safetensors" not in self.formats:
            self.fail("formats", "safetensors is the export every other format is written from; keep it in the list")
        if len(set(self.formats)) != len(self.formats):
            self.fail("formats", "list each format once")
        if self.gguf_type != "auto" and "gguf" not in self.formats:
            self.fail("gguf_type", "is read only when formats lists gguf; add it or remove gguf_type")
        if self.gguf_exact and "gguf" not in self.formats:
            self.fail("gguf_exact", "is read only when formats lists gguf; add it or remove gguf_exact")


@dataclasses.dataclass
class Recipe:
    """A parsed, validated recipe. ``raw`` is the dict it came from (written next to outputs)."""

    raw: dict[str, Any]
    model: ModelSettings
    teacher: TeacherSettings | None
    data: DataSettings
    training: dict[str, Any]
    modifier_specs: list[dict[str, Any]]
    calibration: CalibrationSettings | None
    export: ExportSettings
    #: generation evaluation (tasks chat and seq2seq); None for other tasks
    generation: GenerationSettings | None = None

    def build_modifiers(self) -> list[Modifier]:
        """Fresh modifier objects (runtime state is per run)."""
        return [build_modifier(spec, i) for i, spec in enumerate(self.modifier_specs)]

    def to_yaml(self, portable: bool = False) -> str:
        """The recipe as YAML; ``portable`` shortens absolute local paths to their last part (what a
        published folder should carry), saying so in a comment."""
        if not portable:
            return yaml.safe_dump(self.raw, sort_keys=False)
        raw = copy.deepcopy(self.raw)
        shortened = []
        for section, name in (*PATH_FIELDS, ("export", "output_dir")):
            node = raw.get(section)
            value = node.get(name) if isinstance(node, dict) else None
            if isinstance(value, str) and os.path.isabs(value):
                node[name] = os.path.basename(value.rstrip("/"))
                shortened.append(f"{section}.{name}")
        note = f"# local absolute paths shortened to their last part: {', '.join(shortened)}\n" if shortened else ""
        return note + yaml.safe_dump(raw, sort_keys=False)

    def save(self, folder: str, portable: bool = False) -> str:
        path = os.path.join(folder, "recipe.yaml")
        with open(path, "w") as f:
            f.write(self.to_yaml(portable))
        return path


class RecipeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``5e-5``/``1E-4`` as floats, as YAML 1.2 does (YAML 1.1,
    PyYAML's grammar, needs a dot: ``5.0e-5``; most training configs are written without one)."""


RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _safe_load(stream: Any, where: str) -> Any:
    try:
        return yaml.load(stream, Loader=RecipeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise RecipeError(f"{where}: not valid YAML{at}: {getattr(e, 'problem', None) or e}") from None


def _read(source: str | os.PathLike | dict | list) -> dict[str, Any]:
    if isinstance(source, (dict, list)):
        data: Any = copy.deepcopy(source)
    else:
        text = str(source)
        if os.path.exists(text):
            with open(text) as f:
                data = _safe_load(f, text)
        elif "\n" in text or ":" in text and not text.endswith((".yaml", ".yml")):
            data = _safe_load(text, "recipe")
        else:
            raise RecipeError(f"recipe file {text!r} does not exist")
    if isinstance(data, list):  # a bare list of modifiers
        data = {"modifiers": data}
    if not isinstance(data, dict):
        raise RecipeError(f"a recipe is a mapping with keys {list(TOP_LEVEL_KEYS)}, got {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``training.max_steps=50`` style overrides; values are parsed as YAML scalars."""
    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"--set {item!r}: expected KEY.PATH=VALUE, e.g. training.max_steps=50")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node: Any = data
        for i, part in enumerate(parts[:-1]):
            if isinstance(node, list):
                node = node[int(part)]
            else:
                node = node.setdefault(part, {})
                if node is None:
                    raise RecipeError(f"--set {item!r}: {'.'.join(parts[: i + 1])} is null in the recipe")
        last = parts[-1]
        parsed = _safe_load(value, f"--set {item}")
        if isinstance(node, list):
            node[int(last)] = parsed
        else:
            node[last] = parsed
    return data


def _training_fields() -> set[str]:
    from transformers import TrainingArguments

    return {f.name for f in dataclasses.fields(TrainingArguments) if f.init}


#: TrainingArguments fields with a range the Trainer checks only when it is too late (mid-run)
TRAINING_RANGES = {
    "learning_rate": (0.0, "must be >= 0"),
    "weight_decay": (0.0, "must be >= 0"),
    "num_train_epochs": (0.0, "must be >= 0"),
    "warmup_steps": (0.0, "must be >= 0"),
    "max_grad_norm": (0.0, "must be >= 0"),
    "per_device_train_batch_size": (1, "must be >= 1"),
    "per_device_eval_batch_size": (1, "must be >= 1"),
    "gradient_accumulation_steps": (1, "must be >= 1"),
    "max_steps": (-1, "must be a step count >= 0 (0: no training, e.g. one-shot only), or -1 to use num_train_epochs"),
    "save_total_limit": (1, "must be >= 1 or null"),
}


def _field_types() -> dict[str, Any]:
    import typing

    from transformers import TrainingArguments

    hints = typing.get_type_hints(TrainingArguments)
    return {f.name: hints.get(f.name) for f in dataclasses.fields(TrainingArguments) if f.init}


def _scalar_types(tp: Any) -> tuple[type, ...]:
    import types
    import typing

    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return tuple(t for a in typing.get_args(tp) for t in _scalar_types(a))
    if tp is dict or typing.get_origin(tp) is dict:  # lr_scheduler_kwargs, fsdp_config: a mapping or JSON text
        return (dict,)
    return (tp,) if tp in (int, float, bool, str, type(None)) else ()


def coerce_training(training: dict[str, Any]) -> dict[str, Any]:
    """``training:`` values converted to their TrainingArguments field's type the way HfArgumentParser
    converts command-line strings (``"5e-5"`` -> 5e-05, 3 -> 3.0 for a float field); a value that cannot
    be converted, or is out of range, is a RecipeError naming the key."""
    types_ = _field_types()
    out = {}
    for key, value in training.items():
        allowed = _scalar_types(types_.get(key))
        if allowed and value is None and type(None) not in allowed:
            names = " or ".join(t.__name__ for t in allowed)
            raise RecipeError(f"training.{key}: got null; expected {names} (leave the key out for its default)")
        if allowed and value is not None and not _fits(value, allowed):
            value = _coerce(key, value, allowed)
        if key in TRAINING_RANGES and isinstance(value, (int, float)) and not isinstance(value, bool):
            low, message = TRAINING_RANGES[key]
            if value < low:
                raise RecipeError(f"training.{key}: got {value!r}; {message}")
        out[key] = value
    return out


def _fits(value: Any, allowed: tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # a bool is an int to Python, never to a recipe
        return bool in allowed
    if isinstance(value, int):
        return int in allowed
    return isinstance(value, tuple(t for t in allowed if t is not bool))


def _coerce(key: str, value: Any, allowed: tuple[type, ...]) -> Any:
    for tp in (t for t in (bool, int, float, str) if t in allowed):
        if tp is bool and isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if tp is int and isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            return int(value)
        if tp is float and not isinstance(value, bool) and isinstance(value, (int, str)):
            try:
                return float(value)
            except ValueError:
                continue
        if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    names = " or ".join(t.__name__ for t in allowed if t is not type(None))
    raise RecipeError(f"training.{key}: got {value!r} ({type(value).__name__}); expected {names}")


#: TrainingArguments fields that are gone, and what to use instead
RENAMED_TRAINING = {
    "no_cuda": "use_cpu",
    "evaluation_strategy": "eval_strategy",
    "overwrite_output_dir": "export.overwrite",
}


def _training_section(training: Any) -> dict[str, Any]:
    """The ``training:`` mapping, checked against TrainingArguments' fields and converted to their types."""
    training = {} if training is None else training
    if not isinstance(training, dict):
        raise RecipeError(f"training: expected a mapping of TrainingArguments fields, got {type(training).__name__}")
    bad = sorted(set(training) - _training_fields())
    if bad:
        hints = [f"{b} -> {RENAMED_TRAINING[b]}" for b in bad if b in RENAMED_TRAINING]
        raise RecipeError(
            f"training: unknown TrainingArguments field(s) {bad}"
            + (f" (renamed: {', '.join(hints)})" if hints else "")
            + "; see transformers.TrainingArguments"
        )
    if "output_dir" in training:
        raise RecipeError("training.output_dir: set export.output_dir instead (checkpoints go under it)")
    training = coerce_training(training)
    if training.get("max_steps", -1) > 0 and "num_train_epochs" in training:
        logger.warning(
            "hf_lite: training.num_train_epochs=%s is ignored: training.max_steps=%s decides the length of "
            "training; remove one of the two",
            training["num_train_epochs"],
            training["max_steps"],
        )
    return training


def load_recipe(source: str | os.PathLike | dict | list, overrides: list[str] | None = None) -> Recipe:
    """Parse and validate a recipe (path, YAML text, dict, or a bare list of modifiers)."""
    data = _read(source)
    if overrides:
        data = apply_overrides(data, overrides)
    unknown = sorted(set(data) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise RecipeError(f"recipe: unknown top-level key(s) {unknown}; allowed keys are {list(TOP_LEVEL_KEYS)}")
    version = data.get("version", 1)
    if version != 1:
        raise RecipeError(f"recipe.version: got {version!r}; this hf_lite reads version 1")

    def section(name: str, cls: type[Settings]) -> Any:
        value = data.get(name)
        if value is not None and not isinstance(value, dict):
            raise RecipeError(f"{name}: expected a mapping, got {type(value).__name__}")
        return cls.from_dict(value or {}, section=name)

    training = _training_section(data.get("training"))
    specs = data.get("modifiers")
    specs = [] if specs is None else specs
    if not isinstance(specs, list):
        raise RecipeError(f"modifiers: expected a list of {{type: <name>, ...settings}}, got {specs!r}")
    recipe = Recipe(
        raw=data,
        model=section("model", ModelSettings),
        teacher=section("teacher", TeacherSettings) if data.get("teacher") else None,
        data=section("data", DataSettings),
        training=training,
        modifier_specs=[dict(s) if isinstance(s, dict) else s for s in specs],
        calibration=section("calibration", CalibrationSettings) if data.get("calibration") else None,
        export=section("export", ExportSettings),
    )
    _check_task_keys(data, recipe.model.task)
    if recipe.data.response_source == "teacher" and recipe.teacher is None:
        raise RecipeError("data.response_source: teacher needs a teacher: section (the model whose answers to learn)")
    if recipe.model.task in GENERATIVE_TASKS:
        recipe.generation = section("generation", GenerationSettings)
    modifiers = recipe.build_modifiers()  # validates every modifier's settings now
    from ..deploy import check_formats

    check_formats(recipe.export.formats, modifiers, recipe.model.task, recipe.export)
    if recipe.calibration is not None and not any(m.one_shot for m in modifiers):
        logger.warning(
            "hf_lite: the recipe's calibration: section is not used: no one-shot modifier (wanda, sparsegpt, gptq, "
            "rtn, magnitude) reads calibration data"
        )
    if not isinstance(source, (dict, list)) and os.path.isfile(str(source)):
        _resolve_paths(recipe, os.path.dirname(os.path.abspath(str(source))))
    return recipe


#: (section, field) of every local input path a recipe may name
PATH_FIELDS = (
    ("model", "name_or_path"),
    ("teacher", "name_or_path"),
    ("data", "train"),
    ("data", "eval"),
    ("calibration", "source"),
)


def _resolve_paths(recipe: Recipe, folder: str) -> None:
    """Relative input paths are read from the recipe file's folder when they exist there; otherwise
    they stay relative to the working directory (recipes written for the project root, Hub ids)."""
    for section, name in PATH_FIELDS:
        settings = getattr(recipe, section)
        value = getattr(settings, name, None) if settings is not None else None
        if not value or os.path.isabs(value):
            continue
        candidate = os.path.join(folder, value)
        if os.path.exists(candidate):
            setattr(settings, name, candidate)


def parse_modifiers(source: str | os.PathLike | dict | list | Recipe | None) -> list[Modifier]:
    """Modifiers from a recipe path/text/dict/list (only the ``modifiers`` part is used)."""
    if source is None:
        return []
    recipe = source if isinstance(source, Recipe) else load_recipe(source)
    return recipe.build_modifiers()
