"""``qat``: quantization-aware training with fake-quantized Linear weights (int grid or NF4)."""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..core.distributed import full, is_sharded, write_
from ..core.modifier import Context, register_modifier
from ..core.settings import Settings, StepOrFraction, check_step_or_fraction, resolve_step
from ..core.targets import find_linear_targets
from .common import _check_grid_settings, _check_targets, _IntGridModifier
from .grids import int_fake_quant, int_qparams, nf4_fake_quant, per_token_fake_quant


@dataclasses.dataclass
class QATSettings(Settings):
    """Quantization-aware training: fake-quantized Linear weights with a straight-through estimator."""

    #: weight bits: 8 or 4
    bits: int = 8
    #: ``int`` (uniform integer grid) or ``nf4`` (bitsandbytes' NormalFloat-4 code book, blocks of 64)
    grid: Literal["int", "nf4"] = "int"
    #: weights per scale along the input dimension; null = one scale per output channel
    group_size: int | None = None
    #: symmetric grid (zero point 0) or asymmetric (min/max with an integer zero point)
    symmetric: bool = True
    #: fake-quantize input activations to this many bits (dynamic, per token); null = off
    activations: int | None = None
    #: ``minmax`` (scales from the current weights) or ``ema`` (moving average of min/max)
    observer: Literal["minmax", "ema"] = "minmax"
    #: EMA decay for ``observer: ema``
    ema_decay: float = 0.9
    #: learn the scales by gradient (LSQ); initialized from the observer at ``start``
    learnable_scales: bool = False
    #: step (int) or fraction (float) where fake-quant switches on (float warm-up before)
    start: StepOrFraction = 0
    #: step (int) or fraction (float) after which the scales stop following the weights
    freeze_observers_at: StepOrFraction | None = None
    #: module-name suffixes or ``re:`` regexes; default: every Linear in the transformer blocks
    targets: list[str] | None = None
    #: modules kept in float
    ignore: list[str] | None = None

    def validate(self) -> None:
        if self.bits not in (4, 8):
            self.fail("bits", "supported: 8 or 4")
        if self.activations not in (None, 8):
            self.fail("activations", "supported: 8 or null")
        if not 0.0 < self.ema_decay < 1.0:
            self.fail("ema_decay", "must be in (0, 1)")
        if self.learnable_scales and self.grid == "nf4":
            self.fail(
                "learnable_scales", "NF4 uses bitsandbytes' absmax blocks; learnable scales apply to the int grid"
            )
        check_step_or_fraction(self, "start")
        check_step_or_fraction(self, "freeze_observers_at")
        _check_grid_settings(self, self.grid)


class _QATState:
    """Per-module fake-quant state (kept off the state dict so checkpoints stay plain)."""

    def __init__(self, settings: QATSettings):
        self.settings = settings
        self.enabled = False
        self.frozen = False
        self.scale: torch.Tensor | None = None
        self.zero: torch.Tensor | None = None

    def observe(self, w: torch.Tensor) -> None:
        s = self.settings
        scale, zero = int_qparams(w, s.bits, s.group_size, s.symmetric)
        if s.observer == "ema" and self.scale is not None:
            scale = s.ema_decay * self.scale.detach() + (1 - s.ema_decay) * scale
            zero = zero if s.symmetric else self.zero
        if s.learnable_scales:
            if self.scale is None:
                self.scale = nn.Parameter(scale)
            self.zero = zero
        else:
            self.scale, self.zero = scale, zero

    def weight(self, w: torch.Tensor) -> torch.Tensor:
        s = self.settings
        if s.grid == "nf4":
            return nf4_fake_quant(w)
        if not self.frozen and not s.learnable_scales:
            self.observe(w)
        return int_fake_quant(w, self.scale, self.zero, s.bits, s.group_size, s.symmetric)


