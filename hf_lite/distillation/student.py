"""Students built from teachers (DistilBERT style): keep embeddings, chosen blocks and the head."""

from __future__ import annotations

import copy
import inspect
import logging

from torch import nn

from ..core.settings import RecipeError
from ..core.targets import decoder_blocks, keep_decoder_blocks

logger = logging.getLogger(__name__)


def student_from_teacher(teacher: nn.Module, layers: list[int]) -> nn.Module:
    """A copy of ``teacher`` with only the blocks ``layers`` (in that order); config updated."""
    n = teacher.config.num_hidden_layers
    if not layers or any(i < 0 or i >= n for i in layers) or len(set(layers)) != len(layers):
        raise RecipeError(f"student layers {layers}: need distinct indices in [0, {n - 1}]")
    student = copy.deepcopy(teacher)
    keep_decoder_blocks(student, layers)
    # which teacher block each block was copied from, so hidden-state KD can pair them (layer_map: kept);
    # saved with the config, so a student folder trained again later still knows its blocks
    student.config.hf_lite_init_from_teacher = {"layers": list(layers), "teacher_layers": n}
    return student


def build_student_folder(
    teacher_dir: str, layers: list[int], out: str, task: str = "sequence-classification", overwrite: bool = False
) -> None:
    from ..export import check_output_dir, save_model, staged_folder
    from ..models import load_model, load_tokenizer

    check_output_dir(out, overwrite)
    teacher = load_model(teacher_dir, task)
    tokenizer = load_tokenizer(teacher_dir)
    with staged_folder(out, overwrite) as stage:
        save_model(student_from_teacher(teacher, layers), stage, tokenizer)


def rank_contiguous_cuts(teacher: nn.Module, batches, keep: int) -> list[tuple[list[int], float]]:
    """Every student of ``keep`` blocks that leaves out one contiguous run of the teacher's blocks,
    ranked by its loss over the labelled positions of ``batches`` (dicts a model takes, with ``labels``;
    -100 marks positions without a label) before any training, lowest first: ``[(layers, loss), ...]``.
    Pass the first entry's layers to ``init_from_teacher``. Which blocks matter is the model's own: on
    the SAMSum SFT of SmolLM2-135M the best cut of 15 of 30 blocks keeps the first 6 and the last 9
    (docs/generation.md)."""

    n = teacher.config.num_hidden_layers
    if not 0 < keep < n:
        raise RecipeError(f"keep={keep}: a student keeps between 1 and {n - 1} of the teacher's {n} blocks")
    batches = list(batches)
    if not batches or any("labels" not in b for b in batches):
        raise RecipeError("rank_contiguous_cuts needs batches with labels (the loss ranks the cuts): add them")
    device = next(teacher.parameters()).device
    ranked = []
    for start in range(keep + 1):  # keep `start` first blocks and `keep - start` last ones
        layers = list(range(start)) + list(range(n - keep + start, n))
        student = student_from_teacher(teacher, layers).eval()
        ranked.append((layers, labelled_loss(student, batches, device)))
        del student
    return sorted(ranked, key=lambda x: x[1])


def labelled_loss(model: nn.Module, batches, device=None) -> float:
    """The model's loss over every labelled position of ``batches`` (each batch weighted by its labelled
    positions, not averaged per batch)."""
    import torch

    device = device or next(model.parameters()).device
    total = count = 0.0
    with torch.no_grad():
        for b in batches:
            labelled = float((b["labels"] != -100).sum())
            total += labelled * float(model(**{k: v.to(device) for k, v in b.items()}).loss)
            count += labelled
    return total / max(count, 1.0)


