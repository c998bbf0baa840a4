"""``lora``: low-rank adapters through peft, merged at finalize so that masks and sparsity survive."""

from __future__ import annotations

import dataclasses
import re

import torch
from torch import nn

from ..core.modifier import Context, register_modifier
from ..core.settings import RecipeError, Settings
from ..core.targets import BLOCK_PATTERN, check_patterns_match
from .common import _head_names, _TrainableCount, count_trainable


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
