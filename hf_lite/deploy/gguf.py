"""GGUF for llama.cpp: Llama-architecture causal LMs (SmolLM, Llama, TinyLlama...) with a byte-level
BPE tokenizer, written with the ``gguf`` package.

Types: ``f32``, ``f16``, ``q8_0``, ``q4_0``, ``q4_1`` for the block Linears (embeddings: f32/f16 as the
type, q8_0 for the quantized types; norms always f32). When the export holds an hf_lite integer grid
that a GGUF type can hold, the block Linears are written from it: our integer codes become the GGUF
codes and our scales (and zero points) its block scales and minimums, rounded to float16 as GGUF
stores them (symmetric int4 in groups of 32 -> Q4_0, int4 with a zero point -> Q4_1, symmetric int8 in
groups of 32 -> Q8_0). Otherwise the ``gguf`` package quantizes the float weights itself; the result
says which happened.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import numpy as np

from ..core.settings import RecipeError

logger = logging.getLogger(__name__)

GGUF_TYPES = ("f32", "f16", "q8_0", "q4_0", "q4_1")
#: the grid each quantized type holds exactly: (bits, symmetric or None for either, block)
EXACT = {"q4_0": (4, True, 32), "q4_1": (4, None, 32), "q8_0": (8, True, 32)}
#: HF Llama weight name (after ``model.layers.N.``) -> GGUF tensor name (after ``blk.N.``)
BLOCK_NAMES = {
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
}
TOP_NAMES = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}  # fmt: skip


def require() -> None:
    try:
        import gguf  # noqa: F401
    except ImportError as e:
        raise RecipeError("export format gguf needs the gguf package: pip install 'hf-lite[models]'") from e


def check_task(task: str) -> None:
    if task not in ("causal-lm", "chat"):
        raise RecipeError(
            f"export.formats: gguf is written for Llama-architecture causal LMs; this recipe's model.task is "
            f"{task}. For classifiers use onnx"
        )


def check_model(config: Any) -> None:
    """Refuse, before training, an architecture this writer does not map."""
    if getattr(config, "model_type", None) != "llama":
        raise RecipeError(
            f"export.formats: gguf supports the llama architecture (SmolLM, Llama, TinyLlama); this model is "
            f"{getattr(config, 'model_type', '?')}. Convert it with llama.cpp's convert_hf_to_gguf.py instead"
        )


def _permute(w: np.ndarray, heads: int) -> np.ndarray:
    """HF's rotary layout (two halves per head) -> GGUF's interleaved pairs, for q and k projections."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def auto_type(folder: str) -> str:
    """The GGUF type that holds the folder's hf_lite grid exactly, else q8_0."""
    from ..quantization.grids import load_grid

    loaded = load_grid(folder)
    grid = loaded[2] if loaded else None
    return next((t for t in ("q4_0", "q4_1", "q8_0") if _grid_fits(grid, t)), "q8_0")


def _pack_nibbles(q: np.ndarray) -> np.ndarray:
    """[blocks, 32] codes in 0..15 -> [blocks, 16] bytes, GGUF's order (element j low, j + 16 high)."""
    q = q.astype(np.uint8).reshape(q.shape[0], 2, 16)
    return q[:, 0, :] | (q[:, 1, :] << np.uint8(4))


