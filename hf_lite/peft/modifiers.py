"""Parameter-efficient adaptation: head-only, LoRA and QLoRA (through peft and bitsandbytes)."""

from __future__ import annotations

import dataclasses
import logging
import re

import torch
from torch import nn

from ..core.modifier import Context, Modifier, register_modifier
from ..core.settings import RecipeError, Settings
from ..core.targets import BLOCK_PATTERN, block_index, check_patterns_match

logger = logging.getLogger(__name__)
HEADS = ("classifier", "score", "lm_head")


def _head_names(model: nn.Module) -> list[str]:
    return [n for n in HEADS if isinstance(getattr(model, n, None), nn.Module)]


def count_trainable(model: nn.Module) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total


@dataclasses.dataclass
class HeadOnlySettings(Settings):
    """Train only the task head (optionally also the last blocks) of a frozen pretrained model."""

    #: also train the last k transformer blocks
    unfreeze_last: int = 0
    #: also train BERT's pooler (the [CLS] projection feeding the classifier); sentence-transformers
    #: checkpoints such as all-MiniLM-L6-v2 ship it untrained, so a frozen pooler starves the head
    pooler: bool = True

    def validate(self) -> None:
        if self.unfreeze_last < 0:
            self.fail("unfreeze_last", "must be >= 0")


class _TrainableCount(Modifier):
    """Counts what is left trainable at initialize, for the logs and the report."""

    def __init__(self, settings):
        super().__init__(settings)
        self.trainable = self.total = 0

    def stats(self) -> dict[str, float]:
        return {"trainable_fraction": self.trainable / self.total} if self.total else {}


@register_modifier("head_only")
class HeadOnlyModifier(_TrainableCount):
    settings_cls = HeadOnlySettings

    def initialize(self, model: nn.Module, ctx: Context) -> nn.Module:
        heads = _head_names(model)
        if not heads:
            raise RecipeError(f"head_only: {type(model).__name__} has no task head named one of {HEADS}")
        n_layers = model.config.num_hidden_layers
        if self.settings.unfreeze_last > n_layers:
            raise RecipeError(f"head_only.unfreeze_last: {self.settings.unfreeze_last} > {n_layers} layers")
        keep_layers = set(range(n_layers - self.settings.unfreeze_last, n_layers))
        for name, p in model.named_parameters():
            in_kept_layer = block_index(name) in keep_layers
            in_pooler = self.settings.pooler and ".pooler." in f".{name}"
            p.requires_grad = any(name.startswith(h + ".") for h in heads) or in_kept_layer or in_pooler
        self.trainable, self.total = count_trainable(model)
        logger.info(
            "head_only: %s of %s parameters trainable (%.2f%%)",
            self.trainable,
            self.total,
            100 * self.trainable / self.total,
        )
        return model


