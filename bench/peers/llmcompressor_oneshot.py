"""One llm-compressor one-shot run under BENCH-PROTOCOL (run in a venv with llmcompressor; no hf_lite).

    python bench/peers/llmcompressor_oneshot.py MODEL_DIR SHARED_DATA_DIR METHOD [SAVE_FILE] [CAL_FILE]
METHOD: dense | wanda50 | sparsegpt50 | sparsegpt50_damp0.1 | sparsegpt24 | rtn_g64 | gptq_g64. Prints one JSON line.
SAVE_FILE: write the compressed block weights there (safetensors), for a layer-by-layer comparison ("" = no).
CAL_FILE: a JSON list of 32 token-id lists of 256 to calibrate on instead of the protocol's chunks.
"""

from __future__ import annotations

import json
import math
import sys
import time

import torch
import torch.nn.functional as F


def main() -> None:
    model_dir, data_dir, method = sys.argv[1:4]
    save_file = sys.argv[4] if len(sys.argv) > 4 else None
    cal_file = sys.argv[5] if len(sys.argv) > 5 else None
    torch.set_num_threads(2)
    import datasets
    from llmcompressor import oneshot
    from llmcompressor.modifiers.pruning import SparseGPTModifier, WandaPruningModifier
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    text = open(f"{data_dir}/tiny_shakespeare/input.txt").read()
    ids = tok(text, add_special_tokens=False)["input_ids"][: 32 * 256]
    chunks = [ids[i * 256 : (i + 1) * 256] for i in range(32)]
    if cal_file:
        chunks = json.load(open(cal_file))
    cal = datasets.Dataset.from_dict({"input_ids": chunks, "attention_mask": [[1] * 256] * 32})
    group64 = {
        "group_0": {
            "targets": ["Linear"],
            "weights": {"num_bits": 4, "type": "int", "symmetric": True, "strategy": "group", "group_size": 64},
        }
    }
    # Their pruning modifiers name a top-level module "lm_head." (trailing dot), so a plain "lm_head" does
    # not match and the tied lm_head/embedding matrix gets pruned too; the regex form matches both paths.
    ignore = ["re:.*lm_head"]
    recipe = {
        "dense": lambda: None,
        "wanda50": lambda: WandaPruningModifier(sparsity=0.5, mask_structure="0:0", ignore=ignore),
        "sparsegpt50": lambda: SparseGPTModifier(sparsity=0.5, mask_structure="0:0", ignore=ignore),
        "sparsegpt50_damp0.1": lambda: SparseGPTModifier(
            sparsity=0.5, mask_structure="0:0", ignore=ignore, dampening_frac=0.1
        ),
        "sparsegpt24": lambda: SparseGPTModifier(sparsity=0.5, mask_structure="2:4", ignore=ignore),
        "rtn_g64": lambda: QuantizationModifier(config_groups=group64, ignore=ignore),
        "gptq_g64": lambda: GPTQModifier(config_groups=group64, ignore=ignore),
    }[method]()
    t = time.perf_counter()
    error = None
    try:
        if recipe is not None:
            oneshot(
                model=model,
                dataset=cal,
                recipe=recipe,
                num_calibration_samples=32,
                max_seq_length=256,
                shuffle_calibration_samples=False,
            )
    except Exception as e:  # record the exact error, as the protocol asks
        error = f"{type(e).__name__}: {e}"
    wall = time.perf_counter() - t
    import importlib.metadata as md

    versions = {p: md.version(p) for p in ("llmcompressor", "compressed-tensors", "transformers", "torch")}
    out = {"method": method, "compress_s": round(wall, 1), "error": error, "versions": versions}
    if error is None:
        wiki = open(f"{data_dir}/wikitext2_raw/wiki.test.raw", encoding="utf-8").read().replace("\r", "")
        w = torch.tensor(tok(wiki, add_special_tokens=False)["input_ids"][: 32 * 512]).reshape(32, 512)
        nll, n = 0.0, 0
        model.eval()
        with torch.no_grad():
            for i in range(0, 32, 4):
                x = w[i : i + 4]
                logits = model(input_ids=x, use_cache=False).logits[:, :-1].float()
                nll += float(
                    F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum")
                )
                n += x[:, 1:].numel()
        layers = [
            m.weight for name, m in model.named_modules() if ".layers." in name and isinstance(m, torch.nn.Linear)
        ]
        out["ppl"] = math.exp(nll / n)
        out["sparsity"] = sum(int((p == 0).sum()) for p in layers) / sum(p.numel() for p in layers)
        head = model.get_output_embeddings().weight
        out["lm_head_zero_fraction"] = float((head == 0).float().mean())  # 0 unless lm_head was compressed
        if save_file:
            from safetensors.torch import save_file as write

            blocks = {
                n: m.weight.detach().contiguous()
                for n, m in model.named_modules()
                if ".layers." in n and isinstance(m, torch.nn.Linear)
            }
            write(blocks, save_file)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
