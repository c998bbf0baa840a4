"""Running one-shot modifiers: calibration data, then block-by-block compression.

``apply_recipe_(model, recipe, calibration_dataset)`` is the Python entry point (in place, no
training). The trainers and ``hf-lite run`` go through the same code: ``CompressionSession.calibrate``
calls :func:`run_oneshot` (at train begin, or between ``hf-lite run``'s "before" evaluation and the
optional recovery fine-tune).
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

import torch
from torch import nn

from ..core.modifier import Modifier
from ..core.recipe import CalibrationSettings, Recipe, load_recipe
from ..core.session import CompressionSession
from ..core.settings import RecipeError
from .sequential import run_sequential

logger = logging.getLogger(__name__)


def calibration_token_chunks(
    text: str, tokenizer, samples: int, seq_len: int, sampling: str = "sequential", seed: int = 0
) -> torch.Tensor:
    """(samples, seq_len) token ids: consecutive chunks from token 0, or random windows (seeded)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    need = samples * seq_len if sampling == "sequential" else seq_len + 1
    if len(ids) < need:
        raise RecipeError(
            f"calibration: the text has {len(ids)} tokens; {samples} x {seq_len} needs {need}. "
            "Lower calibration.samples / seq_len or give a longer calibration.source"
        )
    if sampling == "sequential":
        return torch.tensor(ids[: samples * seq_len]).reshape(samples, seq_len)
    rng = random.Random(seed)
    starts = [rng.randrange(0, len(ids) - seq_len) for _ in range(samples)]
    return torch.tensor([ids[s : s + seq_len] for s in starts])


def calibration_batches(data: Any, batch_size: int = 8) -> list[dict[str, torch.Tensor]]:
    """Batches of ``input_ids``/``attention_mask`` from a (n, seq) tensor, a datasets.Dataset or a list of dicts."""
    if isinstance(data, torch.Tensor):
        rows = [{"input_ids": r} for r in data]
    else:
        rows = [dict(r) for r in data]
    if not rows or "input_ids" not in rows[0]:
        raise RecipeError("calibration data: expected rows with 'input_ids' (or a (samples, seq_len) tensor of ids)")
    batches = []
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        ids = torch.stack([torch.as_tensor(r["input_ids"]) for r in chunk])
        mask = (
            torch.stack([torch.as_tensor(r["attention_mask"]) for r in chunk])
            if "attention_mask" in chunk[0]
            else torch.ones_like(ids)
        )
        batches.append({"input_ids": ids, "attention_mask": mask})
    return batches


def recipe_calibration(recipe: Recipe, tokenizer) -> torch.Tensor:
    """The calibration chunks a recipe asks for (``calibration.source``, else ``data.train``)."""
    from ..data import read_text

    cal = recipe.calibration or CalibrationSettings()
    source = cal.source or recipe.data.train
    if source is None:
        raise RecipeError(
            "calibration: one-shot methods need text; set calibration.source (a .txt file or Hub dataset) or data.train"
        )
    if recipe.model.task == "chat" and cal.source is None:  # the training conversations, as the model sees them
        from ..chat import chat_text, read_chat_rows

        text = chat_text(read_chat_rows(recipe.data)[0], tokenizer)
    else:
        text = read_text(source, recipe.data.fallback)
    return calibration_token_chunks(text, tokenizer, cal.samples, cal.seq_len, cal.sampling, cal.seed)


def dataset_calibration(dataset: Any, collator: Any, samples: int, batch_size: int) -> list[dict[str, torch.Tensor]]:
    """Calibration batches from a training set: its first ``samples`` rows (``input_ids`` and, when
    present, ``attention_mask``; labels and text columns dropped), padded by ``collator``."""
    import itertools

    keep = ("input_ids", "attention_mask")
    if hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__"):
        rows = [dataset[i] for i in range(min(samples, len(dataset)))]
    else:  # an IterableDataset: read only what is needed
        rows = list(itertools.islice(iter(dataset), samples))
    rows = [{k: r[k] for k in keep if k in r} for r in rows]
    if not rows or "input_ids" not in rows[0]:
        raise RecipeError(
            "calibration: the training set has no tokenized 'input_ids' to calibrate the one-shot modifiers on; "
            "pass calibration_dataset= (token ids) or set calibration.source in the recipe"
        )
    batches = []
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        batch = collator(chunk) if collator is not None else calibration_batches(chunk, len(chunk))[0]
        batches.append({k: torch.as_tensor(batch[k]) for k in keep if k in batch})
    return batches


