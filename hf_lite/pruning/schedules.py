"""Sparsity schedules: pure functions of the step (tested at every step)."""

from __future__ import annotations


def last_update_step(step: int, start: int, end: int, update_every: int) -> int | None:
    """The most recent mask-update step at or before ``step`` (None before ``start``).

    Updates happen at ``start``, every ``update_every`` steps after it, and at ``end``.
    """
    if step < start:
        return None
    if step >= end:
        return end
    return start + ((step - start) // update_every) * update_every


def is_update_step(step: int, start: int, end: int, update_every: int) -> bool:
    return step == start or step == end or (start < step < end and (step - start) % update_every == 0)


def sparsity_at(
    step: int,
    start: int,
    end: int,
    init_sparsity: float,
    final_sparsity: float,
    schedule: str = "cubic",
    update_every: int = 1,
) -> float:
    """Target sparsity at ``step`` (0 before ``start``; ``final_sparsity`` from ``end`` on).

    ``cubic`` is Zhu & Gupta (2017): s = s_f + (s_i - s_f) * (1 - p)^3 with p the progress in
    [0, 1], held constant between updates. ``linear`` interpolates; ``constant`` is s_f from start.
    """
    t = last_update_step(step, start, end, update_every)
    if t is None:
        return 0.0
    if t >= end or schedule == "constant" or end == start:
        return final_sparsity
    progress = (t - start) / (end - start)
    if schedule == "linear":
        return init_sparsity + (final_sparsity - init_sparsity) * progress
    if schedule == "cubic":
        return final_sparsity + (init_sparsity - final_sparsity) * (1.0 - progress) ** 3
    raise ValueError(f"unknown schedule {schedule!r}")
