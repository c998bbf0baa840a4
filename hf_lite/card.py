"""Model cards (README.md) written with ``huggingface_hub.ModelCard``."""

from __future__ import annotations

import os
from typing import Any

from .core.recipe import Recipe

LOAD_SNIPPETS = {
    "sequence-classification": "from transformers import AutoModelForSequenceClassification, AutoTokenizer\n"
    'model = AutoModelForSequenceClassification.from_pretrained("{repo}")\n'
    'tokenizer = AutoTokenizer.from_pretrained("{repo}")',
    "causal-lm": "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
    'model = AutoModelForCausalLM.from_pretrained("{repo}")\n'
    'tokenizer = AutoTokenizer.from_pretrained("{repo}")',
}


def _metric_rows(metrics: dict[str, dict[str, float]]) -> list[str]:
    before, after = metrics.get("before", {}), metrics.get("after", {})
    rows = []
    for key, value in after.items():
        name = key.split("_", 1)[-1]
        if not key.startswith("after_") or name not in ("accuracy", "f1", "recall", "perplexity"):
            continue
        ref = before.get(f"before_{name}")
        rec = f"{100 * value / ref:.1f}%" if ref and name != "perplexity" else "-"
        rows.append(f"| {name} | {ref if ref is None else round(ref, 4)} | {round(value, 4)} | {rec} |")
    return rows


def write_model_card(folder: str, recipe: Recipe, report: dict[str, Any], repo_id: str | None = None) -> str:
    from huggingface_hub import ModelCard, ModelCardData

    comp = report["compression"]
    task = recipe.model.task
    data = ModelCardData(
        base_model=recipe.model.name_or_path if "/" in recipe.model.name_or_path else None,
        library_name="transformers",
        pipeline_tag="text-classification" if task == "sequence-classification" else "text-generation",
        tags=["hf_lite", "compressed"],
    )
    repo = repo_id or folder
    methods = "\n".join(f"- `{m}`" for m in report["modifiers"]) or "- none (dense fine-tune)"
    size = comp.get("size_on_disk_bytes", 0) / 2**20
    text = f"""---
{data.to_yaml()}
---

# {os.path.basename(os.path.abspath(folder))}

Compressed with [hf_lite](https://pypi.org/project/hf-lite/) from `{recipe.model.name_or_path}` ({task}).

## Methods
{methods}

## Size
- parameters: {comp["parameters"]:,}
- sparsity of the transformer-block linears: {comp["sparsity"]:.2%}
- bits: {comp["bits"] if comp["bits"] is not None else "float32"}
- size on disk (safetensors): {size:.1f} MiB

## Metrics (evaluation set of the recipe)
| metric | before | after | kept |
|---|---|---|---|
{chr(10).join(_metric_rows(report["metrics"]))}

## Load
```python
{(report.get("load_snippet") or LOAD_SNIPPETS[task].format(repo=repo)).replace(folder, repo)}
```
Plain transformers loads this folder; hf_lite is not needed.

## Recipe
```yaml
{recipe.to_yaml()}```
"""
    card = ModelCard(text)
    path = os.path.join(folder, "README.md")
    card.save(path)
    return path