def run_oneshot(
    model: nn.Module,
    modifiers: list[Modifier],
    batches: list[dict[str, torch.Tensor]] | None,
    progress: bool = True,
    true_sequential: bool = False,
) -> dict[str, float]:
    """Run one-shot ``modifiers`` (already initialized on ``model``) once, in recipe order, block by block."""
    todo = [m for m in modifiers if m.one_shot and not m.applied]
    if not todo:
        return {}
    t0 = time.perf_counter()
    steps = [m.compression_step() for m in todo]
    if any(m.requires_calibration for m in todo):
        if not batches:
            names = [m.type_name for m in todo if m.requires_calibration]
            raise RecipeError(
                f"{names}: need calibration data; pass calibration_dataset= to the trainer (or apply_recipe_), "
                "or set calibration.source in the recipe"
            )
        device = next(model.parameters()).device
        batches = [{k: v.to(device) for k, v in b.items()} for b in batches]
        timings = run_sequential(model, steps, batches, progress, true_sequential)
    else:  # data-free (magnitude, RTN): no forward passes needed
        with torch.no_grad():
            for modules, _, compress in steps:
                for name, module in modules.items():
                    compress(name, module, None)
        timings = {}
    for m in todo:
        m.applied = True
    timings["total_s"] = round(time.perf_counter() - t0, 2)
    logger.info("hf_lite one-shot: %s in %.1f s", ", ".join(m.type_name for m in todo), timings["total_s"])
    return timings


def calibrate_session(
    session: CompressionSession,
    model: nn.Module,
    recipe: Recipe | None,
    tokenizer: Any = None,
    calibration_data: Any = None,
    progress: bool = True,
) -> dict[str, float]:
    """Calibrate ``session`` from explicit data (token-id tensor, dataset or list of dicts), else from
    the recipe's ``calibration`` section with ``tokenizer``."""
    cal = (recipe.calibration if recipe else None) or CalibrationSettings()
    batches = None
    if session.requires_calibration:
        if calibration_data is None:
            if recipe is None or tokenizer is None:
                raise RecipeError("one-shot: Wanda/SparseGPT/GPTQ need calibration data (or a recipe and tokenizer)")
            calibration_data = recipe_calibration(recipe, tokenizer)
        batches = calibration_batches(calibration_data, cal.batch_size)
    return session.calibrate(model, batches, progress=progress, true_sequential=cal.true_sequential)


def apply_recipe_(
    model: nn.Module,
    recipe: Any,
    calibration_dataset: Any = None,
    tokenizer=None,
    progress: bool = True,
) -> CompressionSession:
    """Apply a recipe's one-shot modifiers to ``model`` in place (no training) and finalize.

    ``calibration_dataset``: a (samples, seq_len) tensor of token ids, a ``datasets.Dataset`` or a list
    of dicts with ``input_ids``; when omitted, it is built from the recipe's ``calibration`` section
    with ``tokenizer``. Returns the session (its modifiers hold masks and grids; ``session.export``
    writes the model as ``hf-lite`` would).
    """
    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    session = CompressionSession(recipe.build_modifiers())
    others = [m.type_name for m in session.modifiers if not m.one_shot]
    if others:
        raise RecipeError(
            f"apply_recipe_ runs one-shot modifiers only; {others} need training: use hf_lite.run_recipe or LiteTrainer"
        )
    model = session.initialize(model)
    calibrate_session(session, model, recipe, tokenizer, calibration_dataset, progress)
    session.finalize(model)
    return session