def block_influence(teacher: nn.Module, batches) -> list[float]:
    """Each block's mean ``1 - cos(input, output)`` over the real (unpadded) positions of ``batches``:
    how much a block changes the hidden state it reads (ShortGPT's block influence, Men et al. 2024).
    A block that barely changes it is the cheapest to leave out."""
    import torch

    _, blocks = decoder_blocks(teacher)
    device = next(teacher.parameters()).device
    total = torch.zeros(len(blocks), dtype=torch.float64)
    count, real = 0, {}

    def hook(i):
        def record(module, args, kwargs, output):
            x = kwargs.get("hidden_states", args[0] if args else None)
            y = output[0] if isinstance(output, tuple) else output
            m = real["mask"]
            total[i] += (1 - nn.functional.cosine_similarity(x[m].double(), y[m].double(), dim=-1)).sum().cpu()

        return record

    # hooks on the blocks themselves: the model's own last hidden state comes after the final norm
    handles = [b.register_forward_hook(hook(i), with_kwargs=True) for i, b in enumerate(blocks)]
    training = teacher.training
    teacher.eval()  # no dropout in the measure
    try:
        with torch.no_grad():
            for b in batches:
                b = {k: v.to(device) for k, v in b.items()}
                mask = b.get("attention_mask")
                real["mask"] = mask.bool() if mask is not None else torch.ones_like(b["input_ids"], dtype=torch.bool)
                count += int(real["mask"].sum())
                teacher(**b)
    finally:
        teacher.train(training)
        for h in handles:
            h.remove()
    return [float(v) / max(count, 1) for v in total]


def most_influential_blocks(teacher: nn.Module, batches, keep: int, influence: list[float] | None = None) -> list[int]:
    """The ``keep`` blocks with the highest :func:`block_influence` on ``batches`` (or the given
    ``influence``), in model order."""
    n = teacher.config.num_hidden_layers
    if not 0 < keep < n:
        raise RecipeError(f"keep={keep}: a student keeps between 1 and {n - 1} of the teacher's {n} blocks")
    influence = influence or block_influence(teacher, list(batches))
    return sorted(sorted(range(n), key=lambda i: -influence[i])[:keep])


def searched_blocks(teacher: nn.Module, batches, keep: int, width: int = 6) -> tuple[list[int], float]:
    """:func:`most_influential_blocks`, then improved by swaps scored by the loss on ``batches``: each round
    tries every swap of one of the ``width`` kept blocks of lowest influence for one of the ``width``
    left-out blocks of highest influence, and takes the swap that lowers the loss most; it stops when no
    swap lowers it. Returns the blocks (model order) and their student's loss before training."""
    n = teacher.config.num_hidden_layers
    batches = list(batches)
    if not batches or any("labels" not in b for b in batches):
        raise RecipeError("init_from_teacher by: search scores swaps by the loss: the training rows need labels")
    influence = block_influence(teacher, batches)
    kept = most_influential_blocks(teacher, batches, keep, influence)

    def loss(layers: list[int]) -> float:
        return labelled_loss(student_from_teacher(teacher, layers).eval(), batches)

    best = loss(kept)
    for _ in range(keep * (n - keep)):  # each round lowers the loss, so no set comes back; a bound anyway
        outs = sorted(kept, key=lambda i: influence[i])[:width]
        ins = sorted((i for i in range(n) if i not in kept), key=lambda i: -influence[i])[:width]
        tried = {(o, i): loss(sorted([k for k in kept if k != o] + [i])) for o in outs for i in ins}
        (o, i), value = min(tried.items(), key=lambda x: x[1])
        if value >= best:
            break
        logger.info("hf_lite: model.init_from_teacher by search: block %d for %d, loss %.4g -> %.4g", i, o, best, value)
        kept, best = sorted([k for k in kept if k != o] + [i]), value
    return kept, best


