"""What a model is: parameters, sparsity per layer, bits per layer, size on disk."""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from torch import nn

from .core.distributed import full
from .core.targets import BLOCK_PATTERN


def _effective_bits(weight: torch.Tensor) -> float | None:
    """4 or 8 when the weights lie on a small grid, None for ordinary float weights.

    4-bit: every 32-wide chunk of a row holds at most 16 distinct values (int4 per channel or in
    groups of 32 or more, NF4, FP4) and values repeat (a sparse float row has few values, but no
    repeats). 8-bit: a row's values are integer multiples of max|w|/127. Sampled on the first rows.
    """
    w = weight.detach().float().reshape(weight.shape[0], -1)[:8]
    chunk = 32 if w.shape[1] % 32 == 0 else w.shape[1]
    pieces = w.reshape(-1, chunk)
    distinct = [torch.unique(r[r != 0]).numel() for r in pieces]
    nonzero = int((pieces != 0).sum())
    if max(distinct) <= 16 and nonzero >= 1.25 * sum(distinct):
        return 4.0
    levels = max(int(torch.unique(r).numel()) for r in w)
    if levels <= 256:
        scale = w.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127
        q = w / scale
        if torch.allclose(q, q.round(), atol=1e-3):
            return 8.0
    return None


def linear_layers(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear) and BLOCK_PATTERN.search(n)}


def model_report(model: nn.Module, folder: str | None = None) -> dict[str, Any]:
    """Parameter count, global and per-layer sparsity of block Linears, bits per layer, disk size."""
    layers = {}
    zeros = total = 0
    for name, m in linear_layers(model).items():
        w = full(m.weight.detach())  # whole, also when FSDP shards it (every rank calls this)
        if w.dtype in (torch.uint8, torch.int8):  # bitsandbytes-packed
            layers[name] = {"shape": list(w.shape), "sparsity": None, "bits": 8 if w.dtype == torch.int8 else 4}
            continue
        z = int((w == 0).sum())
        layers[name] = {"shape": list(w.shape), "sparsity": round(z / w.numel(), 6), "bits": _effective_bits(w)}
        zeros += z
        total += w.numel()
    report = {
        "parameters": int(sum(p.numel() for p in model.parameters())),  # a DTensor's numel is the whole
        "block_linear_parameters": total,
        "sparsity": round(zeros / total, 6) if total else 0.0,
        "layers": layers,
    }
    bits = [v["bits"] for v in layers.values() if v["bits"] is not None]
    report["bits"] = max(bits) if bits and len(bits) == len(layers) else None
    if folder:
        report["size_on_disk_bytes"] = folder_size(folder)
    return report


def folder_size(folder: str, suffixes: tuple[str, ...] = (".safetensors",)) -> int:
    """Bytes of the model's weight files: the folder's own; its subfolders (an adapter next to a merged
    model, checkpoints) only when the folder holds no weights itself (an adapter-only export)."""
    top = [f for f in os.listdir(folder) if f.endswith(suffixes) and os.path.isfile(os.path.join(folder, f))]
    if top:
        return sum(os.path.getsize(os.path.join(folder, f)) for f in top)
    return sum(
        os.path.getsize(os.path.join(root, f))
        for root, dirs, files in os.walk(folder)
        if "checkpoints" not in os.path.relpath(root, folder).split(os.sep)
        for f in files
        if f.endswith(suffixes)
    )


def report_folder(folder: str) -> dict[str, Any]:
    """Report for a saved model folder (loads it with plain transformers)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(folder)
    archs = config.architectures or []
    cls = AutoModelForCausalLM if any("CausalLM" in a for a in archs) else AutoModelForSequenceClassification
    model = cls.from_pretrained(folder)
    rep = model_report(model, folder)
    saved = os.path.join(folder, "report.json")
    if os.path.exists(saved):
        with open(saved) as f:
            rep["metrics"] = json.load(f).get("metrics")
    return rep


def format_report(rep: dict[str, Any]) -> str:
    lines = [
        f"parameters: {rep['parameters']:,}",
        f"sparsity (block linears): {rep['sparsity']:.2%}",
        f"bits: {rep['bits'] if rep['bits'] is not None else 'float'}",
    ]
    if "size_on_disk_bytes" in rep:
        lines.append(f"size on disk: {rep['size_on_disk_bytes'] / 2**20:.1f} MiB")
    lines.append(f"{'layer':<55} {'shape':>14} {'sparsity':>9} {'bits':>5}")
    for name, v in rep["layers"].items():
        sp = "-" if v["sparsity"] is None else f"{v['sparsity']:.2%}"
        bits = "fp" if v["bits"] is None else str(int(v["bits"]))
        lines.append(f"{name:<55} {'x'.join(map(str, v['shape'])):>14} {sp:>9} {bits:>5}")
    if rep.get("metrics"):
        lines.append(f"metrics: {json.dumps(rep['metrics'])}")
    return "\n".join(lines)
