import pytest

from hf_lite.pruning.schedules import is_update_step, last_update_step, sparsity_at


def reference(step, start, end, si, sf, schedule, every):
    """Straight from Zhu & Gupta: s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n dt))^3, held between updates."""
    if step < start:
        return 0.0
    t = min(step, end)
    if t < end:
        t = start + (t - start) // every * every
    if schedule == "constant" or end == start or t == end:
        return sf
    p = (t - start) / (end - start)
    return sf + (si - sf) * (1 - p) ** 3 if schedule == "cubic" else si + (sf - si) * p


@pytest.mark.parametrize("schedule", ["cubic", "linear", "constant"])
@pytest.mark.parametrize("start,end,every", [(0, 10, 1), (3, 17, 4), (5, 5, 1), (0, 0, 3), (2, 30, 7)])
@pytest.mark.parametrize("si,sf", [(0.0, 0.8), (0.2, 0.9)])
def test_every_step(schedule, start, end, every, si, sf):
    prev = 0.0
    for step in range(0, end + 10):
        s = sparsity_at(step, start, end, si, sf, schedule, every)
        assert s == pytest.approx(reference(step, start, end, si, sf, schedule, every))
        assert s >= prev - 1e-12  # never decreases
        prev = s
        if step >= end:
            assert s == sf
        if step < start:
            assert s == 0.0
        if step > start and not is_update_step(step, start, end, every):
            assert s == sparsity_at(step - 1, start, end, si, sf, schedule, every)


def test_cubic_values():
    assert sparsity_at(0, 0, 10, 0.0, 0.8, "cubic", 1) == 0.0
    assert sparsity_at(5, 0, 10, 0.0, 0.8, "cubic", 1) == pytest.approx(0.8 * (1 - 0.5**3))
    assert last_update_step(9, 0, 10, 4) == 8 and last_update_step(10, 0, 10, 4) == 10
