"""Writing results: safetensors + config that plain transformers loads, recipe, report, model card.

Nothing already written is overwritten without asking: a non-empty output folder is an error unless
``export.overwrite: true`` (or ``--overwrite``).
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

from torch import nn

from .core.settings import RecipeError


def prepare_output_dir(folder: str, overwrite: bool) -> None:
    """Refuse a non-empty folder unless ``overwrite`` (checked before any training starts)."""
    if os.path.isdir(folder) and os.listdir(folder):
        if not overwrite:
            raise RecipeError(
                f"export.output_dir {folder!r} exists and is not empty; choose another folder "
                "(--output-dir DIR) or allow replacing it (--overwrite / export.overwrite: true)"
            )
        shutil.rmtree(folder)
    os.makedirs(folder, exist_ok=True)


def save_model(model: nn.Module, folder: str, tokenizer: Any = None) -> None:
    """Plain safetensors; peft wrappers, tied weights and configs handled by ``save_pretrained``."""
    os.makedirs(folder, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)


def write_json(path: str, data: dict[str, Any]) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=2, default=str)
