"""Speed: the training-step overhead of each modifier, and side-by-side inference latency of saved models."""

from __future__ import annotations

import copy
import json
import os
import statistics
import time

import torch

from bench.common import OUT, SST2, config, latency, median_seconds, save, side_by_side_latency
from bench.sections import section
from bench.sections.sst2 import reload


@section()
def section_overhead(variants_only: tuple[str, ...] | None = None) -> None:
    """Step time of LiteTrainer + each modifier vs a plain Trainer, same model and batch, interleaved."""
    import datasets
    from transformers import Trainer, TrainingArguments

    from hf_lite import LiteTrainer
    from hf_lite.models import load_model, load_tokenizer

    cfg = config("overhead")
    steps = cfg["steps"]
    tok = load_tokenizer("minilm-l6")
    texts = [line.split("\t")[0] for line in open(f"{SST2}/train.tsv").read().splitlines()[1 : 1 + 32 * steps]]
    enc = tok(texts, truncation=True, max_length=64, padding="max_length")
    enc["labels"] = [i % 2 for i in range(len(texts))]
    ds = datasets.Dataset.from_dict(dict(enc))
    variants = {"plain": None, **cfg["variants"], **json.loads(os.environ.get("BENCH_OVERHEAD_EXTRA") or "{}")}
    if variants_only:
        variants = {k: v for k, v in variants.items() if k == "plain" or k in variants_only}
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(3):  # interleave repeats: the machine is noisy
        for name, recipe in variants.items():
            args = TrainingArguments(output_dir=os.path.join(OUT, "overhead"), max_steps=steps, per_device_train_batch_size=32,
                                     report_to="none", save_strategy="no", disable_tqdm=True, logging_steps=1000)  # fmt: skip
            model = load_model("minilm-l6", num_labels=2)
            trainer = (
                Trainer(model=model, args=args, train_dataset=ds)
                if recipe is None
                else LiteTrainer(model=model, args=args, train_dataset=ds, recipe=recipe)
            )
            t = time.perf_counter()
            trainer.train()
            times[name].append((time.perf_counter() - t) / steps)
    base = statistics.median(times["plain"])
    for name, ts in times.items():
        if name != "plain":
            step = statistics.median(ts)
            save(f"overhead_{name}", {"step_s": step, "plain_step_s": base, "ratio": step / base, "all_s": ts})


@section()
def section_latency() -> None:
    """Re-measure every side-by-side speed-up from the saved folders in one quiet run (3 interleaved repeats)."""
    from hf_lite.quantization.ptq import dynamic_int8

    models = {"dense": reload("dense"), "dynamic_int8": dynamic_int8(reload("dense"))}
    for name in ("structured_ffn50_heads25", "student3_kd_logits"):
        if os.path.exists(os.path.join(OUT, name, "config.json")):
            models[name] = reload(name)
    lat = side_by_side_latency(models)
    speedups = {f"{n}_b{b}": lat[f"dense_b{b}"] / lat[f"{n}_b{b}"] for n in models if n != "dense" for b in (1, 8)}
    save("latency_side_by_side", {"latency_s": lat, "speedup_vs_dense": speedups, "loadavg_before": os.getloadavg()})


def engine_latencies(dense) -> tuple[dict, list[str]]:
    """Batch-8 latency of the dense model, a dynamic-int8 copy per quantized engine, and compiled copies."""
    from hf_lite.quantization.ptq import dynamic_int8

    engines = [e for e in ("x86", "fbgemm", "onednn") if e in torch.backends.quantized.supported_engines]
    default = torch.backends.quantized.engine
    models = {"fp32": dense}  # keys: the quantized engine each int8 copy was built and runs with
    for engine in engines:
        torch.backends.quantized.engine = engine
        models[engine] = dynamic_int8(copy.deepcopy(dense))
    torch.backends.quantized.engine = default
    # torch.compile (inductor) fuses GELU, LayerNorm and the adds around the Linears, for both models
    for name in ("fp32", default):
        models[f"{name}_compiled"] = torch.compile(copy.deepcopy(models[name]))
    times: dict[str, list[float]] = {}
    for _ in range(3):
        for name, model in models.items():
            engine = name.removesuffix("_compiled")
            torch.backends.quantized.engine = default if engine == "fp32" else engine
            times.setdefault(name, []).append(latency(model, 8))
    torch.backends.quantized.engine = default
    return {k: statistics.median(v) for k, v in times.items()}, engines


def ffn_gemm(engines: list[str]) -> dict:
    """The FFN GEMM alone (1024 x 384 -> 1536) in fp32 and dynamic int8 per engine."""
    from hf_lite.quantization.ptq import dynamic_int8

    default = torch.backends.quantized.engine
    x, ffn = torch.randn(1024, 384), torch.nn.Linear(384, 1536)
    gemm = {}
    for engine in engines:
        torch.backends.quantized.engine = engine
        int8 = dynamic_int8(torch.nn.Sequential(copy.deepcopy(ffn)))
        fp32_ms, int8_ms = (1e3 * median_seconds(lambda m=m: m(x), runs=50, warmup=5) for m in (ffn, int8))
        gemm[engine] = {"fp32_ms": fp32_ms, "int8_ms": int8_ms, "speedup": fp32_ms / int8_ms}
    torch.backends.quantized.engine = default
    return gemm


def op_profile(model) -> dict:
    """Where 5 forwards at batch 8 x 128 spend their time (ms per op, the Linears summed)."""
    from torch.profiler import profile

    ids = torch.randint(1000, 2000, (8, 128))
    with torch.inference_mode(), profile() as prof:
        for _ in range(5):
            model(input_ids=ids, attention_mask=torch.ones_like(ids))
    ops = {e.key: e.self_cpu_time_total / 1e3 for e in prof.key_averages()}
    linear = sum(v for k, v in ops.items() if k in ("aten::addmm", "aten::copy_", "quantized::linear_dynamic"))
    top = dict(sorted(ops.items(), key=lambda kv: -kv[1])[:6])
    return {"total_ms": sum(ops.values()), "linear_ms": linear, "top_ops_ms": top}


@section()
def section_int8_engines() -> None:
    """Why dynamic int8 stops short of 1.8x here: model latency under each quantized engine and with
    torch.compile (interleaved), the FFN GEMM alone (1024 x 384 -> 1536, batch 8 x 128), and a profile of
    where fp32 and int8 time goes."""
    from hf_lite.quantization.ptq import dynamic_int8

    dense = reload("dense").eval()
    lat, engines = engine_latencies(dense)
    default = torch.backends.quantized.engine
    save(
        "dynamic_int8_engines",
        {
            "default_engine": default,
            "latency_b8_s": lat,
            "speedup_b8": {k: lat["fp32"] / v for k, v in lat.items() if k != "fp32"},
            "ffn_gemm": ffn_gemm(engines),
            "profile_5_forwards": {"fp32": op_profile(dense), default: op_profile(dynamic_int8(copy.deepcopy(dense)))},
            "note": "linear_ms counts addmm plus the bias copy_ (fp32) or quantized::linear_dynamic (int8)",
        },
    )