@dataclasses.dataclass
class LoraSettings(Settings):
    """LoRA adapters through peft."""

    #: adapter rank
    r: int = 8
    #: LoRA scaling numerator (scale = alpha / r)
    alpha: int = 16
    #: dropout on the adapter input
    dropout: float = 0.05
    #: module-name suffixes or ``re:`` regexes; default: every Linear in the transformer blocks
    target_modules: list[str] | None = None
    #: modules trained in full and saved with the adapter; default: the classification head
    modules_to_save: list[str] | None = None
    #: at export, merge the adapters into the weights (plain transformers folder) or keep them apart
    merge: bool = True
    #: when merging, keep the base weight's exact zeros (LoRA on a pruned model stays sparse)
    preserve_sparsity: bool = True

    def validate(self) -> None:
        if self.r < 1:
            self.fail("r", "must be >= 1")
        if self.alpha < 1:
            self.fail("alpha", "must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            self.fail("dropout", "must be in [0, 1)")


@register_modifier("lora")
class LoraModifier(_TrainableCount):
    """Wraps the model with peft's LoRA; finalize merges (keeping sparsity) or leaves the adapter."""

    settings_cls = LoraSettings
    replaces_model = True
    supports_sharded = True

    def __init__(self, settings):
        super().__init__(settings)
        self.adapter_tmp: str | None = None  # the adapter alone, saved at finalize for extra_files

    def lora_config(self, model: nn.Module):
        from peft import LoraConfig, TaskType

        from ..models import task_of

        s = self.settings
        task = task_of(model)
        targets = s.target_modules
        if targets is None:
            # the block Linears' leaf names, only inside blocks: BERT's pooler.dense shares the leaf name
            # of the blocks' dense layers, and a bare name list would wrap it too
            leaf = {
                n.split(".")[-1]
                for n, m in model.named_modules()
                if isinstance(m, nn.Linear) and BLOCK_PATTERN.search(n)
            }
            targets = rf"(?:.*\.)?(?:layer|layers|h|blocks|block)\.\d+\.(?:.*\.)?(?:{'|'.join(sorted(leaf))})"
        else:
            check_patterns_match(model, targets, "lora.target_modules")
            if any(t.startswith("re:") for t in targets):  # peft takes one full-match regex string
                targets = "|".join(
                    f"(?:.*{t[3:]})" if t.startswith("re:") else f"(?:.*\\.{re.escape(t)})" for t in targets
                )
        heads = _head_names(model) if task == "sequence-classification" else []
        to_save = s.modules_to_save if s.modules_to_save is not None else heads
        return LoraConfig(
            r=s.r,
            lora_alpha=s.alpha,
            lora_dropout=s.dropout,
            target_modules=targets,
            modules_to_save=to_save or None,
            task_type={"causal-lm": TaskType.CAUSAL_LM, "seq2seq": TaskType.SEQ_2_SEQ_LM}.get(task, TaskType.SEQ_CLS),
        )

    def initialize(self, model: nn.Module, ctx: Context) -> nn.Module:
        try:
            from peft import get_peft_model
        except ImportError as e:
            raise RecipeError("lora needs peft: pip install 'hf-lite[peft]'") from e
        model = get_peft_model(model, self.lora_config(model))
        self.trainable, self.total = count_trainable(model)
        return model

    @torch.no_grad()
    def merge(self, model: nn.Module) -> nn.Module:
        """``merge_and_unload`` that keeps the base weights' exact zeros when ``preserve_sparsity``."""
        from peft.tuners.lora import LoraLayer

        zero_masks = {}
        if self.settings.preserve_sparsity:
            for name, m in model.named_modules():
                if isinstance(m, LoraLayer) and hasattr(m, "base_layer"):
                    w = m.base_layer.weight
                    if w.dtype.is_floating_point and (w == 0).any():
                        zero_masks[name] = (m.base_layer, w != 0)
        merged = model.merge_and_unload()
        for base, keep in zero_masks.values():
            base.weight.mul_(keep.to(base.weight.dtype))
        return merged

    def card_snippet(self, task: str, repo: str) -> str | None:
        if self.settings.merge:
            return None
        cls = {"causal-lm": "AutoPeftModelForCausalLM", "seq2seq": "AutoPeftModelForSeq2SeqLM"}.get(
            task, "AutoPeftModelForSequenceClassification"
        )
        return (
            "# the folder holds the LoRA adapter; peft loads the base model named in adapter_config.json\n"
            f'from peft import {cls}\nmodel = {cls}.from_pretrained("{repo}")'
        )

    def finalize(self, model: nn.Module, ctx: Context) -> nn.Module:
        if not self.settings.merge:
            return model
        if any(type(m).__name__ == "Linear4bit" for m in model.modules()):
            raise RecipeError(
                "lora.merge over a 4-bit base would dequantize it; set merge: false, or dequantize explicitly first"
            )
        if hasattr(model, "peft_config"):  # keep the adapter alone too (written by extra_files)
            import tempfile

            from ..core.distributed import full, is_main

            state = {k: full(v) for k, v in model.state_dict().items()}  # whole tensors, also under FSDP
            if is_main():
                self.adapter_tmp = tempfile.mkdtemp(prefix="hf_lite_adapter_")
                model.save_pretrained(self.adapter_tmp, state_dict=state)
        return self.merge(model)

    def extra_files(self, folder: str, export_settings) -> None:
        """``export.save_adapter``: the adapter alone in ``folder/adapter`` next to the merged model."""
        import os
        import shutil

        tmp = self.adapter_tmp
        if tmp is None:
            return
        if export_settings.save_adapter:
            shutil.copytree(tmp, os.path.join(folder, "adapter"))
        shutil.rmtree(tmp, ignore_errors=True)
        self.adapter_tmp = None


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
