"""Model cards (README.md) written with ``huggingface_hub.ModelCard``."""

from __future__ import annotations

import os
from typing import Any

from .core.recipe import Recipe
from .models import ALIASES, resolve_model_path

AUTO_CLASSES = {
    "sequence-classification": "AutoModelForSequenceClassification",
    "causal-lm": "AutoModelForCausalLM",
    "seq2seq": "AutoModelForSeq2SeqLM",
}
LOAD_SNIPPETS = {
    head: f"from transformers import {cls}, AutoTokenizer\n"
    f'model = {cls}.from_pretrained("{{repo}}")\n'
    'tokenizer = AutoTokenizer.from_pretrained("{repo}")'
    for head, cls in AUTO_CLASSES.items()
}
PIPELINE_TAGS = {
    "sequence-classification": "text-classification",
    "causal-lm": "text-generation",
    "chat": "text-generation",
    "seq2seq": "text2text-generation",
}


#: metrics shown in the card's table (the report has all of them)
METRICS = ("accuracy", "f1", "recall", "perplexity", "rouge1", "rouge2", "rougeL", "exact_match")


def _generation(report: dict[str, Any]) -> str:
    """Generated answers before/after (chat task): evaluation rows with their reference, fixed prompts."""
    gen = report.get("generation")
    if not gen or not (gen["samples"] or gen["prompts"]):
        return ""

    def quote(text: str) -> str:
        return "> " + text.strip().replace("\n", "\n> ")

    parts = ["## Generated answers\n"]
    for row in gen["samples"] + gen["prompts"]:
        parts.append(f"**Prompt**\n\n{quote(row['prompt'])}\n")
        if "reference" in row:
            parts.append(f"**Reference**\n\n{quote(row['reference'])}\n")
        for tag in ("before", "after"):
            if tag in row:
                parts.append(f"**{tag}**\n\n{quote(row[tag] or '(empty)')}\n")
    return "\n".join(parts) + "\n"


def _formats(report: dict[str, Any], head: str, repo: str) -> str:
    """How to run each format ``export.formats`` wrote next to the safetensors, with what was measured."""
    written = report.get("formats") or {}
    parts = []
    if "compressed-tensors" in written:
        parts.append(
            "**compressed-tensors** (`compressed-tensors/`: transformers with `pip install compressed-tensors`, "
            f"or vLLM)\n```python\nfrom transformers import {AUTO_CLASSES[head]}\n"
            f'model = {AUTO_CLASSES[head]}.from_pretrained("{repo}", subfolder="compressed-tensors")\n```\n'
        )
    if "onnx" in written:
        from .deploy.onnx import DISABLED_FUSIONS, FILES, deployment_summary

        measured = report.get("deployment", {}).get("onnx")
        parts.append(
            f"**ONNX** (`onnx/{FILES['fp32']}` fp32, `onnx/{FILES['int8']}` int8; onnxruntime)\n```python\n"
            "import onnxruntime as ort\n"
            f'session = ort.InferenceSession("onnx/{FILES["int8"]}", providers=["CPUExecutionProvider"],\n'
            f"                               disabled_optimizers={list(DISABLED_FUSIONS)})  # the faster layer norms\n```\n"
            + (f"Measured: {deployment_summary(measured)}.\n" if measured else "")
        )
    if "gguf" in written:
        path = written["gguf"]["path"]
        parts.append(f'**GGUF** (`{path}`, llama.cpp)\n```bash\nllama-cli -m {path} -p "Hello"\n```\n')
    return "## Other formats\n" + "\n".join(parts) + "\n" if parts else ""


#: Hub ids behind the offline aliases (kept for callers of this name; the table is ``models.ALIASES``)
ALIAS_HUB_IDS = {name: alias.hub_id for name, alias in ALIASES.items()}


