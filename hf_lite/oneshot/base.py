"""What the one-shot modifiers share (settings, the block-by-block contract, the recovery scales). The methods: ``magnitude``, ``wanda``, ``sparsegpt`` (pruning), ``rtn``, ``gptq`` (int4/int8).

They run once, block by block, before any training (``hf_lite.oneshot.apply_recipe_`` or
``hf-lite run``). Afterwards they keep acting as ordinary modifiers during an optional recovery
fine-tune: the sparse ones hold their masks (pruned weights stay exactly zero); the quantizers keep their
integer codes and learn the per-group scales (``recovery: scales``, with the model's float parameters
training too, or ``scales_only``), or let the weights train in float and snap them back onto the grid at
finalize (``recovery: snap``).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..core.distributed import full, is_sharded, write_
from ..core.modifier import CompressionStep, Context
from ..core.settings import RecipeError, Settings
from ..core.targets import decoder_blocks, plain_module_name
from ..pruning.base import MaskedModifier, base_weight
from ..pruning.masks import check_pattern, parse_pattern
from ..quantization.grids import save_grid
from . import algorithms as alg

logger = logging.getLogger(__name__)


# -- settings ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class OneShotPruningSettings(Settings):
    """Shared by ``magnitude``, ``wanda`` and ``sparsegpt``."""

    #: fraction of weights set to zero in every target layer, in [0, 1); ignored for N:M patterns
    sparsity: float = 0.5
    #: ``unstructured`` or ``"N:M"`` (keep N of every M consecutive input weights, e.g. ``"2:4"``)
    pattern: str = "unstructured"
    #: module-name suffixes or ``re:`` regexes; default: every Linear in the transformer blocks
    #: (embeddings and ``lm_head`` are never touched by default)
    targets: list[str] | None = None
    #: modules to leave dense (same forms as ``targets``)
    ignore: list[str] | None = None

    def validate(self) -> None:
        if not 0.0 <= self.sparsity < 1.0:
            self.fail("sparsity", "must be in [0, 1): 0.5 prunes half of every layer")
        check_pattern(self)


@dataclasses.dataclass
class RTNSettings(Settings):
    """Round-to-nearest weight-only quantization (the baseline for ``gptq``)."""

    #: weight bits: 4 or 8
    bits: int = 4
    #: input weights per scale; null = one scale per output channel. Column ``c`` belongs to group
    #: ``c // group_size`` (AutoGPTQ's convention), so a size that does not divide in_features leaves
    #: a shorter last group: SmolLM2-135M's 576 = 4 x 128 + 64
    group_size: int | None = 128
    #: symmetric grid (zero point 0) or asymmetric (min/max with an integer zero point)
    symmetric: bool = True
    #: asymmetric only. ``int``: integer zero point, so 0.0 stays on the grid (pruned weights stay exact,
    #: what int4 kernels such as GPTQ/compressed-tensors expect). ``float``: the grid spans exactly each
    #: group's [min, max] (GGUF Q4_1's grid; lower error, but exact zeros from pruning are then the only
    #: values off the grid)
    zero_point: Literal["int", "float"] = "int"
    #: ``minmax`` (full range of each group) or ``mse`` (per group, the range shrunk by 0-20% with the
    #: smallest rounding error)
    observer: Literal["minmax", "mse"] = "minmax"
    #: module-name suffixes or ``re:`` regexes; default: every Linear in the transformer blocks
    targets: list[str] | None = None
    #: modules kept in float
    ignore: list[str] | None = None
    #: what a recovery fine-tune after the one-shot step trains. ``scales``: the quantized Linears keep
    #: their integer codes and learn only their per-group scales, so training sees the quantized model and
    #: the result stays on an int grid; every parameter the quantizer leaves in float (embeddings and a
    #: tied lm_head, norms, biases, a task head) trains as usual. ``scales_only``: the same, with every
    #: other parameter frozen too, so the scales are all that moves (the end-to-end step of EfficientQAT;
    #: not with LoRA). ``snap``: the weights train in float and are rounded back onto the one-shot grid
    #: at finalize, which can undo what they learned (README: GPTQ g128 on SmolLM2, 30 KD steps: 36.9 ->
    #: 34.9 ppl vs 37.7)
    recovery: Literal["scales", "scales_only", "snap"] = "scales"

    def validate(self) -> None:
        if self.bits not in (4, 8):
            self.fail("bits", "supported: 4 or 8")
        if self.group_size is not None and self.group_size < 2:
            self.fail("group_size", "must be >= 2 or null (per output channel)")
        if self.zero_point == "float" and self.symmetric:
            self.fail("zero_point", "a float zero point needs an asymmetric grid: add symmetric: false")


def _check_solver(s: Settings) -> None:
    if s.block_size < 1:
        s.fail("block_size", "must be >= 1 (128 is the usual choice)")
    if not 0.0 < s.damp < 1.0:
        s.fail("damp", "must be in (0, 1), e.g. 0.01 (GPTQ) or 0.1 (SparseGPT)")


# -- modifiers --------------------------------------------------------------------------------------
class OneShotModifier(MaskedModifier):
    """Base: target selection and checks at initialize; ``compress`` is called once per target Linear."""

    one_shot = True
    supports_sharded = True  # compress reads whole weights and writes through core.distributed
    #: the calibration statistic ``compress`` needs: ``hessian``, ``sq_norms`` or None (data-free)
    statistic: ClassVar[str | None] = None

    @property
    def requires_calibration(self) -> bool:
        return self.statistic is not None

    def compression_step(self) -> CompressionStep:
        return self.modules, self.statistic, self.compress

    def initialize(self, model: nn.Module, ctx: Context) -> nn.Module:
        model = super().initialize(model, ctx)  # target resolution shared with the pruning modifiers
        blocks_name, _ = decoder_blocks(model)
        outside = [n for n in self.modules if not n.startswith(blocks_name + ".")]
        if outside:  # compression runs block by block over one list of blocks: these would stay dense
            raise RecipeError(
                f"{self.type_name}: one-shot compression walks the blocks of {blocks_name}; {outside[:3]} lie outside "
                "them (an encoder-decoder, or a head in targets). Add them to ignore, or use a training-time "
                "modifier (magnitude_pruning, qat) for them"
            )
        for name, module in self.modules.items():
            w = base_weight(module)
            if w.dtype not in (torch.float32, torch.bfloat16, torch.float16):
                raise RecipeError(f"{self.type_name}: {name} holds {w.dtype} weights; load the model in float")
            self.check_layer(name, w.shape[1])
        return model

    def check_layer(self, name: str, in_features: int) -> None:
        pass

    def compress(self, name: str, module: nn.Module, stat: torch.Tensor | None) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "applied": int(self.applied)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.applied = bool(state.get("applied", self.applied))


class _OneShotPruning(OneShotModifier):
    settings_cls = OneShotPruningSettings

    def check_layer(self, name: str, in_features: int) -> None:
        nm = parse_pattern(self.settings.pattern)
        if nm is not None and in_features % nm[1]:
            raise RecipeError(
                f"{self.type_name}: pattern {self.settings.pattern} needs in_features divisible by {nm[1]}; "
                f"{name} has {in_features} (add it to ignore)"
            )

    @property
    def nm(self) -> tuple[int, int] | None:
        return parse_pattern(self.settings.pattern)

    @torch.no_grad()
    def _install(self, name: str, module: nn.Module, new_weight: torch.Tensor, mask: torch.Tensor) -> None:
        write_(base_weight(module), new_weight)
        self.set_masks({name: mask})


class GridLinear(nn.Linear):
    """``nn.Linear`` for a ``recovery: scales`` fine-tune. The weight stays frozen on its one-shot grid,
    ``(q - zero) * scale``; the forward rescales each group by ``weight_qscale / scale``, which is
    ``(q - zero) * weight_qscale``: the integer codes stay fixed, only this layer's per-group scales train, and
    exact zeros stay zero on any grid. Made with ``from_linear``, turned back with ``to_linear`` at finalize."""

    weight_qscale: nn.Parameter  # (rows, groups), trained
    reference_scale: torch.Tensor  # (rows, groups), the one-shot scales the frozen weight was made with
    group: int  # input columns per scale
    weight_trainable: bool  # whether the weight trained before: restored by to_linear
    folded: bool  # the scales are in the weight (a sharded layer left in place): a plain Linear's forward

    @classmethod
    def from_linear(cls, linear: nn.Linear, group: int) -> GridLinear:
        """Share ``linear``'s parameters, freeze its weight, and add scales that start at 1 (until the
        one-shot step fills the reference, the layer computes exactly as ``linear``)."""
        new = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
        new.weight, new.bias = linear.weight, linear.bias
        shape = (linear.out_features, -(-linear.in_features // group))
        ones = torch.ones(shape, device=linear.weight.device, dtype=torch.float32)
        new.register_buffer("reference_scale", ones, persistent=False)  # follows .to(device), not saved
        new.weight_qscale = nn.Parameter(ones.clone())
        new.group, new.weight_trainable, new.folded = group, linear.weight.requires_grad, False
        linear.weight.requires_grad_(False)
        return new.train(linear.training)

    def to_linear(self) -> nn.Linear:
        """A plain ``nn.Linear`` with this layer's weight and bias (fold the scales in first)."""
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device="meta")
        lin.weight, lin.bias = self.weight, self.bias
        lin.weight.requires_grad_(self.weight_trainable)
        return lin.train(self.training)

    def grid_weight(self, weight: torch.Tensor | None = None, qscale: torch.Tensor | None = None) -> torch.Tensor:
        """The weight this layer computes with (from the whole tensors when given: a sharded layer)."""
        weight = self.weight if weight is None else weight
        qscale = self.weight_qscale if qscale is None else qscale
        ratio = (qscale / self.reference_scale).repeat_interleave(self.group, dim=1)
        return weight * ratio[:, : weight.shape[1]].to(weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight if self.folded else self.grid_weight(), self.bias)


