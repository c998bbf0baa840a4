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
