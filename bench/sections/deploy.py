"""Deployment: compressed models in the engines users run (compressed-tensors in transformers, ONNX in
onnxruntime, GGUF in llama.cpp), measured against the dense model in PyTorch (bench/configs/deploy.yaml)."""

from __future__ import annotations

import copy
import json
import os
import shutil
import statistics
import time

import torch

from bench.common import OUT, THREADS, config, median_seconds, merged, run_recipe, save
from bench.sections import section
from bench.sections.oneshot import protocol_data
from bench.sections.sst2 import dense_reference, fill


@section()
def section_deploy_ct() -> None:
    """SmolLM2-135M GPTQ int4 (symmetric, g64 and g32; protocol calibration) exported as compressed-tensors
    pack-quantized: bytes of the block Linears' weights against the fp32 export, the whole folders, and the
    folder reloaded by transformers (compressed-tensors installed, no hf_lite code in the load path):
    WikiText-2 ppl by the protocol and the largest logit difference to our export on 2 x 128 tokens."""
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    from hf_lite.core.recipe import load_recipe
    from hf_lite.models import load_model, load_tokenizer
    from hf_lite.oneshot import apply_recipe_
    from hf_lite.oneshot.evaluate import perplexity
    from hf_lite.report import folder_size

    tok = load_tokenizer("smollm2-135m")
    cal, windows = protocol_data(tok)

    def block_bytes(path: str) -> int:
        """Bytes of the block Linears' tensors (weights, or packed codes + scales + shapes); norms excluded."""
        with safe_open(path, "pt") as f:
            tensors = [f.get_tensor(k) for k in f.keys() if ".layers." in k and "norm" not in k]
        return sum(t.numel() * t.element_size() for t in tensors)

    rows = {}
    cfg = config("deploy")["compressed_tensors"]
    for group in cfg["group_sizes"]:
        spec = {**cfg["modifier"], "group_size": group}
        model = load_model("smollm2-135m", "causal-lm")
        session = apply_recipe_(model, {"modifiers": [spec]}, cal)
        folder = os.path.join(OUT, f"deploy_ct_g{group}")
        shutil.rmtree(folder, ignore_errors=True)
        settings = load_recipe({"modifiers": [spec], "export": {"formats": ["safetensors", "compressed-tensors"]}})
        t = time.perf_counter()
        session.export(model, folder, tok, settings.export)
        export_s = time.perf_counter() - t
        ct = os.path.join(folder, "compressed-tensors")
        reloaded = AutoModelForCausalLM.from_pretrained(ct).eval()
        ids = windows[:2, :128]
        with torch.no_grad():
            diff = (reloaded(ids).logits - model(ids).logits).abs().max().item()
        dense_block = block_bytes(os.path.join(folder, "model.safetensors"))
        ct_block = block_bytes(os.path.join(ct, "model.safetensors"))
        rows[f"gptq_g{group}_sym"] = {
            "modifier": spec,
            "ppl_ours": perplexity(model, windows),
            "ppl_reloaded": perplexity(reloaded, windows),
            "max_logit_diff": diff,
            "block_weight_bytes_fp32": dense_block,
            "block_weight_bytes_ct": ct_block,
            "block_ratio": ct_block / dense_block,
            "folder_mib_fp32": folder_size(folder) / 2**20,
            "folder_mib_ct": folder_size(ct) / 2**20,
            "export_s": round(export_s, 1),
        }
        print(f"[bench] deploy_ct g{group}: {rows[f'gptq_g{group}_sym']}", flush=True)
        save("deploy_compressed_tensors", {"protocol": section_deploy_ct.__doc__, "rows": rows})


