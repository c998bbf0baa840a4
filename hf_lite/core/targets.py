"""Which modules a modifier acts on.

Default: every ``nn.Linear`` inside the repeated transformer blocks (``layer.N.`` / ``layers.N.`` /
``h.N.`` / ``blocks.N.``) - never embeddings, poolers or the task head. ``targets``/``ignore`` take
module-name suffixes (``query``, ``mlp.down_proj``) or regular expressions prefixed with ``re:``,
the same convention as peft's ``target_modules``.
"""

from __future__ import annotations

import re

from torch import nn

from .settings import RecipeError

BLOCK_PATTERN = re.compile(r"(?:^|\.)(?:layer|layers|h|blocks|block)\.(\d+)\.")


def block_index(name: str) -> int | None:
    """Index of the transformer block a module or parameter name lies in (None outside the blocks)."""
    found = BLOCK_PATTERN.search(name)
    return int(found.group(1)) if found else None


def plain_module_name(name: str) -> str:
    """The module's name in the unwrapped model (what a merged, saved model's weights are called)."""
    return name.removeprefix("base_model.model.").removesuffix(".base_layer")


def _name_matches(name: str, pattern: str) -> bool:
    name = plain_module_name(name)  # match what the user sees in the saved model, also under peft
    if pattern.startswith("re:"):
        return re.search(pattern[3:], name) is not None
    return name == pattern or name.endswith("." + pattern)


def find_linear_targets(
    model: nn.Module,
    targets: list[str] | None = None,
    ignore: list[str] | None = None,
    where: str = "modifier",
) -> dict[str, nn.Linear]:
    """Map of qualified name -> Linear module. Raises when the selection is empty."""
    chosen: dict[str, nn.Linear] = {}
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or ".lora_" in name or ".modules_to_save." in name:
            continue  # LoRA adapters and peft's trainable head copies are not compression targets
        if targets:
            if not any(_name_matches(name, p) for p in targets):
                continue
        elif not BLOCK_PATTERN.search(name):
            continue
        if ignore and any(_name_matches(name, p) for p in ignore):
            continue
        chosen[name] = module
    if not chosen:
        linear_names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][:8]
        raise RecipeError(
            f"{where}: targets={targets!r} ignore={ignore!r} match no nn.Linear in "
            f"{type(model).__name__}; some Linear names are {linear_names}"
        )
    return chosen


def check_patterns_match(model: nn.Module, patterns: list[str] | None, where: str) -> None:
    """Every pattern in ``targets`` must match at least one Linear (typos fail loudly)."""
    if not patterns:
        return
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    for p in patterns:
        if not any(_name_matches(n, p) for n in names):
            raise RecipeError(f"{where}: target pattern {p!r} matches no nn.Linear; some Linear names are {names[:8]}")


def decoder_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """(name, blocks): the largest ModuleList whose items are named like ``layers.N``/``layer.N``/``h.N``."""

    def size(blocks: nn.ModuleList) -> int:
        return len(blocks) * sum(p.numel() for p in blocks[0].parameters())

    lists = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.ModuleList) and len(m) and BLOCK_PATTERN.search(f"{name}.0.")
    ]
    if not lists:
        raise RecipeError(
            f"{type(model).__name__}: no list of transformer blocks found (a ModuleList named "
            "layers/layer/h/blocks); one-shot and structured methods need one"
        )
    return max(lists, key=lambda item: size(item[1]))


def set_decoder_blocks(model: nn.Module, blocks: nn.ModuleList) -> None:
    """Replace the list :func:`decoder_blocks` finds (e.g. to keep some blocks of a teacher)."""
    name, _ = decoder_blocks(model)
    owner, _, attr = name.rpartition(".")
    setattr(model.get_submodule(owner) if owner else model, attr, blocks)


def keep_decoder_blocks(model: nn.Module, layers: list[int]) -> None:
    """Keep only the blocks ``layers`` (in that order) of ``model``, in place: the config's layer count and
    per-layer types follow, and attention modules get their new index (the KV cache is indexed by it)."""
    _, blocks = decoder_blocks(model)
    kept = nn.ModuleList(blocks[i] for i in layers)
    for new_idx, block in enumerate(kept):
        for m in block.modules():
            if hasattr(m, "layer_idx"):
                m.layer_idx = new_idx
    set_decoder_blocks(model, kept)
    model.config.num_hidden_layers = len(layers)
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = [model.config.layer_types[i] for i in layers]


def replace_module(model: nn.Module, old: nn.Module, new: nn.Module) -> None:
    """Put ``new`` wherever ``old`` is a submodule of ``model``. Found by identity, not by name: names
    change when a wrapper comes or goes (a LoRA merge turns ``x.base_layer`` into ``x``)."""
    found = False
    for parent in model.modules():
        for child_name, child in parent._modules.items():
            if child is old:
                parent._modules[child_name] = new
                found = True
    if not found:
        raise ValueError(f"replace_module: {type(old).__name__} is not a submodule of {type(model).__name__}")