def _metric_rows(metrics: dict[str, dict[str, float]]) -> list[str]:
    before, middle, after = metrics.get("before", {}), metrics.get("after_oneshot", {}), metrics.get("after", {})
    rows = []
    for key, value in after.items():
        name = key.split("_", 1)[-1]
        if not key.startswith("after_") or name not in METRICS:
            continue
        ref = before.get(f"before_{name}")
        mid = middle.get(f"oneshot_{name}")
        rec = f"{100 * value / ref:.1f}%" if ref else "-"
        cells = [name, "-" if ref is None else f"{ref:.4g}", "-" if mid is None else f"{mid:.4g}", f"{value:.4g}", rec]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def _base_license(name_or_path: str) -> str | None:
    """The ``license:`` of the base model's own card, when it is a local folder (or an offline alias)."""
    try:
        folder = resolve_model_path(name_or_path) if name_or_path in ALIASES else name_or_path
    except FileNotFoundError:
        return None
    readme = os.path.join(folder, "README.md")
    if not os.path.isfile(readme):
        return ALIASES[name_or_path].license if name_or_path in ALIASES else None
    from huggingface_hub import ModelCard

    return ModelCard.load(readme).data.to_dict().get("license")


def _layer_summary(layers: dict[str, dict[str, Any]]) -> str:
    sparsities = [v["sparsity"] for v in layers.values() if v.get("sparsity") is not None]
    if not sparsities:
        return ""
    return f"- per-layer sparsity: min {min(sparsities):.2%}, max {max(sparsities):.2%} over {len(sparsities)} layers\n"


def _classes(report: dict[str, Any]) -> str:
    names = report.get("labels")
    if not names:
        return ""
    return "## Classes\n" + ", ".join(f"{i}: `{n}`" for i, n in enumerate(names)) + " (`config.id2label`)\n\n"


def portable_name(path: str) -> str:
    """A local absolute path shortened to its last part (a published card names no local folders)."""
    return os.path.basename(path.rstrip("/")) if os.path.isabs(path) else path


def card_name(recipe: Recipe, out: str) -> str:
    """How the card and report name the folder ``out``: the Hub repo when the recipe pushes, else the path
    as given (an absolute one shortened to its last part)."""
    e = recipe.export
    name = (e.hub_repo_id or os.path.basename(os.path.abspath(out))) if e.push_to_hub else out
    return portable_name(name)


def write_model_card(folder: str, recipe: Recipe, report: dict[str, Any], repo_id: str | None = None) -> str:
    from huggingface_hub import ModelCard, ModelCardData

    comp = report["compression"]
    task, head = recipe.model.task, recipe.model.head
    name = recipe.model.name_or_path
    base = ALIASES[name].hub_id if name in ALIASES else (name if "/" in name and not os.path.exists(name) else None)
    data = ModelCardData(
        base_model=base,
        license=_base_license(name),
        library_name="transformers",
        pipeline_tag=PIPELINE_TAGS[task],
        tags=["hf_lite", "compressed"],
    )
    repo = repo_id or folder
    methods = "\n".join(f"- `{m}`" for m in report["modifiers"]) or "- none (dense fine-tune)"
    size = comp.get("size_on_disk_bytes", 0) / 2**20
    text = f"""---
{data.to_yaml()}
---

# {os.path.basename(os.path.abspath(folder))}

Compressed with [hf_lite](https://pypi.org/project/hf-lite/) from `{portable_name(name)}` ({task}).

## Methods
{methods}

## Size
- parameters: {comp["parameters"]:,}
- sparsity of the transformer-block linears: {comp["sparsity"]:.2%}
{_layer_summary(comp.get("layers", {}))}- bits: {comp["bits"] if comp["bits"] is not None else "float32"}
- size on disk (safetensors): {size:.1f} MiB

{_classes(report)}## Metrics (evaluation set of the recipe)
"before" is the model as loaded (for a fresh classification head, an untrained head); "after / before"
is the recovery when the loaded model was already trained (one-shot runs, compression of a fine-tune).

| metric | before | after one-shot | after | after / before |
|---|---|---|---|---|
{chr(10).join(_metric_rows(report["metrics"]))}

{_generation(report)}## Load
```python
{(report.get("load_snippet") or LOAD_SNIPPETS[head].format(repo=repo)).replace(folder, repo)}
```
Plain transformers loads this folder; hf_lite is not needed.

{_formats(report, head, repo)}## Recipe
```yaml
{recipe.to_yaml(portable=True)}```
"""
    card = ModelCard(text)
    path = os.path.join(folder, "README.md")
    card.save(path)
    return path
