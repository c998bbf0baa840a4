"""Students built from teachers (DistilBERT style): keep embeddings, chosen blocks and the head."""

from __future__ import annotations

import copy

from torch import nn

from ..core.settings import RecipeError
from ..core.targets import decoder_blocks, set_decoder_blocks


def student_from_teacher(teacher: nn.Module, layers: list[int]) -> nn.Module:
    """A copy of ``teacher`` with only the blocks ``layers`` (in that order); config updated."""
    n = teacher.config.num_hidden_layers
    if not layers or any(i < 0 or i >= n for i in layers) or len(set(layers)) != len(layers):
        raise RecipeError(f"student layers {layers}: need distinct indices in [0, {n - 1}]")
    student = copy.deepcopy(teacher)
    _, blocks = decoder_blocks(student)
    kept = nn.ModuleList(blocks[i] for i in layers)
    for new_idx, block in enumerate(kept):
        for m in block.modules():  # Llama attention keeps its index for the KV cache
            if hasattr(m, "layer_idx"):
                m.layer_idx = new_idx
    set_decoder_blocks(student, kept)
    student.config.num_hidden_layers = len(layers)
    if getattr(student.config, "layer_types", None):
        student.config.layer_types = [student.config.layer_types[i] for i in layers]
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
    import torch

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
        total = count = 0.0
        with torch.no_grad():
            for b in batches:  # weighted by labelled positions: the loss over all of them, not per batch
                labelled = float((b["labels"] != -100).sum())
                total += labelled * float(student(**{k: v.to(device) for k, v in b.items()}).loss)
                count += labelled
        ranked.append((layers, total / max(count, 1.0)))
        del student
    return sorted(ranked, key=lambda x: x[1])
