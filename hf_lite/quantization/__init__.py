"""quantization (in progress)."""
