"""Writing results: safetensors + config that plain transformers loads, recipe, report, model card.

Nothing already written is overwritten without asking: a non-empty output folder is an error unless
``export.overwrite: true`` (or ``--overwrite``), and even then the old folder is replaced only when the
new one is complete (written under a hidden sibling, then renamed into place).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from typing import Any

from torch import nn

from .core.settings import RecipeError


def check_output_dir(folder: str, overwrite: bool) -> None:
    """Refuse a non-empty folder unless ``overwrite`` (checked before any training starts). Nothing is
    deleted here: an existing folder is replaced only once its successor is complete."""
    if os.path.isdir(folder) and os.listdir(folder) and not overwrite:
        raise RecipeError(
            f"export.output_dir {folder!r} exists and is not empty; choose another folder "
            "(--output-dir DIR) or allow replacing it (--overwrite / export.overwrite: true)"
        )
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise RecipeError(f"export.output_dir {folder!r} is a file; choose a folder")


def sibling(folder: str, tag: str) -> str:
    """A hidden folder next to ``folder`` (same file system, so a rename moves it in one step)."""
    path = os.path.abspath(folder)
    return os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{tag}")


def replace_folder(src: str, dst: str) -> None:
    """Move the complete folder ``src`` to ``dst``; an existing ``dst`` is set aside first and removed
    only after the move, so a kill at any point leaves either the old or the new folder intact."""
    old = None
    if os.path.exists(dst):
        old = sibling(dst, f"replaced-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(dst, old)
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    os.rename(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_folder(folder: str, overwrite: bool):
    """Write into a hidden sibling and put it in place of ``folder`` only when the block succeeds."""
    check_output_dir(folder, overwrite)
    stage = sibling(folder, f"staging-{os.getpid()}")
    shutil.rmtree(stage, ignore_errors=True)
    os.makedirs(stage)
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    replace_folder(stage, folder)


def prepare_output_dir(folder: str, overwrite: bool) -> None:
    """Deprecated: use :func:`check_output_dir` and :func:`staged_folder`, which never delete first."""
    import warnings

    warnings.warn("prepare_output_dir deletes before writing; use staged_folder", DeprecationWarning, stacklevel=2)
    check_output_dir(folder, overwrite)
    if os.path.isdir(folder) and os.listdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder, exist_ok=True)


def save_model(model: nn.Module, folder: str, tokenizer: Any = None, state_dict: dict | None = None) -> None:
    """Plain safetensors; peft wrappers, tied weights and configs handled by ``save_pretrained``.
    ``state_dict``: the weights to write instead of the model's own (gathered from shards)."""
    os.makedirs(folder, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True, state_dict=state_dict)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)


def write_json(path: str, data: dict[str, Any]) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=2, default=str)