class _WeightQuantizer(OneShotModifier):
    """Weight-only int quantization; grids (scales, zeros) are kept, checkpointed and exported."""

    settings_cls = RTNSettings

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self._ragged_noted: set[str] = set()
        self.scales: dict[str, torch.Tensor] = {}
        self.zeros: dict[str, torch.Tensor] = {}
        self._frozen: list[nn.Parameter] = []  # what ``scales_only`` froze; trainable again at finalize

    def initialize(self, model: nn.Module, ctx: Context) -> nn.Module:
        model = super().initialize(model, ctx)
        if self.settings.recovery == "scales_only" and not self._frozen:
            if hasattr(model, "peft_config"):
                raise RecipeError(
                    f"{self.type_name}: recovery: scales_only freezes every parameter but the quantization "
                    "scales, LoRA's too; use recovery: scales with lora"
                )
            # before any optimizer exists; the per-group scales added below are then the only trainables
            self._frozen = [p for p in model.parameters() if p.requires_grad]
            for p in self._frozen:
                p.requires_grad_(False)
        if self.settings.recovery in ("scales", "scales_only"):
            for name in list(self.modules):
                self._add_scales(model, name, ctx)
        return model

    def check_layer(self, name: str, in_features: int) -> None:
        g = self.settings.group_size
        if g and g > in_features:
            raise RecipeError(
                f"{self.type_name}: group_size {g} is larger than in_features {in_features} of {name}; "
                f"use at most {in_features}, or null for one scale per output channel"
            )
        if g and in_features % g and name not in self._ragged_noted:
            self._ragged_noted.add(name)
            logger.info(f"{self.type_name}: {name} has {in_features} inputs; its last group is {in_features % g} wide")

    @torch.no_grad()
    def _install(self, name: str, module: nn.Module, q: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor):
        write_(base_weight(module), q)
        self.scales[name], self.zeros[name] = scales, zeros
        lin = getattr(module, "base_layer", module)
        if isinstance(lin, GridLinear):  # the one-shot scales become the trainable ones' start
            lin.reference_scale.copy_(scales)
            write_(lin.weight_qscale, scales)

    def _swap(self, model: nn.Module, name: str, new: nn.Module, ctx: Context) -> None:
        """Swap the Linear of target ``name`` (a LoRA layer's base layer, under peft) for ``new``."""
        module = self.modules[name]
        ctx.swap_module(model, getattr(module, "base_layer", module), new)
        if not hasattr(module, "base_layer"):
            self.modules[name] = new  # also when ctx knows no modifiers (a modifier used alone)

    @torch.no_grad()
    def _add_scales(self, model: nn.Module, name: str, ctx: Context) -> None:
        """Freeze the weight and give the Linear a learnable scale per group, at initialize, so a Trainer's
        optimizer (built before the one-shot step runs at train begin) holds them."""
        lin = getattr(self.modules[name], "base_layer", self.modules[name])
        if type(lin) is not nn.Linear:
            return  # a subclass (e.g. a fake-quant layer) keeps its own forward: snap at finalize instead
        self._swap(model, name, GridLinear.from_linear(lin, self.settings.group_size or lin.in_features), ctx)

    @torch.no_grad()
    def _fold_scales(self, model: nn.Module, ctx: Context) -> None:
        """Write the trained scales into the plain weights and put plain ``nn.Linear`` layers back (a
        sharded layer stays, folded: FSDP2 keeps its own reference to it). Anything written into the
        frozen weight meanwhile (a LoRA merge) is rescaled with its group; the snap at finalize then
        rounds it onto the trained grid."""
        for name, module in list(self.modules.items()):
            lin = getattr(module, "base_layer", module)
            if not isinstance(lin, GridLinear) or lin.folded:
                continue
            qscale = full(lin.weight_qscale.detach()).clone()
            write_(lin.weight, lin.grid_weight(full(lin.weight.detach()), qscale))
            self.scales[name] = qscale
            del lin._parameters["weight_qscale"]
            lin.folded = True
            if is_sharded(lin.weight):
                lin.weight.requires_grad_(lin.weight_trainable)
            else:
                self._swap(model, name, lin.to_linear(), ctx)

    @torch.no_grad()
    def snap(self) -> None:
        """Round every weight back onto its saved grid (after recovery training moved it)."""
        s = self.settings
        for name, module in self.modules.items():
            if name not in self.scales:
                continue
            w = full(base_weight(module).detach()).clone()
            g = s.group_size or w.shape[1]
            for gi, a in enumerate(range(0, w.shape[1], g)):
                block = w[:, a : a + g].float()
                snapped = alg.to_grid(block, self.scales[name][:, gi], self.zeros[name][:, gi], s.bits, s.symmetric)
                # exact zeros are a sparse modifier's mask: keep them (a float zero point has no 0.0)
                w[:, a : a + g] = torch.where(block == 0, block, snapped).to(w.dtype)
            write_(base_weight(module), w)

    def finalize(self, model: nn.Module, ctx: Context) -> nn.Module:
        self._fold_scales(model, ctx)
        self.snap()
        for p in self._frozen:
            p.requires_grad_(True)
        self._frozen = []
        return super().finalize(model, ctx)

    def stats(self) -> dict[str, float]:
        return {"bits": float(self.settings.bits)} if self.scales else {}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        for n in self.scales:
            state[f"scale.{n}"] = self.scales[n]
            state[f"zero.{n}"] = self.zeros[n]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        for k, v in state.items():
            if k.startswith("scale."):
                self.scales[k[len("scale.") :]] = v.float()
            elif k.startswith("zero."):
                self.zeros[k[len("zero.") :]] = v.float()
        with torch.no_grad():  # the checkpoint's model weights hold the trained scales; the reference is ours
            for name, scale in self.scales.items():
                lin = getattr(self.modules[name], "base_layer", self.modules[name])
                if isinstance(lin, GridLinear):
                    lin.reference_scale.copy_(scale)

    def weight_grid(self) -> dict[str, Any] | None:
        s = self.settings
        return {"bits": s.bits, "group_size": s.group_size, "symmetric": s.symmetric, "zero_point": s.zero_point}

    def extra_files(self, folder: str, export_settings: Any) -> None:
        """The grid itself next to the plain safetensors (weights exactly on it), for packing or checks."""
        names = {n: plain_module_name(n) for n in self.scales}  # as in the saved model, also under peft
        save_grid(
            folder,
            {names[n]: v for n, v in self.scales.items()},
            {names[n]: v for n, v in self.zeros.items()},
            {"method": self.type_name, "observer": self.settings.observer, **self.weight_grid()},
        )
