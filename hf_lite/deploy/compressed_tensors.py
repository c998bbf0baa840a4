"""compressed-tensors ``pack-quantized``: int4/int8 weight-only, loaded by transformers and vLLM.

Our integer grid is written as it is. Each target weight was exported exactly on its grid,
``W = (q - zero) * scale``, so the integer codes are read back from it. They are then stored through
compressed-tensors' own compressor, with the scales unchanged. compressed-tensors keeps codes and zero
points as signed integers, so an asymmetric 4-bit code q in [0, 15] is stored as q - 8 and its zero
point as zero - 8. The difference, and so every dequantized weight, is the same. The exporter checks
this by decompressing every layer and comparing it with the weight it came from.

Loading: symmetric grids reload in transformers (``from_pretrained`` with compressed-tensors installed)
with the same logits. Asymmetric grids are written in the layout vLLM reads, but transformers 5.x
cannot reload them yet (upstream; a warning says so).

Not covered: GGUF Q4_1-style float zero points (compressed-tensors stores integer zero points), groups
that do not divide a layer's inputs, and sparsity (compressed-tensors 0.19 ships no sparse compressor).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from typing import Any

import torch

from ..core.settings import RecipeError

logger = logging.getLogger(__name__)

#: files copied from the exported folder (model weights and config are rewritten)
COPIED = (
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "merges.txt",
    "vocab.json",
    "chat_template.jinja",
    "added_tokens.json",
)


def require() -> None:
    try:
        import compressed_tensors  # noqa: F401
    except ImportError as e:
        raise RecipeError(
            "export format compressed-tensors needs the compressed-tensors package: pip install 'hf-lite[deploy]'"
        ) from e


def check_grids(grids: list[dict[str, Any]]) -> None:
    """The recipe must leave the weights on exactly one integer grid that compressed-tensors can store."""
    if not grids:
        raise RecipeError(
            "export.formats compressed-tensors stores integer weights: add a quantizer that leaves them on an "
            "int grid (rtn, gptq, qat with grid: int, ptq method: rtn), or drop the format"
        )
    if len(grids) > 1:
        raise RecipeError("export.formats compressed-tensors: the recipe has several quantizers; keep one")
    if grids[0]["zero_point"] == "float":
        raise RecipeError(
            "export.formats compressed-tensors stores integer zero points; zero_point: float (GGUF Q4_1's grid) "
            "cannot be written exactly: use zero_point: int, or drop the format"
        )


def _load_folder_weights(folder: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    files = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors") and f.startswith("model"))
    if not files:
        raise RecipeError(f"{folder}: no model*.safetensors to convert")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(os.path.join(folder, f)))
    return state


def _scheme(names: list[str], grid: dict[str, Any]):
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    group = grid["group_size"]
    args = QuantizationArgs(
        num_bits=int(grid["bits"]),
        type="int",
        symmetric=bool(grid["symmetric"]),
        strategy="group" if group else "channel",
        group_size=group,
    )
    return QuantizationScheme(targets=sorted(names), weights=args, format="pack-quantized")


def _codes(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, grid: dict[str, Any]) -> torch.Tensor:
    """compressed-tensors' signed codes and zero points of an on-grid weight, checked to be exact."""
    group = grid["group_size"] or w.shape[1]
    s = scale.repeat_interleave(group, dim=1)
    z = zero.repeat_interleave(group, dim=1)
    q = torch.round(w.float() / s + z)
    if not torch.equal((q - z) * s, w.float()):
        worst = ((q - z) * s - w.float()).abs().max().item()
        raise RecipeError(f"a weight is not on its grid (largest error {worst:.3g}); re-export the model with hf_lite")
    return q


def export_compressed_tensors(folder: str, out: str) -> None:
    """Write ``folder`` (an hf_lite export with a quantization grid) as compressed-tensors into ``out``."""
    require()
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
    from compressed_tensors.quantization import QuantizationConfig
    from safetensors.torch import save_file

    from ..quantization.grids import GRID_FILE, load_grid

    loaded = load_grid(folder)
    if loaded is None:
        raise RecipeError(
            f"{folder} has no {GRID_FILE}: compressed-tensors needs the integer grid an hf_lite quantizer "
            "(rtn, gptq, qat, ptq rtn) writes next to the model"
        )
    scales, zeros, grid = loaded
    check_grids([grid])
    if not grid["symmetric"]:
        logger.warning(
            "compressed-tensors: asymmetric grids are written as pack-quantized with packed zero points, the "
            "layout vLLM reads; transformers 5.x with compressed-tensors 0.19 cannot reload such a folder "
            "(zero-point shape mismatch, llm-compressor issue 1618). Use symmetric: true for a folder both load"
        )
    bits, symmetric = int(grid["bits"]), bool(grid["symmetric"])
    state = _load_folder_weights(folder)
    scheme = _scheme(list(scales), grid)
    offset = 0 if symmetric else 2 ** (bits - 1)  # unsigned codes [0, 2^b - 1] -> signed, as CT keeps them
    for name in scales:
        w = state.pop(f"{name}.weight")
        cols = w.shape[1]
        if grid["group_size"] and cols % grid["group_size"]:
            raise RecipeError(
                f"compressed-tensors: group_size {grid['group_size']} does not divide {cols} inputs of {name}; "
                "its groups must tile every layer (pick a divisor, or null for per-channel scales)"
            )
        scale, zero = scales[name], zeros[name]
        _codes(w, scale, zero, grid)  # refuses a weight that is off its grid
        layer = {"weight": w.float(), "weight_scale": scale.to(torch.float32)}
        if not symmetric:
            layer["weight_zero_point"] = (zero - offset).to(torch.int8)
        packed = PackedQuantizationCompressor.compress(layer, scheme)
        back = PackedQuantizationCompressor.decompress(packed, scheme)["weight"]
        if not torch.equal(back.float(), w.float()):
            raise RecipeError(f"compressed-tensors: {name} does not round-trip exactly; please report this")
        state.update({f"{name}.{k}": v.contiguous() for k, v in packed.items()})
    os.makedirs(out, exist_ok=True)
    save_file(state, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    shutil.copy(os.path.join(folder, "config.json"), os.path.join(out, "config.json"))
    for f in COPIED:
        if os.path.isfile(os.path.join(folder, f)):
            shutil.copy(os.path.join(folder, f), os.path.join(out, f))
    qconfig = QuantizationConfig(
        config_groups={"group_0": scheme}, format="pack-quantized", quantization_status="compressed"
    )
    ModelCompressor(quantization_config=qconfig).update_config(out)
    with open(os.path.join(out, "hf_lite_format.json"), "w") as f:
        json.dump({"from": os.path.basename(os.path.abspath(folder)), "grid": grid}, f, indent=2)
