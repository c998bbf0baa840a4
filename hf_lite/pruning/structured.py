"""Structured pruning: whole attention heads and FFN neurons, removed for real at finalize.

Every block loses the same number of units (the config holds one size for all layers), chosen per
layer by importance. During training the units are masked (weights, biases and gradients zeroed);
at finalize the Linears are sliced and the config gets the reduced sizes, so plain ``from_pretrained``
builds the smaller model.

Architectures (found by module names inside each block):

- Llama family (``self_attn.q/k/v/o_proj``, ``mlp.gate/up/down_proj``): the attention unit is a KV
  group (one key/value head and its query heads), so grouped-query attention stays valid;
  ``num_attention_heads``, ``num_key_value_heads`` and ``intermediate_size`` shrink, ``head_dim``
  is written explicitly.
- BERT family (``attention.self.query/key/value``, ``attention.output.dense``, ``intermediate.dense``,
  ``output.dense``): FFN neurons are removed (``intermediate_size``). transformers 5 BERT derives the
  head size from ``hidden_size / num_attention_heads`` and has no ``pruned_heads``, so a BERT with
  fewer heads cannot be described by its config: pruned heads stay in the file as exact zeros (they
  contribute nothing) and only the FFN shrinks. The report says so.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Literal

import torch
from torch import nn

from ..core.distributed import broadcast_, full, is_sharded, shard_like
from ..core.modifier import Context, Modifier, register_modifier
from ..core.settings import RecipeError, Settings, StepOrFraction
from ..core.targets import decoder_blocks
from .magnitude import check_schedule
from .schedules import is_update_step, sparsity_at

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class StructuredPruningSettings(Settings):
    """Remove a fraction of attention heads and FFN neurons from every block."""

    #: fraction of attention heads removed per block (Llama: of KV groups), in [0, 1)
    heads: float = 0.0
    #: fraction of FFN neurons removed per block, in [0, 1)
    ffn: float = 0.0
    #: ``magnitude`` (squared weights of the unit) or ``taylor`` (accumulated (sum W * dL/dW)^2
    #: per unit, first-order estimate of the loss change when the unit is removed)
    importance: Literal["magnitude", "taylor"] = "magnitude"
    #: first pruning step (int) or fraction of max_steps (float)
    start: StepOrFraction = 0.0
    #: step (int) or fraction (float) where the final fractions are reached
    end: StepOrFraction = 0.5
    #: steps between updates of the unit masks
    update_every: int = 10
    #: how the pruned fraction grows from ``start`` to ``end``
    schedule: Literal["cubic", "linear", "constant"] = "cubic"
    #: slice the pruned units out at finalize (false: keep them as zeros, same shapes)
    shrink: bool = True

    def validate(self) -> None:
        for f in ("heads", "ffn"):
            if not 0.0 <= getattr(self, f) < 1.0:
                self.fail(f, "must be in [0, 1): 0.25 removes a quarter of the units in every block")
        if self.heads == 0 and self.ffn == 0:
            self.fail("heads", "set heads and/or ffn above 0 (nothing would be pruned)")
        check_schedule(self)


@dataclasses.dataclass
class Part:
    """A Linear whose rows (``axis=0``, with bias) or columns (``axis=1``) belong to units of ``width``."""

    name: str
    module: nn.Linear
    axis: int
    width: int

    def unit_view(self, t: torch.Tensor, units: int) -> torch.Tensor:
        """(units, ...) view of a weight-shaped tensor."""
        if self.axis == 0:
            return t.reshape(units, self.width, -1)
        return t.reshape(t.shape[0], units, self.width).transpose(0, 1)


@dataclasses.dataclass
class UnitGroup:
    """The prunable units of one kind (``heads`` or ``ffn``) in one block."""

    kind: str
    block: int
    units: int
    parts: list[Part]
    removable: bool = True

    def kept_index(self, part: Part, keep: torch.Tensor) -> torch.Tensor:
        return torch.nonzero(keep.repeat_interleave(part.width)).squeeze(1)


def _get(block: nn.Module, path: str) -> nn.Module | None:
    for attr in path.split("."):
        block = getattr(block, attr, None)
        if block is None:
            return None
    return block


def find_unit_groups(model: nn.Module, want_heads: bool, want_ffn: bool) -> tuple[str, list[UnitGroup]]:
    """(family, unit groups per block), or a RecipeError naming what is supported."""
    config = model.config
    blocks_name, blocks = decoder_blocks(model)
    groups: list[UnitGroup] = []
    first = blocks[0]
    if _get(first, "self_attn.q_proj") is not None and _get(first, "mlp.down_proj") is not None:
        family = "llama"
        heads = config.num_attention_heads
        kv = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        rep = heads // kv
        for i, b in enumerate(blocks):
            p = f"{blocks_name}.{i}."
            if want_heads:
                parts = [Part(p + "self_attn.q_proj", b.self_attn.q_proj, 0, head_dim * rep)]
                parts += [
                    Part(p + f"self_attn.{n}", getattr(b.self_attn, n), 0, head_dim) for n in ("k_proj", "v_proj")
                ]
                parts.append(Part(p + "self_attn.o_proj", b.self_attn.o_proj, 1, head_dim * rep))
                groups.append(UnitGroup("heads", i, kv, parts))
            if want_ffn:
                rows = [n for n in ("gate_proj", "up_proj") if _get(b, f"mlp.{n}") is not None]
                parts = [Part(p + f"mlp.{n}", getattr(b.mlp, n), 0, 1) for n in rows]
                parts.append(Part(p + "mlp.down_proj", b.mlp.down_proj, 1, 1))
                groups.append(UnitGroup("ffn", i, b.mlp.down_proj.in_features, parts))
    elif _get(first, "attention.self.query") is not None and _get(first, "intermediate.dense") is not None:
        family = "bert"
        heads = config.num_attention_heads
        head_dim = config.hidden_size // heads
        for i, b in enumerate(blocks):
            p = f"{blocks_name}.{i}."
            if want_heads:
                att = b.attention
                parts = [
                    Part(p + f"attention.self.{n}", getattr(att.self, n), 0, head_dim)
                    for n in ("query", "key", "value")
                ]
                parts.append(Part(p + "attention.output.dense", att.output.dense, 1, head_dim))
                groups.append(UnitGroup("heads", i, heads, parts, removable=False))
            if want_ffn:
                parts = [
                    Part(p + "intermediate.dense", b.intermediate.dense, 0, 1),
                    Part(p + "output.dense", b.output.dense, 1, 1),
                ]
                groups.append(UnitGroup("ffn", i, b.intermediate.dense.out_features, parts))
    else:
        raise RecipeError(
            f"structured_pruning: {type(model).__name__} is not supported (known: Llama-style self_attn/mlp "
            "blocks and BERT-style attention/intermediate/output blocks); use magnitude_pruning instead"
        )
    for g in groups:
        for part in g.parts:
            if type(part.module) is not nn.Linear:
                raise RecipeError(
                    f"structured_pruning: {part.name} is a {type(part.module).__name__}, not a plain nn.Linear; "
                    "list structured_pruning before lora/qlora/qat in the recipe"
                )
    return family, groups


def _units_to_prune(units: int, fraction: float) -> int:
    return min(units - 1, int(round(fraction * units)))  # always keep at least one unit


@register_modifier("structured_pruning")
class StructuredPruningModifier(Modifier):
    """Masks whole heads/neurons on a schedule; finalize slices them out and updates the config."""

    supports_sharded = True

    settings_cls = StructuredPruningSettings

    def __init__(self, settings: StructuredPruningSettings):
        super().__init__(settings)
        self.groups: list[UnitGroup] = []
        self.family = ""
        self.keep: dict[str, torch.Tensor] = {}  # "heads.3" -> (units,) 0/1
        self.taylor: dict[str, torch.Tensor] = {}
        self._masks: list[tuple[nn.Parameter, torch.Tensor]] = []  # rebuilt when the kept units change

    @staticmethod
    def key(g: UnitGroup) -> str:
        return f"{g.kind}.{g.block}"

    def initialize(self, model: nn.Module, ctx: Context) -> nn.Module:
        s = self.settings
        self.family, self.groups = find_unit_groups(model, s.heads > 0, s.ffn > 0)
        if s.heads > 0 and self.family == "bert" and s.shrink:
            logger.warning(
                "structured_pruning: BERT heads cannot be removed from a transformers 5 config; pruned heads are "
                "saved as zeros and only the FFN shrinks"
            )
        for g in self.groups:
            if _units_to_prune(g.units, getattr(s, g.kind)) == 0:
                raise RecipeError(
                    f"structured_pruning: {g.kind}={getattr(s, g.kind)} of {g.units} units rounds to 0 per block; "
                    f"use at least {1 / g.units:.3f}"
                )
        return model

    # -- masks --------------------------------------------------------------------------------------
    @torch.no_grad()
    def importance(self, g: UnitGroup) -> torch.Tensor:
        if self.settings.importance == "taylor" and self.key(g) in self.taylor:
            score = self.taylor[self.key(g)].clone()
        else:
            score = sum(
                p.unit_view(full(p.module.weight.detach()).float() ** 2, g.units).reshape(g.units, -1).sum(1)
                for p in g.parts
            )
        keep = self.keep.get(self.key(g))
        if keep is not None:
            score[keep.to(score.device) == 0] = -1.0  # pruned units stay pruned
        return score

    @torch.no_grad()
    def update_masks(self, fraction_of: dict[str, float]) -> None:
        for g in self.groups:
            n = _units_to_prune(g.units, fraction_of[g.kind])
            keep = torch.ones(g.units)
            if n > 0:
                keep[torch.topk(self.importance(g).cpu(), n, largest=False).indices] = 0.0
            self.keep[self.key(g)] = broadcast_(keep)
        self._rebuild_masks()
        self.apply_to_weights()

    def _rebuild_masks(self) -> None:
        """(parameter, broadcastable 0/1 mask) pairs, rebuilt only when the kept units change, so the
        per-step work is one in-place multiply per parameter."""
        self._masks = []
        for g in self.groups:
            keep = self.keep.get(self.key(g))
            if keep is None:
                continue
            for p in g.parts:
                w = p.module.weight
                units = keep.to(w.device, w.dtype).repeat_interleave(p.width)
                self._masks.append((w, _mask_for(w, units.unsqueeze(1) if p.axis == 0 else units.unsqueeze(0))))
                if p.axis == 0 and p.module.bias is not None:
                    self._masks.append((p.module.bias, _mask_for(p.module.bias, units)))

    @torch.no_grad()
    def apply_to_weights(self) -> None:
        for param, mask in self._masks:
            param.mul_(mask)

    @torch.no_grad()
    def before_optimizer_step(self, model: nn.Module, ctx: Context) -> None:
        if self.settings.importance == "taylor" and ctx.step <= self.end_step:
            for g in self.groups:  # stays on the device: no host sync per step
                parts = [p for p in g.parts if p.module.weight.grad is not None]
                if not parts:
                    continue
                contrib = sum(
                    p.unit_view(full(p.module.weight.detach()).float() * full(p.module.weight.grad).float(), g.units)
                    .reshape(g.units, -1)
                    .sum(1)
                    for p in parts
                )
                k = self.key(g)
                self.taylor[k] = self.taylor[k] + contrib**2 if k in self.taylor else contrib**2
        for param, mask in self._masks:
            if param.grad is not None:
                param.grad.mul_(mask)

    def after_optimizer_step(self, model: nn.Module, ctx: Context) -> None:
        self.apply_to_weights()

    def fractions_at(self, step: int) -> dict[str, float]:
        s = self.settings
        return {
            kind: sparsity_at(step, self.start_step, self.end_step, 0.0, getattr(s, kind), s.schedule, s.update_every)
            for kind in ("heads", "ffn")
        }

    def on_step_begin(self, model: nn.Module, ctx: Context) -> None:
        if ctx.step > self.end_step or not is_update_step(
            ctx.step, self.start_step, self.end_step, self.settings.update_every
        ):
            return
        self.update_masks(self.fractions_at(ctx.step))

    # -- finalize: slice the units out ------------------------------------------------------------------
    @torch.no_grad()
    def finalize(self, model: nn.Module, ctx: Context) -> nn.Module:
        if not self.keep:  # no training reached start: prune to the final fractions now
            self.update_masks({"heads": self.settings.heads, "ffn": self.settings.ffn})
        self.apply_to_weights()
        if not self.settings.shrink:
            return model
        kept: dict[str, int] = {}
        for g in self.groups:
            if not g.removable:
                continue
            keep = self.keep[self.key(g)]
            kept[g.kind] = int(keep.sum())
            for p in g.parts:
                _replace(model, p.name, _sliced(p.module, p.axis, g.kept_index(p, keep)))
        config = model.config
        if "ffn" in kept:
            config.intermediate_size = kept["ffn"]
        if "heads" in kept:  # llama family: whole KV groups
            heads = config.num_attention_heads
            kv = getattr(config, "num_key_value_heads", None) or heads
            config.head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
            config.num_attention_heads = kept["heads"] * (heads // kv)
            config.num_key_value_heads = kept["heads"]
        return model

    # -- reporting and state ---------------------------------------------------------------------------
    def stats(self) -> dict[str, float]:
        out = {}
        for kind in ("heads", "ffn"):
            masks = [k for key, k in self.keep.items() if key.startswith(kind + ".")]
            if masks:
                out[f"{kind}_pruned"] = float(sum(int((m == 0).sum()) for m in masks)) / sum(m.numel() for m in masks)
        return out

    def state_dict(self) -> dict:
        state = super().state_dict()
        state.update({f"keep.{k}": v for k, v in self.keep.items()})
        state.update({f"taylor.{k}": v.cpu() for k, v in self.taylor.items()})
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.keep = {k[len("keep.") :]: v.float() for k, v in state.items() if k.startswith("keep.")}
        self.taylor = {k[len("taylor.") :]: v.float() for k, v in state.items() if k.startswith("taylor.")}
        self._rebuild_masks()
        self.apply_to_weights()


def _mask_for(param: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A broadcastable mask as it is, or, for a sharded parameter, expanded and laid out like its shard."""
    return shard_like(mask.expand(param.shape), param) if is_sharded(param) else mask


def _sliced(linear: nn.Linear, axis: int, index: torch.Tensor) -> nn.Linear:
    w = full(linear.weight.detach())
    out_f, in_f = (len(index), w.shape[1]) if axis == 0 else (w.shape[0], len(index))
    new = nn.Linear(in_f, out_f, bias=linear.bias is not None, device=w.device, dtype=w.dtype)
    new.weight.copy_(w.index_select(axis, index.to(w.device)))
    if linear.bias is not None:
        bias = full(linear.bias.detach())
        new.bias.copy_(bias[index.to(w.device)] if axis == 0 else bias)
    new.weight.requires_grad_(linear.weight.requires_grad)
    return new


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child, module)