def _exact_blocks(codes: np.ndarray, scale: np.ndarray, zero: np.ndarray, qtype: str) -> np.ndarray:
    """GGUF blocks from our codes (rows x cols) and per-group scale/zero (rows x cols/32)."""
    rows, cols = codes.shape
    q = codes.reshape(rows * cols // 32, 32)
    d = scale.reshape(-1, 1).astype(np.float16).view(np.uint8)
    if qtype == "q8_0":
        return np.concatenate([d, q.astype(np.int8).view(np.uint8)], axis=1).reshape(rows, -1)
    if qtype == "q4_0":  # value = d * (q - 8); our symmetric codes are in [-8, 7]
        return np.concatenate([d, _pack_nibbles(q + 8)], axis=1).reshape(rows, -1)
    m = (-zero * scale).reshape(-1, 1).astype(np.float16).view(np.uint8)  # value = d * q + m
    return np.concatenate([d, m, _pack_nibbles(q)], axis=1).reshape(rows, -1)


def check_exact(grids: list[dict[str, Any]], gguf_type: str) -> str:
    """``export.gguf_exact``: the GGUF type that holds the recipe's one int grid exactly, or a RecipeError."""
    holds = "q4_0: symmetric int4 in groups of 32; q4_1: int4 g32 with a zero point; q8_0: symmetric int8 g32"
    if len(grids) != 1:
        raise RecipeError(
            f"export.gguf_exact: needs exactly one int-grid quantizer in modifiers (qat, rtn, gptq, ptq rtn); this "
            f"recipe has {len(grids)}. Add one with a grid GGUF holds ({holds}) or remove gguf_exact"
        )
    grid = grids[0]
    if gguf_type == "auto":
        fitting = [t for t in EXACT if _grid_fits(grid, t)]
        if fitting:
            return fitting[0]
    elif _grid_fits(grid, gguf_type):
        return gguf_type
    got = f"int{grid.get('bits')} group_size {grid.get('group_size')}, symmetric {grid.get('symmetric')}"
    raise RecipeError(
        f"export.gguf_exact: gguf_type {gguf_type} cannot hold the recipe's grid ({got}) exactly ({holds}); "
        "change the quantizer's grid to one of these, or remove gguf_exact to let the gguf package re-quantize"
    )


def _grid_fits(grid: dict[str, Any] | None, qtype: str) -> bool:
    if grid is None or qtype not in EXACT:
        return False
    bits, symmetric, block = EXACT[qtype]
    return (
        int(grid.get("bits", 0)) == bits
        and grid.get("group_size") == block
        and (symmetric is None or bool(grid.get("symmetric")) == symmetric)
        and (qtype != "q4_1" or not grid.get("symmetric"))
    )


def _tokenizer_metadata(writer, folder: str, config: Any) -> None:
    import gguf
    from transformers import AutoTokenizer

    path = os.path.join(folder, "tokenizer.json")
    if not os.path.isfile(path):
        raise RecipeError(f"gguf: {folder} has no tokenizer.json (a fast tokenizer is needed)")
    with open(path, encoding="utf-8") as f:
        spec = json.load(f)
    model = spec.get("model", {})
    pre = spec.get("pre_tokenizer") or {}
    if model.get("type") != "BPE" or pre.get("type") != "ByteLevel":
        raise RecipeError(
            "gguf: only byte-level BPE tokenizers (GPT-2 style: SmolLM, Llama 3, Qwen) are converted; this one is "
            f"{model.get('type')} with a {pre.get('type')} pre-tokenizer"
        )
    tok = AutoTokenizer.from_pretrained(folder)
    vocab_size = int(config.vocab_size)
    by_id = {i: t for t, i in model["vocab"].items()}
    added = {a["id"]: a for a in spec.get("added_tokens", [])}
    tokens, types = [], []
    for i in range(vocab_size):
        if i in added:
            tokens.append(added[i]["content"])
            types.append(gguf.TokenType.CONTROL if added[i].get("special") else gguf.TokenType.USER_DEFINED)
        elif i in by_id:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    # the GPT-2 split regex alone is llama.cpp's "gpt-2"; other splits are not identified here
    plain = pre.get("use_regex", True) and not pre.get("add_prefix_space", False)
    if not plain:
        logger.warning("gguf: unrecognised pre-tokenizer settings; llama.cpp will use its default split")
    writer.add_tokenizer_pre("gpt-2" if plain else "default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for key, value in (("bos", tok.bos_token_id), ("eos", tok.eos_token_id), ("pad", tok.pad_token_id)):
        if value is not None:
            getattr(writer, f"add_{key}_token_id")(int(value))
    writer.add_add_bos_token(False)
    if getattr(tok, "chat_template", None):
        writer.add_chat_template(tok.chat_template)


def _header(writer, folder: str, config: Any, qtype: str) -> None:
    """The llama architecture's hyper-parameters and the tokenizer, as llama.cpp reads them."""
    heads = int(config.num_attention_heads)
    writer.add_name(os.path.basename(os.path.abspath(folder)))
    writer.add_context_length(int(config.max_position_embeddings))
    writer.add_embedding_length(int(config.hidden_size))
    writer.add_block_count(int(config.num_hidden_layers))
    writer.add_feed_forward_length(int(config.intermediate_size))
    writer.add_head_count(heads)
    writer.add_head_count_kv(int(config.num_key_value_heads or heads))
    writer.add_rope_dimension_count(int(getattr(config, "head_dim", None) or config.hidden_size // heads))
    theta = getattr(config, "rope_theta", None) or (getattr(config, "rope_parameters", None) or {}).get("rope_theta")
    writer.add_rope_freq_base(float(theta or 10000.0))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(int(config.vocab_size))
    writer.add_file_type({"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 7}[qtype])
    _tokenizer_metadata(writer, folder, config)


def _gguf_name(name: str) -> str:
    """HF Llama weight name -> GGUF tensor name."""
    if name in TOP_NAMES:
        return TOP_NAMES[name]
    parts = name.split(".")  # model.layers.N.<rest>
    rest = ".".join(parts[3:])
    if parts[:2] != ["model", "layers"] or rest not in BLOCK_NAMES:
        raise RecipeError(f"gguf: no GGUF name for the weight {name}")
    return f"blk.{parts[2]}.{BLOCK_NAMES[rest]}"


def _rotary_heads(target: str, config: Any) -> int | None:
    """Heads to permute a q or k projection's rows by (None for other tensors)."""
    heads = int(config.num_attention_heads)
    if target.endswith("attn_q.weight"):
        return heads
    if target.endswith("attn_k.weight"):
        return int(config.num_key_value_heads or heads)
    return None


def _blocks_from_grid(tensor, scale, zero, grid, heads, kind: str) -> np.ndarray:
    """GGUF blocks holding hf_lite's own integer codes and scales (no re-rounding)."""
    from .compressed_tensors import _codes

    codes = _codes(tensor, scale, zero, grid).numpy()
    scale, zero = scale.numpy(), zero.numpy()
    if heads is not None:  # rows move with their scales
        codes, scale, zero = _permute(codes, heads), _permute(scale, heads), _permute(zero, heads)
    return _exact_blocks(codes, scale, zero, kind)


def export_gguf(folder: str, out: str, qtype: str = "auto") -> dict[str, Any]:
    """Write ``out/model-<qtype>.gguf`` from the causal LM exported in ``folder``. Returns the path,
    whether the block Linears were written exactly from an hf_lite grid, and the largest difference
    between the GGUF's dequantized block weights and the exported ones."""
    require()
    import gguf
    from transformers import AutoConfig

    from ..quantization.grids import load_grid
    from .compressed_tensors import _load_folder_weights

    if qtype == "auto":
        qtype = auto_type(folder)
    if qtype not in GGUF_TYPES:
        raise RecipeError(f"gguf type {qtype!r}: choose one of {list(GGUF_TYPES)}")
    config = AutoConfig.from_pretrained(folder)
    check_model(config)
    state = {k: v.float() for k, v in _load_folder_weights(folder).items()}
    loaded = load_grid(folder)
    scales, zeros, grid = loaded if loaded is not None else ({}, {}, None)
    exact = _grid_fits(grid, qtype)
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"model-{qtype}.gguf")
    writer = gguf.GGUFWriter(path, "llama")
    _header(writer, folder, config, qtype)
    types = gguf.GGMLQuantizationType
    qtypes = {"f32": types.F32, "f16": types.F16, "q8_0": types.Q8_0, "q4_0": types.Q4_0, "q4_1": types.Q4_1}
    worst = 0.0
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for name, tensor in state.items():
        if name == "lm_head.weight" and tied:
            continue
        target, w, module = _gguf_name(name), tensor.numpy(), name[: -len(".weight")]
        if w.ndim == 1:  # norms stay f32
            writer.add_tensor(target, w.astype(np.float32))
            continue
        heads = _rotary_heads(target, config)
        w = w if heads is None else _permute(w, heads)
        # block Linears and an untied output head get the chosen type; token embeddings q8_0 (or float)
        quantized = target.startswith("blk.") or target == "output.weight" or qtype in ("f32", "f16")
        kind = qtype if quantized else "q8_0"
        if kind in ("f32", "f16"):
            writer.add_tensor(target, w.astype(np.float32 if kind == "f32" else np.float16))
            continue
        if w.shape[1] % 32:
            raise RecipeError(f"gguf: {name} has {w.shape[1]} inputs, not a multiple of GGUF's block of 32")
        if exact and module in scales:
            blocks = _blocks_from_grid(tensor, scales[module], zeros[module], grid, heads, kind)
        else:
            blocks = gguf.quants.quantize(w.astype(np.float32), qtypes[kind])
        if target.startswith("blk."):
            back = gguf.quants.dequantize(blocks, qtypes[kind]).reshape(w.shape)
            worst = max(worst, float(np.abs(back - w).max()))
        writer.add_tensor(target, blocks, raw_shape=blocks.shape, raw_dtype=qtypes[kind])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {"path": path, "type": qtype, "exact_from_grid": exact, "max_block_weight_diff": worst}
