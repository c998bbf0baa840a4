"""``qlora``: LoRA over a bitsandbytes 4-bit base (peft + bitsandbytes), CPU included."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..core.modifier import Context, register_modifier
from ..core.settings import RecipeError
from .lora import LoraModifier, LoraSettings


@dataclasses.dataclass
class QLoraSettings(LoraSettings):
    """LoRA over a bitsandbytes 4-bit base (NF4, double quantization)."""

    #: 4-bit data type of the frozen base
    quant_type: str = "nf4"
    #: quantize the absmax statistics too
    double_quant: bool = True
    merge: bool = False

    def validate(self) -> None:
        super().validate()
        if self.quant_type not in ("nf4", "fp4"):
            self.fail("quant_type", "use nf4 or fp4")


def guard_cpu_4bit_training(model: nn.Module) -> int:
    """bitsandbytes repacks ``Linear4bit`` for CPU inference after any eval forward, after which
    LoRA above it silently receives no gradient; keeping the training layout avoids that."""
    n = 0
    for m in model.modules():
        if hasattr(m, "support_avx512bf16_for_cpu"):
            m.support_avx512bf16_for_cpu = False
            n += 1
    return n


@register_modifier("qlora")
class QLoraModifier(LoraModifier):
    """Quantizes the target Linears to bitsandbytes 4-bit in place, then adds LoRA adapters."""

    supports_sharded = False  # bitsandbytes 4-bit weights are not sharded by FSDP2 here

    settings_cls = QLoraSettings

    def initialize(self, model: nn.Module, ctx: Context) -> nn.Module:
        try:
            import bitsandbytes as bnb
        except ImportError as e:
            raise RecipeError("qlora needs bitsandbytes: pip install 'hf-lite[bnb]'") from e
        from peft.tuners.tuners_utils import check_target_module_exists

        s = self.settings
        config = self.lora_config(model)
        for name, module in list(model.named_modules()):
            # exactly the Linears LoRA will wrap (peft's own matching), so no frozen 4-bit layer lacks an adapter
            if not isinstance(module, nn.Linear) or not check_target_module_exists(config, name):
                continue
            q = bnb.nn.Linear4bit(
                module.in_features,
                module.out_features,
                bias=module.bias is not None,
                compute_dtype=torch.float32,
                compress_statistics=s.double_quant,
                quant_type=s.quant_type,
            )
            q.weight = bnb.nn.Params4bit(
                module.weight.data.clone(),
                requires_grad=False,
                quant_type=s.quant_type,
                compress_statistics=s.double_quant,
            )
            if module.bias is not None:
                q.bias = nn.Parameter(module.bias.data.clone(), requires_grad=False)
            q = q.to(module.weight.device)  # quantizes
            parent = model.get_submodule(name.rsplit(".", 1)[0])
            setattr(parent, name.rsplit(".", 1)[1], q)
        guard_cpu_4bit_training(model)
        return super().initialize(model, ctx)
