"""Quantization modifiers: ``qat`` (fake-quant during training), ``ptq`` (one-shot), ``bnb`` (export)."""

from __future__ import annotations

import dataclasses
import logging
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..core.distributed import full, is_sharded, write_
from ..core.modifier import Context, Modifier, register_modifier
from ..core.settings import RecipeError, Settings, StepOrFraction, check_step_or_fraction, resolve_step
from ..core.targets import find_linear_targets, plain_module_name
from .grids import NF4_BLOCK, int_fake_quant, int_qparams, nf4_fake_quant, per_token_fake_quant, save_grid

logger = logging.getLogger(__name__)


class _IntGridModifier(Modifier):
    """qat and ptq rtn: the integer grid each weight was snapped to (``self.grids``, filled at finalize),
    declared by ``weight_grid`` and written next to the model."""

    grids: dict[str, tuple[torch.Tensor, torch.Tensor]]

    def has_int_grid(self) -> bool:
        return True

    def weight_grid(self) -> dict | None:
        s = self.settings
        if not self.has_int_grid():
            return None
        return {"bits": s.bits, "group_size": s.group_size, "symmetric": s.symmetric, "zero_point": "int"}

    def extra_files(self, folder: str, export_settings) -> None:
        if not self.grids:
            return
        names = {n: plain_module_name(n) for n in self.grids}  # as in the saved model, also under peft
        scales = {names[n]: g[0] for n, g in self.grids.items()}
        zeros = {names[n]: g[1] for n, g in self.grids.items()}
        save_grid(folder, scales, zeros, {"method": self.type_name, **self.weight_grid()})


def _is_bnb_layer(module: nn.Module) -> bool:
    return type(module).__module__.startswith("bitsandbytes")


def _check_grid_settings(s: Settings, grid: str = "int") -> None:
    if grid == "nf4":
        if s.bits != 4:
            s.fail("bits", "the nf4 grid is 4-bit; set bits: 4")
        if s.group_size is not None:
            s.fail("group_size", f"the nf4 grid uses bitsandbytes' blocks of {NF4_BLOCK}; leave group_size null")
    if s.group_size is not None and s.group_size < 2:
        s.fail("group_size", "must be >= 2 or null (per output channel)")


def _check_targets(
    model: nn.Module, modules: dict[str, nn.Module], group_size: int | None, grid: str, where: str
) -> None:
    for name, m in modules.items():
        if _is_bnb_layer(m):
            raise RecipeError(
                f"{where}: {name} is a bitsandbytes {type(m).__name__}; QAT needs a float base (load without quantization_config)"
            )
        cols = m.weight.shape[1]
        if group_size and cols % group_size:
            raise RecipeError(
                f"{where}: group_size {group_size} does not divide in_features {cols} of {name}; pick a divisor of {cols}"
            )
        if grid == "nf4" and m.weight.numel() % NF4_BLOCK:
            raise RecipeError(
                f"{where}: {name} has {m.weight.numel()} weights, not a multiple of the NF4 block {NF4_BLOCK}"
            )


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


@dataclasses.dataclass
class PTQSettings(Settings):
    """Post-training quantization, applied once at finalize (after training, or without it)."""

    #: ``rtn``: weights rounded onto an int grid (plain safetensors); ``dynamic_int8``: torch's
    #: dynamic int8 Linear for CPU inference (evaluated in int8; saved weights stay float)
    method: Literal["rtn", "dynamic_int8"] = "rtn"
    #: weight bits for ``rtn``: 8 or 4
    bits: int = 8
    #: weights per scale for ``rtn``; null = per output channel
    group_size: int | None = None
    #: symmetric grid for ``rtn``
    symmetric: bool = True
    #: module-name suffixes or ``re:`` regexes; default: every Linear in the transformer blocks
    targets: list[str] | None = None
    #: modules kept in float
    ignore: list[str] | None = None

    def validate(self) -> None:
        if self.bits not in (4, 8):
            self.fail("bits", "supported: 8 or 4")
        _check_grid_settings(self)


def dynamic_int8(model: nn.Module, names: list[str] | None = None) -> nn.Module:
    """torch's dynamic int8 quantization of Linear layers (CPU inference)."""
    from torch.ao.quantization import quantize_dynamic

    spec = set(names) if names else {nn.Linear}
    return quantize_dynamic(model, spec, dtype=torch.qint8)