def student_from_spec(
    teacher: nn.Module, spec: dict, dataset=None, collator=None, batch_size: int = 8
) -> tuple[nn.Module, list[int]]:
    """The student a recipe's ``model.init_from_teacher`` asks for, and the teacher blocks it keeps:
    ``{layers: [...]}`` keeps those; ``{keep: N, rank_rows: M}`` keeps the best contiguous cut of N blocks
    (:func:`rank_contiguous_cuts`), ranked on the first M rows of ``dataset`` (tokenized, with labels)
    batched by ``collator``; ``by: cosine`` keeps the N blocks that change their input most on those rows
    (:func:`most_influential_blocks`) instead, ``by: search`` improves that choice by swaps
    (:func:`searched_blocks`)."""
    if "layers" in spec:
        layers = spec["layers"]
    else:
        keep, rows = spec["keep"], spec.get("rank_rows", 16)
        batches = ranking_batches(teacher, dataset, collator, rows, batch_size)
        by = spec.get("by", "cut")
        if by == "cut":
            layers = best_contiguous_cut(teacher, keep, batches)
        else:
            loss = None
            if by == "search":
                layers, loss = searched_blocks(teacher, batches, keep)
            else:
                layers = most_influential_blocks(teacher, batches, keep)
                if all("labels" in b for b in batches):  # the start, to compare with other choices
                    loss = labelled_loss(student_from_teacher(teacher, layers).eval(), batches)
            logger.info(
                "hf_lite: model.init_from_teacher.keep=%d by %s: blocks %s; loss before training on %d rows: %s",
                keep, by, runs(layers), sum(len(b["input_ids"]) for b in batches),
                "-" if loss is None else f"{loss:.4g}",
            )  # fmt: skip
    logger.info("hf_lite: model.init_from_teacher: keeping blocks %s of %d", layers, teacher.config.num_hidden_layers)
    return student_from_teacher(teacher, layers), layers


def ranking_batches(teacher: nn.Module, dataset, collator, rows: int = 16, batch_size: int = 8) -> list[dict]:
    """The first ``rows`` of the tokenized training ``dataset``, batched by ``collator`` with ``labels``,
    for ``init_from_teacher: {keep: N}`` to rank blocks on."""
    if dataset is None or not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
        raise RecipeError(
            "model.init_from_teacher.keep ranks the blocks on the first training rows: pass a train_dataset "
            "(a datasets.Dataset or list), or give init_from_teacher: {layers: [...]}"
        )
    if collator is None:
        from transformers import default_data_collator

        collator = default_data_collator
    # what the model's forward takes (the Trainer drops the other columns the same way)
    accepted = set(inspect.signature(teacher.forward).parameters) | {"label", "label_ids"}
    picked = [{k: v for k, v in dict(dataset[i]).items() if k in accepted} for i in range(min(rows, len(dataset)))]
    if not picked or any("input_ids" not in r for r in picked):
        raise RecipeError(
            "model.init_from_teacher.keep ranks the blocks on tokenized training rows (input_ids and labels); "
            "pass a tokenized train_dataset, or give init_from_teacher: {layers: [...]}"
        )
    batches = []
    for i in range(0, len(picked), batch_size):
        b = dict(collator(picked[i : i + batch_size]))
        for old in ("label", "label_ids"):  # the collators' own renaming, for a plain default collator too
            if old in b and "labels" not in b:
                b["labels"] = b.pop(old)
        batches.append(b)
    return batches


def best_contiguous_cut(teacher: nn.Module, keep: int, batches: list[dict]) -> list[int]:
    """The layers of the best-ranked contiguous cut of ``keep`` blocks on ``batches`` (logged)."""
    ranked = rank_contiguous_cuts(teacher, batches, keep)
    logger.info(
        "hf_lite: model.init_from_teacher.keep=%d: loss before training on %d rows, best cuts first: %s",
        keep,
        sum(len(b["input_ids"]) for b in batches),
        "; ".join(f"blocks {runs(layers)}: {loss:.4g}" for layers, loss in ranked[:3]),
    )
    return ranked[0][0]


def runs(layers: list[int]) -> str:
    """``[0, 1, 2, 7, 8]`` -> ``"0-2, 7-8"``."""
    parts, start = [], 0
    for i in range(1, len(layers) + 1):
        if i == len(layers) or layers[i] != layers[i - 1] + 1:
            a, b = layers[start], layers[i - 1]
            parts.append(f"{a}-{b}" if b > a else str(a))
            start = i
    return ", ".join(parts)
