"""``ptq``: post-training quantization at finalize (RTN onto an int grid, or torch dynamic int8)."""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
from torch import nn

from ..core.distributed import full, write_
from ..core.modifier import Context, register_modifier
from ..core.settings import Settings
from ..core.targets import find_linear_targets
from .common import _check_grid_settings, _check_targets, _IntGridModifier
from .grids import int_fake_quant, int_qparams


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