@section(names=True)
def section_deploy_onnx(names: list[str] | None = None) -> None:
    """MiniLM-L6 SST-2 classifiers exported to ONNX (fp32 graph, onnxruntime dynamic int8 graph, the latter
    also opened with onnxruntime's default fusions) against torch fp32 and torch dynamic int8: accuracy on the 872 test rows (max_length 64), latency at batch 1 x 128
    and 8 x 128 (median of 20 after warm-up, the five engines interleaved over 3 rounds, 2 threads each),
    file sizes. Rows: the dense fine-tune, and (if asked) GMP 80% with KD and QAT int8 from it."""
    import numpy as np
    import onnxruntime as ort
    from transformers import AutoModelForSequenceClassification

    from hf_lite.data import load_split
    from hf_lite.deploy.onnx import FILES, export_onnx, session
    from hf_lite.models import load_tokenizer
    from hf_lite.quantization.ptq import dynamic_int8

    dense_dir, dense_acc = dense_reference()
    folders = {"dense": dense_dir}
    for name in names or []:
        folder = os.path.join(OUT, f"onnx_{name}")
        if not os.path.isfile(os.path.join(folder, "model.safetensors")):
            recipe = fill(merged(config("sst2")["base"], config("deploy")["onnx"]["rows"][name]), dense_dir)
            run_recipe(recipe, output_dir=folder, overwrite=True)
        folders[name] = folder
    tok = load_tokenizer("minilm-l6")
    rows_sst2 = load_split(config("sst2")["base"]["data"]["eval"], "eval")
    defaults = ort.SessionOptions()
    defaults.intra_op_num_threads = THREADS
    rows = {}
    for name, folder in folders.items():
        onnx_dir = os.path.join(folder, "onnx")
        shutil.rmtree(onnx_dir, ignore_errors=True)  # written by this code, not an earlier export
        export_onnx(folder, onnx_dir)
        fp32 = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        engines = {
            "torch_fp32": fp32,
            "torch_int8": dynamic_int8(copy.deepcopy(fp32)),
            "ort_fp32": session(os.path.join(onnx_dir, FILES["fp32"]), threads=THREADS),
            "ort_int8": session(os.path.join(onnx_dir, FILES["int8"]), threads=THREADS),
            # the same int8 file opened with onnxruntime's defaults, which fuse SkipLayerNormalization back
            "ort_int8_default_fusions": ort.InferenceSession(os.path.join(onnx_dir, FILES["int8"]), defaults, providers=["CPUExecutionProvider"]),
        }  # fmt: skip

        def forward(engine, enc):
            if isinstance(engine, ort.InferenceSession):
                feed = {i.name: enc[i.name].numpy().astype(np.int64) for i in engine.get_inputs()}
                return torch.from_numpy(engine.run(["logits"], feed)[0])
            return engine(**enc).logits

        acc = {}
        for key, engine in engines.items():
            correct = 0
            with torch.inference_mode():
                for i in range(0, len(rows_sst2), 64):
                    chunk = rows_sst2[i : i + 64]
                    enc = tok(chunk["sentence"], truncation=True, max_length=64, padding=True, return_tensors="pt")
                    correct += int((forward(engine, enc).argmax(-1) == torch.tensor(chunk["label"])).sum())
            acc[key] = correct / len(rows_sst2)
        lat: dict[str, dict[str, list[float]]] = {}
        for batch in (1, 8):
            ids = torch.randint(1000, 2000, (batch, 128))
            enc = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
            for _ in range(3):
                for key, engine in engines.items():
                    t = median_seconds(lambda e=engine, x=enc: forward(e, x))
                    lat.setdefault(f"b{batch}", {}).setdefault(key, []).append(t)
        med = {b: {k: statistics.median(v) for k, v in d.items()} for b, d in lat.items()}
        rows[name] = {
            "folder": folder,
            "accuracy": acc,
            "accuracy_vs_dense_torch": {k: v / dense_acc for k, v in acc.items()},
            "latency_s": med,
            "speedup_vs_torch_fp32": {b: {k: d["torch_fp32"] / v for k, v in d.items()} for b, d in med.items()},
            "size_mib": {
                "safetensors": os.path.getsize(os.path.join(folder, "model.safetensors")) / 2**20,
                **{f"onnx_{k}": os.path.getsize(os.path.join(onnx_dir, v)) / 2**20 for k, v in FILES.items()},
            },
        }
        print(f"[bench] deploy_onnx {name}: {rows[name]['accuracy']} {rows[name]['speedup_vs_torch_fp32']}", flush=True)
        save("deploy_onnx", {"protocol": section_deploy_onnx.__doc__, "dense_accuracy": dense_acc, "rows": rows})