@register_modifier("ptq")
class PTQModifier(_IntGridModifier):
    """RTN weight quantization, or dynamic int8 for CPU deployment, at finalize."""

    settings_cls = PTQSettings

    def __init__(self, settings):
        super().__init__(settings)
        self.float_model: nn.Module | None = None  # dynamic int8: the float model the int8 one came from
        self.grids: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # rtn: the grid of each weight

    def initialize(self, model: nn.Module, ctx: Context) -> nn.Module:
        s = self.settings
        self.modules = find_linear_targets(model, s.targets, s.ignore, self.type_name)
        _check_targets(model, self.modules, s.group_size, "int", self.type_name)
        return model

    @torch.no_grad()
    def finalize(self, model: nn.Module, ctx: Context) -> nn.Module:
        s = self.settings
        if s.method == "rtn":
            for name, m in self.modules.items():
                weight = full(m.weight)
                scale, zero = int_qparams(weight, s.bits, s.group_size, s.symmetric)
                write_(m.weight, int_fake_quant(weight, scale, zero, s.bits, s.group_size, s.symmetric))
                self.grids[name] = (scale.squeeze(-1), zero.squeeze(-1))
            return model
        self.float_model = model
        return dynamic_int8(model, self.dynamic_names())

    def has_int_grid(self) -> bool:
        return self.settings.method == "rtn"

    def dynamic_names(self) -> list[str] | None:
        """None (every nn.Linear, head included, as the load snippet does) unless targets/ignore narrow it."""
        s = self.settings
        return list(self.modules) if (s.targets or s.ignore) else None

    def export(self, model: nn.Module, folder: str, tokenizer=None) -> bool:
        if self.float_model is None:
            return False
        from ..export import save_model

        # dynamic int8 is a load-time transform: save the float weights, quantize after loading
        save_model(self.float_model, folder, tokenizer)
        return True

    def card_snippet(self, task: str, repo: str) -> str | None:
        if self.settings.method != "dynamic_int8":
            return None
        from ..card import LOAD_SNIPPETS

        return (
            LOAD_SNIPPETS[task].format(repo=repo)
            + "\n# the metrics above were measured with dynamic int8 Linear layers (CPU):\n"
            + "import torch\nmodel = torch.ao.quantization.quantize_dynamic(model, "
            + (repr(set(self.dynamic_names())) if self.dynamic_names() else "{torch.nn.Linear}")
            + ", dtype=torch.qint8)"
        )


@dataclasses.dataclass
class BnbSettings(Settings):
    """Export in a bitsandbytes format that reloads with ``from_pretrained(dir)``."""

    #: 8 (LLM.int8) or 4
    bits: int = 4
    #: 4-bit data type
    quant_type: Literal["nf4", "fp4"] = "nf4"
    #: quantize the 4-bit absmax statistics too (smaller, not bit-exact with an NF4-QAT grid)
    double_quant: bool = False
    #: modules kept in full precision (the task head is always kept)
    ignore: list[str] | None = None

    def validate(self) -> None:
        if self.bits not in (4, 8):
            self.fail("bits", "bitsandbytes exports 8 (LLM.int8) or 4 (nf4/fp4)")


HEAD_NAMES = ["classifier", "score", "lm_head", "pooler"]


@register_modifier("bnb")
class BnbModifier(Modifier):
    """At export: save the float model, reload it through ``BitsAndBytesConfig``, save that."""

    settings_cls = BnbSettings

    def initialize(self, model: nn.Module, ctx: Context) -> nn.Module:
        if self.settings.bits == 4:
            # bitsandbytes 0.50 on an AVX-512 CPU, rows that are not a whole number of 64-blocks: its CPU
            # dequantize_4bit reads the wrong absmax, and Linear4bit's CPU forward fails repacking them
            # (codes and absmax are stored right). Real models' widths are multiples of 64.
            skip = self.skip_modules()
            narrow = [
                name
                for name, m in model.named_modules()
                if isinstance(m, nn.Linear) and m.in_features % NF4_BLOCK and not any(k in name for k in skip)
            ]
            if narrow:
                logger.warning(
                    "bnb 4-bit: %d Linear(s) have in_features not a multiple of %d (e.g. %s); bitsandbytes' CPU "
                    "kernels get such layers wrong or fail on them on AVX-512 CPUs (GPU is fine): add them to ignore to "
                    "keep them in float if the model will run on CPU",
                    len(narrow),
                    NF4_BLOCK,
                    narrow[0],
                )
        return model

    def skip_modules(self) -> list[str]:
        """Module names bitsandbytes leaves in float: the task heads and ``ignore``."""
        return HEAD_NAMES + list(self.settings.ignore or [])

    def quantization_config(self):
        from transformers import BitsAndBytesConfig

        s = self.settings
        skip = self.skip_modules()
        if s.bits == 8:
            return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=s.quant_type,
            bnb_4bit_use_double_quant=s.double_quant,
            bnb_4bit_compute_dtype=torch.float32,
            llm_int8_skip_modules=skip,
        )

    def card_snippet(self, task: str, repo: str) -> str:
        from ..card import LOAD_SNIPPETS

        return "# needs bitsandbytes; the saved quantization_config is applied on load\n" + LOAD_SNIPPETS[task].format(
            repo=repo
        )

    def export(self, model: nn.Module, folder: str, tokenizer=None) -> bool:
        import tempfile

        from ..export import save_model

        with tempfile.TemporaryDirectory() as tmp:
            save_model(model, tmp)
            quantized = type(model).from_pretrained(tmp, quantization_config=self.quantization_config())
            save_model(quantized, folder, tokenizer)
        return True


__all__ = ["BnbModifier", "FakeQuantLinear", "PTQModifier", "QATModifier", "dynamic_int8"]
