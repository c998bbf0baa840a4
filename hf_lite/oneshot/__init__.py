"""oneshot (in progress)."""