class FakeQuantLinear(nn.Linear):
    """``nn.Linear`` whose forward uses fake-quantized weights. It shares the parameters of the Linear it
    was made from, so the state dict keys (and an optimizer's references) are unchanged."""

    qat: _QATState

    @classmethod
    def from_linear(cls, linear: nn.Linear, state: _QATState) -> FakeQuantLinear:
        new = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
        new.weight, new.bias = linear.weight, linear.bias
        new.qat = state
        return new.train(linear.training)

    def to_linear(self) -> nn.Linear:
        """A plain ``nn.Linear`` with this layer's parameters (the learnable scale, if any, left behind)."""
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device="meta")
        lin.weight, lin.bias = self.weight, self.bias
        return lin.train(self.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        st = self.qat
        if not st.enabled:
            return F.linear(x, self.weight, self.bias)
        if st.settings.activations:
            x = per_token_fake_quant(x, st.settings.activations)
        return F.linear(x, st.weight(self.weight), self.bias)


@register_modifier("qat")
class QATModifier(_IntGridModifier):
    """Fake-quant from ``start``; at finalize the weights are snapped onto the grid ("convert")."""

    settings_cls = QATSettings
    supports_sharded = True

    def __init__(self, settings):
        super().__init__(settings)
        self.modules: dict[str, nn.Linear] = {}
        self.freeze_step: int | None = None
        self.converted = False
        self.grids: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # the int grid each weight was snapped to

    def initialize(self, model: nn.Module, ctx: Context) -> nn.Module:
        s = self.settings
        targets = find_linear_targets(model, s.targets, s.ignore, self.type_name)
        _check_targets(model, targets, s.group_size, s.grid, self.type_name)
        self.modules = {}
        for name, lin in targets.items():
            m = FakeQuantLinear.from_linear(lin, _QATState(s))
            if s.learnable_scales:  # the scale must exist before the optimizer is built
                m.qat.observe(m.weight)
                m.register_parameter("weight_qscale", m.qat.scale)
            ctx.swap_module(model, lin, m)
            self.modules[name] = m
        return model

    def on_train_begin(self, model: nn.Module, ctx: Context) -> None:
        super().on_train_begin(model, ctx)
        f = self.settings.freeze_observers_at
        self.freeze_step = None if f is None else resolve_step(f, ctx.max_steps, ctx.max_steps)

    def on_step_begin(self, model: nn.Module, ctx: Context) -> None:
        enable = ctx.step >= self.start_step
        freeze = self.freeze_step is not None and ctx.step >= self.freeze_step
        for m in self.modules.values():
            st = m.qat
            if freeze and not st.frozen and self.settings.grid == "int" and not self.settings.learnable_scales:
                st.observe(full(m.weight))
            st.enabled, st.frozen = enable, freeze

    @torch.no_grad()
    def convert(self, model: nn.Module, ctx: Context | None = None) -> None:
        """Snap weights onto the grid they were trained for and put plain ``nn.Linear`` layers back. A
        sharded layer stays in place (FSDP2 keeps its own reference to it) with fake-quant switched off:
        the snapped weights are on the grid already, and its state dict is a Linear's."""
        for name, m in self.modules.items():
            st = m.qat
            st.enabled = True
            weight = full(m.weight)  # the grid is computed on the whole weight, written back in place
            if st.scale is None and self.settings.grid == "int":
                st.observe(weight)
            write_(m.weight, st.weight(weight))
            if self.settings.grid == "int":
                self.grids[name] = (
                    full(st.scale.detach()).squeeze(-1).clone(),
                    full(st.zero.detach()).squeeze(-1).clone(),
                )
            if "weight_qscale" in m._parameters:
                del m._parameters["weight_qscale"]
            st.enabled = False
            if not is_sharded(m.weight):
                plain = m.to_linear()
                (ctx or Context()).swap_module(model, m, plain)
                self.modules[name] = plain
        self.converted = True

    def finalize(self, model: nn.Module, ctx: Context) -> nn.Module:
        self.convert(model, ctx)
        return model

    def has_int_grid(self) -> bool:
        return self.settings.grid == "int"

    def stats(self) -> dict[str, float]:
        """The bits the weights are at: 32 during a float warm-up, ``bits`` once fake-quant is on and after convert."""
        on = self.converted or any(isinstance(m, FakeQuantLinear) and m.qat.enabled for m in self.modules.values())
        return {"bits": float(self.settings.bits) if on else 32.0}

    def state_dict(self) -> dict:
        state = super().state_dict()
        for name, m in self.modules.items():
            st = m.qat if isinstance(m, FakeQuantLinear) and not self.converted else None
            if st is not None and st.scale is not None:
                state[f"scale.{name}"] = full(st.scale.detach())
                state[f"zero.{name}"] = full(st.zero.detach())
                state[f"frozen.{name}"] = int(st.frozen)
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        for name, m in self.modules.items():
            st = m.qat
            if f"scale.{name}" in state:
                scale = state[f"scale.{name}"].to(m.weight.device)
                if isinstance(st.scale, nn.Parameter):
                    st.scale.data.copy_(scale)
                else:
                    st.scale = scale
                st.zero = state[f"zero.{name}"].to(m.weight.device)
                st.frozen = bool(state[f"frozen.{name}"])
