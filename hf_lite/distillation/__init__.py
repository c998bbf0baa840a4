"""Distillation: logits, hidden-state and attention losses; students built from teachers."""

from .modifier import DistillationModifier, DistillationSettings, soft_loss
from .student import build_student_folder, student_from_teacher

__all__ = ["DistillationModifier", "DistillationSettings", "build_student_folder", "soft_loss", "student_from_teacher"]
