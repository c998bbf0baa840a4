"""What the int-grid quantizers share: the grid they declare and write, and target checks."""

from __future__ import annotations

import torch
from torch import nn

from ..core.modifier import Modifier
from ..core.settings import RecipeError, Settings
from ..core.targets import plain_module_name
from .grids import NF4_BLOCK, save_grid


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