@section()
def section_deploy_gguf() -> None:
    """SmolLM2-135M: dense fp32 in transformers against GGUF files run by llama.cpp (llama-cpp-python, 2
    threads): GPTQ int4 g32 symmetric (protocol calibration) written as Q4_0 from its own codes, the same
    model in Q8_0, and the dense model in Q8_0. File sizes, WikiText-2 perplexity by the protocol (32 windows
    of 512; llama.cpp's logits through llama-cpp-python), prompt tokens/s (one 256-token prompt) and decode
    tokens/s (128 greedy tokens) at batch 1; engines alternate over 3 rounds, medians."""
    import llama_cpp
    import numpy as np
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    from hf_lite.deploy.gguf import export_gguf
    from hf_lite.models import load_model, load_tokenizer, resolve_model_path
    from hf_lite.oneshot import apply_recipe_
    from hf_lite.oneshot.evaluate import perplexity

    tok = load_tokenizer("smollm2-135m")
    cal, windows = protocol_data(tok)
    dense_dir = resolve_model_path("smollm2-135m")
    gptq_dir = os.path.join(OUT, "deploy_gguf_gptq_g32")
    if not os.path.isfile(os.path.join(gptq_dir, "model.safetensors")):
        model = load_model("smollm2-135m", "causal-lm")
        session = apply_recipe_(model, {"modifiers": [config("deploy")["gguf"]["modifier"]]}, cal)
        session.export(model, gptq_dir, tok)
    files = {
        "gptq_q4_0": export_gguf(gptq_dir, os.path.join(gptq_dir, "gguf"), "q4_0"),
        "gptq_q8_0": export_gguf(gptq_dir, os.path.join(gptq_dir, "gguf"), "q8_0"),
        "dense_q8_0": export_gguf(dense_dir, os.path.join(OUT, "deploy_gguf_dense"), "q8_0"),
    }

    def block_bytes(path: str) -> int:
        with safe_open(path, "pt") as f:
            return sum(f.get_slice(k).get_shape()[0] * f.get_slice(k).get_shape()[1] * 4 for k in f.keys()
                       if ".layers." in k and "norm" not in k)  # fmt: skip

    def gguf_block_bytes(path: str) -> int:
        import gguf

        return sum(
            int(t.n_bytes) for t in gguf.GGUFReader(path).tensors if t.name.startswith("blk.") and "norm" not in t.name
        )

    def llama_ppl(llm) -> float:
        nll, count = 0.0, 0
        for row in windows.tolist():
            llm.reset()
            llm.eval(row)
            logits = torch.tensor(np.array(llm.scores[: len(row)]))
            nll += float(torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(row[1:]), reduction="sum"))
            count += len(row) - 1
        return float(np.exp(nll / count))

    prompt = windows[0, :256].tolist()

    def llama_speed(llm) -> tuple[float, float]:
        llm.reset()
        t = time.perf_counter()
        llm.eval(prompt)
        prompt_tps = len(prompt) / (time.perf_counter() - t)
        t, n = time.perf_counter(), 0
        for _token in llm.generate(prompt[:16], top_k=1, reset=True):
            n += 1
            if n == 128:
                break
        return prompt_tps, n / (time.perf_counter() - t)

    dense = AutoModelForCausalLM.from_pretrained(dense_dir).eval()
    ours = AutoModelForCausalLM.from_pretrained(gptq_dir).eval()

    def torch_speed(model) -> tuple[float, float]:
        ids = torch.tensor([prompt])
        with torch.inference_mode():
            t = time.perf_counter()
            model(ids)
            prompt_tps = len(prompt) / (time.perf_counter() - t)
            t = time.perf_counter()
            out = model.generate(ids[:, :16], max_new_tokens=128, min_new_tokens=128, do_sample=False)
            return prompt_tps, (out.shape[1] - 16) / (time.perf_counter() - t)

    llms = {
        k: llama_cpp.Llama(v["path"], n_ctx=512, n_threads=2, logits_all=True, verbose=False) for k, v in files.items()
    }
    rows = {k: {**v, "file_mib": os.path.getsize(v["path"]) / 2**20, "block_bytes": gguf_block_bytes(v["path"])}
            for k, v in files.items()}  # fmt: skip
    rows["dense_fp32_transformers"] = {"file_mib": os.path.getsize(os.path.join(dense_dir, "model.safetensors")) / 2**20,
                                       "block_bytes": block_bytes(os.path.join(dense_dir, "model.safetensors"))}  # fmt: skip
    rows["dense_fp32_transformers"]["ppl"] = perplexity(dense, windows)
    rows["gptq_fp32_transformers"] = {"ppl": perplexity(ours, windows)}
    for k, llm in llms.items():
        rows[k]["ppl"] = llama_ppl(llm)
    speeds: dict[str, list[tuple[float, float]]] = {}
    for _ in range(3):
        speeds.setdefault("dense_fp32_transformers", []).append(torch_speed(dense))
        for k, llm in llms.items():
            speeds.setdefault(k, []).append(llama_speed(llm))
    for k, v in speeds.items():
        rows[k]["prompt_tokens_per_s"] = statistics.median(p for p, _ in v)
        rows[k]["decode_tokens_per_s"] = statistics.median(d for _, d in v)
    base = rows["dense_fp32_transformers"]
    for k in files:
        rows[k]["block_ratio_vs_fp32"] = rows[k]["block_bytes"] / base["block_bytes"]
        rows[k]["decode_speedup_vs_fp32_transformers"] = rows[k]["decode_tokens_per_s"] / base["decode_tokens_per_s"]
    rows["gptq_q4_0"]["ppl_vs_our_export"] = rows["gptq_q4_0"]["ppl"] / rows["gptq_fp32_transformers"]["ppl"]
    print(f"[bench] deploy_gguf: {json.dumps(rows, default=str)[:1500]}", flush=True)
    save(
        "deploy_gguf",
        {"protocol": section_deploy_gguf.__doc__, "llama_cpp_python": llama_cpp.__version__, "rows": rows},
    )
