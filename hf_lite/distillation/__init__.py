"""distillation (in progress)."""
