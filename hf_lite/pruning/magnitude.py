"""``magnitude_pruning``: gradual magnitude pruning (GMP) on a cubic/linear schedule, one-shot at ``start == end``, N:M patterns, per layer or global."""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
from torch import nn

from ..core.distributed import full
from ..core.modifier import Context, register_modifier
from ..core.settings import Settings, StepOrFraction, check_step_or_fraction
from .base import MaskedModifier, base_weight
from .masks import check_pattern, global_masks, nm_mask, parse_pattern, topk_mask
from .schedules import is_update_step, sparsity_at


def check_schedule(s: Settings) -> None:
    """``start``/``end`` as steps or fractions, end not before start, ``update_every`` >= 1."""
    check_step_or_fraction(s, "start")
    check_step_or_fraction(s, "end")
    if type(s.start) is type(s.end) and s.end < s.start:
        s.fail("end", f"must not come before start ({s.start})")
    if s.update_every < 1:
        s.fail("update_every", "must be >= 1")


@dataclasses.dataclass
class MagnitudePruningSettings(Settings):
    """Gradual magnitude pruning (GMP); ``start == end`` is one-shot."""

    #: sparsity reached at ``end`` (fraction of pruned weights, in [0, 1)); ignored for N:M patterns
    final_sparsity: float = 0.5
    #: sparsity at ``start``
    init_sparsity: float = 0.0
    #: first pruning step (int) or fraction of max_steps (float)
    start: StepOrFraction = 0.0
    #: step (int) or fraction (float) where ``final_sparsity`` is reached; masks stay fixed after
    end: StepOrFraction = 0.5
    #: steps between mask updates
    update_every: int = 10
    #: ``cubic`` (Zhu & Gupta 2017), ``linear``, or ``constant`` (final sparsity from start)
    schedule: Literal["cubic", "linear", "constant"] = "cubic"
    #: ``layer``: each layer reaches the sparsity; ``global``: one threshold over all targets
    scope: Literal["layer", "global"] = "layer"
    #: ``unstructured`` or ``"N:M"`` (keep N of every M consecutive input weights)
    pattern: str = "unstructured"
    #: module-name suffixes or ``re:`` regexes; default: every Linear in the transformer blocks
    targets: list[str] | None = None
    #: modules to leave dense (same forms as ``targets``)
    ignore: list[str] | None = None

    def validate(self) -> None:
        for f in ("final_sparsity", "init_sparsity"):
            if not 0.0 <= getattr(self, f) < 1.0:
                self.fail(f, "must be in [0, 1): 0.8 prunes 80% of the weights")
        if self.init_sparsity > self.final_sparsity:
            self.fail("init_sparsity", f"must not exceed final_sparsity ({self.final_sparsity})")
        check_schedule(self)
        check_pattern(self)
        if self.pattern != "unstructured" and self.scope == "global":
            self.fail("scope", "N:M patterns are per layer; use scope: layer")


@register_modifier("magnitude_pruning")
class MagnitudePruningModifier(MaskedModifier):
    """Prune the smallest-|W| weights on a schedule; masks are recomputed on update steps."""

    settings_cls = MagnitudePruningSettings
    supports_sharded = True

    def target_sparsity(self, step: int) -> float:
        s = self.settings
        return sparsity_at(
            step, self.start_step, self.end_step, s.init_sparsity, s.final_sparsity, s.schedule, s.update_every
        )

    def scores(self) -> dict[str, torch.Tensor]:
        return {n: full(base_weight(m)).detach().abs().float() for n, m in self.modules.items()}

    @torch.no_grad()
    def compute_masks(self, sparsity: float) -> dict[str, torch.Tensor]:
        scores = self.scores()
        nm = parse_pattern(self.settings.pattern)
        if nm is not None:
            return {n: nm_mask(s, *nm) for n, s in scores.items()}
        if self.settings.scope == "global":
            return global_masks(scores, sparsity)
        return {n: topk_mask(s, sparsity) for n, s in scores.items()}

    def on_step_begin(self, model: nn.Module, ctx: Context) -> None:
        step = ctx.step
        if step > self.end_step or not is_update_step(step, self.start_step, self.end_step, self.settings.update_every):
            return
        self.set_masks(self.compute_masks(self.target_sparsity(step)))

    def finalize(self, model: nn.Module, ctx: Context) -> nn.Module:
        if not self.masks:  # training ended before start (or no training): prune to the final target
            self._ensure_modules(model)
            self.set_masks(self.compute_masks(self.settings.final_sparsity))
        return super().finalize(model, ctx)
