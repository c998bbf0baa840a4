"""Distillation: logits, hidden-state and attention losses; students built from teachers."""

from ..core.modifier import import_submodules
from .modifier import DistillationModifier, DistillationSettings, soft_loss
from .student import build_student_folder, rank_contiguous_cuts, student_from_teacher

__all__ = [
    "DistillationModifier",
    "DistillationSettings",
    "build_student_folder",
    "rank_contiguous_cuts",
    "soft_loss",
    "student_from_teacher",
]

import_submodules(__name__, __path__)  # every method module registers itself, listed here or not
