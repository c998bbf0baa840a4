"""Deployment formats written next to the plain safetensors export (``export.formats``).

``safetensors`` is the export itself (the output folder). Every other format goes to a subfolder named
after it, written from the exported folder, so ``hf-lite export MODEL_DIR --format F`` does the same
for a folder written earlier.
"""

from __future__ import annotations

import os
from typing import Any

from ..core.settings import RecipeError

#: format -> the subfolder it is written to
SUBFOLDERS = {"compressed-tensors": "compressed-tensors", "onnx": "onnx", "gguf": "gguf"}
FORMATS = ("safetensors", *SUBFOLDERS)


def check_formats(
    formats: list[str], modifiers: list[Any], task: str = "sequence-classification", export: Any = None
) -> None:
    """Refuse, before any training, a format the recipe's task or modifiers cannot produce."""
    if "onnx" in formats:
        from .onnx import check_task, require

        check_task(task)
        require()
    if "gguf" in formats:
        from .gguf import check_exact, check_task, require

        check_task(task)
        require()
        if export is not None and export.gguf_exact:
            check_exact([g for m in modifiers if (g := m.weight_grid()) is not None], export.gguf_type)
    if "compressed-tensors" in formats:
        from .compressed_tensors import check_grids, require

        require()
        check_grids([g for m in modifiers if (g := m.weight_grid()) is not None])


def check_model(model: Any, formats: list[str], modifiers: list[Any]) -> None:
    """Refuse, when the trainer is built (before training), a model the recipe's formats cannot hold: an
    architecture GGUF does not map, or an int grid whose groups do not divide a layer's inputs (the
    compressed-tensors packer needs whole groups)."""
    if "gguf" in formats:
        from .gguf import check_model as check_gguf

        check_gguf(getattr(model, "config", None))
    if "compressed-tensors" in formats:
        for m in modifiers:
            group = (m.weight_grid() or {}).get("group_size")
            for name, module in m.modules.items() if group else ():
                cols = getattr(module, "base_layer", module).in_features
                if cols % group:
                    raise RecipeError(
                        f"export.formats: compressed-tensors packs whole groups; {m.type_name} group_size {group} "
                        f"does not divide the {cols} inputs of {name}. Use a divisor of {cols}, or drop "
                        "compressed-tensors from export.formats"
                    )


def write_formats(folder: str, formats: list[str], gguf_type: str = "auto") -> dict[str, dict[str, Any]]:
    """Write every format but ``safetensors`` from the exported ``folder``; their paths and sizes."""
    from ..report import folder_size

    written = {}
    for fmt in formats:
        if fmt == "safetensors":
            written[fmt] = {"path": ".", "size_bytes": folder_size(folder)}
            continue
        out = os.path.join(folder, SUBFOLDERS[fmt])
        written.update(_entries(folder, fmt, _write(fmt, folder, out, gguf_type)))
    return written


def _entries(folder: str, fmt: str, result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """report.json's ``formats`` entries of ``fmt`` written to its subfolder of ``folder``."""
    from ..report import folder_size

    out = os.path.join(folder, SUBFOLDERS[fmt])
    entries = {fmt: {"path": SUBFOLDERS[fmt], "size_bytes": folder_size(out, _SUFFIXES[fmt])}}
    if fmt == "gguf":
        entries[fmt].update({k: v for k, v in result.items() if k != "path"})
        entries[fmt]["path"] = os.path.relpath(result["path"], folder)
    if fmt == "onnx":
        from .onnx import FILES

        for kind, name in FILES.items():
            entries[f"onnx_{kind}"] = {"path": f"onnx/{name}", "size_bytes": os.path.getsize(os.path.join(out, name))}
    return entries


def export_folder(folder: str, fmt: str, out: str | None = None, gguf_type: str = "auto") -> tuple[str, bool]:
    """``hf-lite export``: write ``fmt`` for an exported folder (to ``out`` or the format's subfolder).
    Returns where, and whether the folder's report.json and model card now list it (folders of a run)."""
    if fmt not in SUBFOLDERS:
        raise RecipeError(f"export format {fmt!r}: choose one of {sorted(SUBFOLDERS)}")
    out = out or os.path.join(folder, SUBFOLDERS[fmt])
    if os.path.isdir(out) and os.listdir(out):
        raise RecipeError(f"{out} exists and is not empty; choose another folder with --out")
    if fmt == "onnx":
        from transformers import AutoConfig

        from .onnx import check_task

        archs = AutoConfig.from_pretrained(folder).architectures or []
        check_task("sequence-classification" if any(a.endswith("ForSequenceClassification") for a in archs) else "")
    inside = os.path.abspath(out) == os.path.abspath(os.path.join(folder, SUBFOLDERS[fmt]))
    run = _run_record(folder) if inside else None  # read first: a broken record stops before writing
    result = _write(fmt, folder, out, gguf_type)
    if run is None:
        return out, False
    report, recipe = run
    report["formats"] = {**(report.get("formats") or {}), **_entries(folder, fmt, result)}
    _add_to_card(folder, report, recipe)
    return out, True


def _run_record(folder: str):
    """(report, recipe) of a folder written by an hf_lite run (report.json + recipe.yaml), else None."""
    report_path, recipe_path = (os.path.join(folder, f) for f in ("report.json", "recipe.yaml"))
    if not (os.path.isfile(report_path) and os.path.isfile(recipe_path)):
        return None
    import json

    from ..core.recipe import load_recipe

    try:
        with open(report_path) as f:
            report = json.load(f)
    except ValueError as e:
        raise RecipeError(f"{report_path} is not valid JSON ({e}); remove it or give --out") from None
    return report, load_recipe(recipe_path)


def _add_to_card(folder: str, report: dict[str, Any], recipe) -> None:
    """Write the run's updated report and rewrite its model card from it, so the card says how to run
    every format the folder holds."""
    from ..card import card_name, write_model_card
    from ..export import write_json

    write_json(os.path.join(folder, "report.json"), report)
    write_model_card(folder, recipe, report, repo_id=card_name(recipe, folder))


#: the files whose bytes count as a format's size
_SUFFIXES = {"compressed-tensors": (".safetensors",), "onnx": (".onnx",), "gguf": (".gguf",)}


def _write(fmt: str, folder: str, out: str, gguf_type: str = "auto") -> dict[str, Any]:
    if fmt == "compressed-tensors":
        from .compressed_tensors import export_compressed_tensors

        export_compressed_tensors(folder, out)
    elif fmt == "onnx":
        from .onnx import export_onnx

        export_onnx(folder, out)
    elif fmt == "gguf":
        from .gguf import export_gguf

        return export_gguf(folder, out, gguf_type)
    return {}
