"""Benchmarks on real models and data (not part of CI). Protocols: ../shared/BENCH-PROTOCOL.md.

    python bench/run.py --section pruning      # or: overhead, quantization, all
Each result is a JSON file in bench/results/ with the command, git commit, package versions,
machine (cores, CPU model, load average) and the numbers.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from rows import ONESHOT_CORE  # noqa: E402  (bench/ is on sys.path when run as a script)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
RESULTS = os.path.join(HERE, "results")
OUT = os.path.join(HERE, "out")
SST2 = os.path.normpath(os.path.join(REPO, "..", "shared", "data", "sst2"))

# SST-2 protocol: first 8,000 train rows, all 872 test rows, 1 epoch, batch 32, lr 5e-5, max_length 64, seed 0.
# The protocol leaves batching open: batches are grouped by length (`train_sampling_strategy="group_by_length"`).
# The rows average 13 tokens and a random batch pads to 40, so this cuts the tokens per step about 3x.
SST2_BASE = {
    "version": 1,
    "model": {"name_or_path": "minilm-l6", "task": "sequence-classification", "num_labels": 2},
    "data": {"train": f"{SST2}/train.tsv", "eval": f"{SST2}/test.tsv", "max_length": 64, "max_train_samples": 8000},
    "training": {
        "num_train_epochs": 1,
        "learning_rate": 5e-5,
        "per_device_train_batch_size": 32,
        "seed": 0,
        "logging_steps": 50,
        "train_sampling_strategy": "group_by_length",
        "per_device_eval_batch_size": 64,
    },
    "modifiers": [],
}


def run_recipe(recipe: dict, **kw):
    """``hf_lite.run_recipe`` without the CLI's resume checkpoints: benchmark timings measure the
    compression, not checkpoint writes (a section may still ask for checkpoints in its recipe)."""
    from hf_lite.api import run_recipe as run

    recipe = {**recipe, "training": {"save_strategy": "no", **recipe.get("training", {})}}
    return run(recipe, **kw)


def machine() -> dict:
    cpu, flags = platform.processor(), set()
    try:
        with open("/proc/cpuinfo") as f:
            first = f.read().split("\n\n")[0]  # the first processor's block
        info = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in first.splitlines() if ":" in line)}
        cpu, flags = info.get("model name", cpu), set(info.get("flags", "").split())
    except OSError:
        pass
    # "AMD EPYC" names several generations: the vector extensions are what decide int8 and fp32 speed
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "isa": torch.backends.cpu.get_cpu_capability(),
        "int8_dot_product": sorted(flags & {"avx512_vnni", "avx_vnni", "amx_int8"}),
        "loadavg": os.getloadavg(),
        "threads": torch.get_num_threads(),
    }


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout.strip()
    except OSError:
        return "unknown"


COMMIT = commit()  # the code this process runs, even if the checkout moves on while it runs


def save(name: str, data: dict) -> None:
    from hf_lite.api import versions

    os.makedirs(RESULTS, exist_ok=True)
    data = {
        "name": name,
        "command": " ".join(sys.argv),
        "commit": COMMIT,
        "versions": versions(),
        "machine": machine(),
        **data,
    }
    with open(os.path.join(RESULTS, f"{name}.json"), "w") as f:
        json.dump(data, f, indent=2, default=str)
    print(
        f"[bench] {name}: {json.dumps({k: v for k, v in data.items() if k in ('accuracy', 'recovery', 'ratio', 'ppl')})}"
    )


def saved_rows(name: str) -> dict:
    """The rows already in bench/results/<name>.json (sections add or replace rows one by one)."""
    path = os.path.join(RESULTS, f"{name}.json")
    return json.load(open(path))["rows"] if os.path.exists(path) else {}


def median_seconds(fn, runs: int = 20, warmup: int = 3) -> float:
    """Median wall time of ``fn()`` under inference_mode, after ``warmup`` untimed calls."""
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        for _ in range(runs):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def latency(model, batch: int, seq: int = 128, runs: int = 20) -> float:
    """Median seconds per forward, inference_mode, after warm-up (protocol)."""
    model.eval()
    x = torch.randint(1000, 2000, (batch, seq))
    mask = torch.ones_like(x)
    return median_seconds(lambda: model(input_ids=x, attention_mask=mask), runs)


def sst2_row(name: str, modifiers: list, dense_acc: float | None = None, **overrides) -> dict:
    from transformers import AutoModelForSequenceClassification

    recipe = json.loads(json.dumps(SST2_BASE))
    recipe["modifiers"] = modifiers
    for key, value in overrides.items():
        section, field = key.split("__")
        recipe.setdefault(section, {})[field] = value
    recipe["export"] = {"output_dir": os.path.join(OUT, name), "overwrite": True}
    report = run_recipe(recipe)
    model = AutoModelForSequenceClassification.from_pretrained(os.path.join(OUT, name))
    acc = report["metrics"]["after"]["after_accuracy"]
    row = {
        "accuracy": acc,
        "recovery": acc / dense_acc if dense_acc else None,
        "parameters": report["compression"]["parameters"],
        "sparsity": report["compression"]["sparsity"],
        "bits": report["compression"]["bits"],
        "disk_mib": report["compression"]["size_on_disk_bytes"] / 2**20,
        "latency_b1_s": latency(model, 1),
        "latency_b8_s": latency(model, 8),
        "train_s": report["timings_s"].get("train_s"),
        "trainable_fraction": report.get("trainable_fraction"),
        "layer_sparsity": {n: v["sparsity"] for n, v in report["compression"]["layers"].items()},
        "modifiers": modifiers,
    }
    save(f"sst2_{name}", row)
    return row


def section_pruning() -> None:
    """Gradual magnitude pruning during the 1-epoch fine-tune (from the pretrained model): 50/80/90%, 2:4."""
    torch.set_num_threads(2)
    _, dense_acc = dense_reference()
    gmp = {"type": "magnitude_pruning", "start": 0.05, "end": 0.7, "update_every": 10}
    for name, sparsity in {"gmp50": 0.5, "gmp80": 0.8, "gmp90": 0.9}.items():
        sst2_row(name, [{**gmp, "final_sparsity": sparsity}], dense_acc)
    sst2_row("nm24", [{**gmp, "pattern": "2:4", "end": 0.3}], dense_acc)


CURVE_CHILD = r"""
import json, resource, sys, torch
sys.path.insert(0, {repo!r})
sys.path.insert(0, {here!r})
torch.set_num_threads(2)
from run import run_recipe
report = run_recipe(json.loads({recipe!r}))
print(json.dumps({{"accuracy": report["metrics"]["after"]["after_accuracy"], "train_s": report["timings_s"]["train_s"],
                   "sparsity_exact": report["compression"]["sparsity"],
                   "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
CURVE_METHODS = {
    "gmp": {"type": "magnitude_pruning", "scope": "global"},
    "movement": {"type": "movement_pruning", "scope": "global"},
    "obs": {"type": "obs_pruning", "scope": "global"},
}


def curve_row(folder: str, method: str, sparsity: float, seed: int, epochs: int = 1) -> dict:
    """One sparsity-curve run in its own process (its peak RSS): ``method`` prunes the dense fine-tune in
    ``folder`` to ``sparsity`` with KD from it, schedule start 0, end 0.7, every 10 steps."""
    recipe = json.loads(json.dumps(SST2_BASE))
    recipe["model"]["name_or_path"] = folder
    recipe["teacher"] = {"name_or_path": folder}
    recipe["training"].update(seed=seed, num_train_epochs=epochs)
    recipe["modifiers"] = [
        {**CURVE_METHODS[method], "start": 0.0, "end": 0.7, "update_every": 10, "final_sparsity": sparsity},
        {"type": "distillation", "temperature": 2.0, "alpha": 0.9},
    ]
    out_dir = os.path.join(OUT, f"curve_{method}_{sparsity}_s{seed}_e{epochs}")
    recipe["export"] = {"output_dir": out_dir, "overwrite": True}
    code = CURVE_CHILD.format(repo=REPO, here=HERE, recipe=json.dumps(recipe))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip
    try:
        out = json.loads(res.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        out = {"error": res.stderr[-1500:]}
    return {"method": method, "sparsity": sparsity, "seed": seed, **({"epochs": epochs} if epochs != 1 else {}), **out}


def _add_curve_row(rows: list[dict], row: dict, dense_acc: float) -> None:
    if "accuracy" in row:
        row["recovery"] = row["accuracy"] / dense_acc
    same = ("sparsity", "seed", "epochs")
    gmp = next((r for r in rows if r["method"] == "gmp" and all(r.get(k) == row.get(k) for k in same)
                and "train_s" in r), None)  # fmt: skip
    if gmp and "train_s" in row:
        row["step_time_ratio_vs_gmp"] = row["train_s"] / gmp["train_s"]
    rows.append(row)


def section_sparsity(methods: list[str] | None = None) -> None:
    """The sparsity-accuracy curve: GMP, movement and OBS (global) at 50-95% on SST-2, each pruning the
    dense fine-tune for 1 epoch with KD from it (logits, T 2, alpha 0.9), the same schedule (start 0, end
    0.7, every 10 steps); at 90% also seed 1. Each row runs in its own process (its peak RSS)."""
    folder, dense_acc = dense_reference()
    path = os.path.join(RESULTS, "sparsity_curve.json")
    old = json.load(open(path))["rows"] if os.path.exists(path) else []
    rows = [r for r in old if "accuracy" in r]  # rows already measured are kept, not run again
    done = {(r["method"], r["sparsity"], r["seed"]) for r in rows}
    # the most telling rows first (90%, 80%, the second seed at 90%), so a cut-short run still says most
    order = (0.9, 0.8, "seed", 0.7, 0.95, 0.5)
    runs = [(m, 0.9, 1) if sp == "seed" else (m, sp, 0) for sp in order for m in (methods or CURVE_METHODS)]
    for method, sparsity, seed in runs:
        if (method, sparsity, seed) in done:
            continue
        _add_curve_row(rows, curve_row(folder, method, sparsity, seed), dense_acc)
        print(f"[bench] curve {method} {sparsity} seed {seed}: {rows[-1].get('accuracy')}", flush=True)
        save("sparsity_curve", {"dense_accuracy": dense_acc, "protocol": section_sparsity.__doc__, "rows": rows})


def section_sparsity_budget() -> None:
    """The curve's 90% rows of GMP and OBS with a 3-epoch budget instead of 1 (same schedule fractions, so
    three times the steps between pruning steps and after the last one)."""
    folder, dense_acc = dense_reference()
    rows = [r for r in saved_rows("sparsity_budget") or [] if "accuracy" in r]
    done = {(r["method"], r["sparsity"]) for r in rows}
    for method in ("gmp", "obs"):
        if (method, 0.9) in done:
            continue
        _add_curve_row(rows, curve_row(folder, method, 0.9, 0, epochs=3), dense_acc)
        print(f"[bench] budget {method} 0.9 3 epochs: {rows[-1].get('accuracy')}", flush=True)
        save(
            "sparsity_budget", {"dense_accuracy": dense_acc, "protocol": section_sparsity_budget.__doc__, "rows": rows}
        )


def section_structured() -> None:
    """50% FFN neurons + 25% heads (Taylor importance) on SST-2; latency vs the dense model, interleaved."""
    from transformers import AutoModelForSequenceClassification

    from hf_lite.models import load_model

    torch.set_num_threads(2)
    dense_acc = json.load(open(os.path.join(RESULTS, "sst2_dense.json")))["accuracy"]
    spec = {
        "type": "structured_pruning",
        "ffn": 0.5,
        "heads": 0.25,
        "importance": "taylor",
        "start": 0.05,
        "end": 0.6,
        "update_every": 10,
    }
    row = sst2_row("structured_ffn50_heads25", [spec], dense_acc)
    small = AutoModelForSequenceClassification.from_pretrained(os.path.join(OUT, "structured_ffn50_heads25"))
    dense = load_model("minilm-l6", num_labels=2)
    row = with_speedups(row, {"dense": dense, "small": small})
    row["dense_parameters"] = sum(p.numel() for p in dense.parameters())
    save("sst2_structured_ffn50_heads25", row)


def side_by_side_latency(models: dict, batches=(8, 1), repeats: int = 3) -> dict[str, float]:
    """Median forward latency per model and batch, interleaved across models (the machine is noisy)."""
    times: dict[str, list[float]] = {f"{n}_b{b}": [] for n in models for b in batches}
    for _ in range(repeats):
        for b in batches:
            for name, model in models.items():
                times[f"{name}_b{b}"].append(latency(model, b))
    return {k: statistics.median(v) for k, v in times.items()}


def with_speedups(row: dict, models: dict) -> dict:
    """``row`` plus side-by-side latencies of two models; speed-up = first model's time / second's."""
    (base, _), (other, _) = models.items()
    lat = side_by_side_latency(models)
    row.update(latency_side_by_side_s=lat, speedup_b8=lat[f"{base}_b8"] / lat[f"{other}_b8"],
               speedup_b1=lat[f"{base}_b1"] / lat[f"{other}_b1"])  # fmt: skip
    return row


def student_overrides(teacher_dir: str) -> dict:
    """A 3-layer student from the teacher's blocks 0, 2, 4, at the students' learning rate."""
    return {
        "model__name_or_path": teacher_dir,
        "model__init_from_teacher": {"layers": [0, 2, 4]},
        "training__learning_rate": 1e-4,
    }


def dense_reference(seed: int = 0) -> tuple[str, float]:
    """Folder and accuracy of the dense fine-tune of ``seed`` (made first if absent)."""
    name = "dense" if seed == 0 else f"dense_seed{seed}"
    folder = os.path.join(OUT, name)
    if not os.path.exists(os.path.join(folder, "model.safetensors")):
        torch.set_num_threads(2)
        sst2_row(name, [], training__seed=seed)
    return folder, json.load(open(os.path.join(RESULTS, f"sst2_{name}.json")))["accuracy"]


def section_dense() -> None:
    """The dense fine-tune: the reference every SST-2 row is measured against, and the KD teacher."""
    torch.set_num_threads(2)
    sst2_row("dense", [])


# Pruning the dense fine-tune (not the pretrained model) with the dense model as KD teacher: the usual way
# to reach high sparsity, the pruned model learns from the dense one while its weights go. One more epoch
# on top of the dense fine-tune (2 epochs of training in all).
PRUNE_FROM_DENSE_KD = {"type": "distillation", "temperature": 2.0, "alpha": 0.9}
PRUNE_FROM_DENSE_GMP = {"type": "magnitude_pruning", "start": 0.0, "end": 0.6, "update_every": 10, "schedule": "cubic"}


def row_from_dense(name: str, modifiers: list, lr: float, epochs: int = 1, seed: int = 0) -> dict:
    """An SST-2 row that starts from the dense fine-tune of ``seed``, with it as the KD teacher and the
    reference, for ``epochs`` more."""
    torch.set_num_threads(2)
    dense_dir, dense_acc = dense_reference(seed)
    return sst2_row(name, modifiers, dense_acc, model__name_or_path=dense_dir, teacher__name_or_path=dense_dir,
                    training__learning_rate=lr, training__num_train_epochs=epochs, training__seed=seed)  # fmt: skip


def section_combined() -> None:
    """The combined recipe: 50% GMP + logits KD + int8 QAT (from 60% of the run) on the dense fine-tune."""
    qat = {"type": "qat", "bits": 8, "start": 0.6}
    mods = [{**PRUNE_FROM_DENSE_GMP, "final_sparsity": 0.5}, PRUNE_FROM_DENSE_KD, qat]
    row_from_dense("combined_gmp50_kd_qat8", mods, lr=1e-4)


def section_prune_finetuned() -> None:
    """GMP 80% per layer + logits KD on the dense fine-tune, one more epoch."""
    mods = [{**PRUNE_FROM_DENSE_GMP, "final_sparsity": 0.8}, PRUNE_FROM_DENSE_KD]
    row_from_dense("gmp80_kd_from_dense", mods, lr=1e-4)


def section_gmp80_long() -> None:
    """80% GMP of the dense fine-tune with KD over 2 more epochs, global scope, half the run spent at 80%."""
    gmp = {"type": "magnitude_pruning", "final_sparsity": 0.8, "start": 0.0, "end": 0.5, "update_every": 10}
    row_from_dense("gmp80_global_kd_2ep", [{**gmp, "scope": "global"}, PRUNE_FROM_DENSE_KD], lr=1e-4, epochs=2)


def sst2_accuracy(model, batch: int = 64) -> float:
    """Accuracy on the 872-row SST-2 dev split (protocol's test.tsv), max_length 64."""
    from hf_lite.data import load_split
    from hf_lite.models import load_tokenizer

    tok = load_tokenizer("minilm-l6")
    rows = load_split(f"{SST2}/test.tsv", "eval")
    correct = 0
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(rows), batch):
            chunk = rows[i : i + batch]
            enc = tok(chunk["sentence"], truncation=True, max_length=64, padding=True, return_tensors="pt")
            correct += int((model(**enc).logits.argmax(-1) == torch.tensor(chunk["label"])).sum())
    return correct / len(rows)


def section_formats() -> None:
    """Disk size and accuracy of each saved format of the dense fine-tune, reloaded with plain from_pretrained."""
    from transformers import AutoModelForSequenceClassification

    torch.set_num_threads(2)
    dense_dir, dense_acc = dense_reference()
    variants = {
        "fp32": [],
        "bnb_int8": [{"type": "bnb", "bits": 8}],
        "bnb_nf4": [{"type": "bnb", "bits": 4, "quant_type": "nf4"}],
        "bnb_nf4_double_quant": [{"type": "bnb", "bits": 4, "quant_type": "nf4", "double_quant": True}],
        "bnb_fp4": [{"type": "bnb", "bits": 4, "quant_type": "fp4"}],
    }
    rows = {}
    for name, mods in variants.items():
        recipe = json.loads(json.dumps(SST2_BASE))
        recipe["model"]["name_or_path"] = dense_dir
        recipe["training"]["max_steps"] = 0
        recipe["modifiers"] = mods
        folder = os.path.join(OUT, f"format_{name}")
        recipe["export"] = {"output_dir": folder, "overwrite": True}
        run_recipe(recipe)
        model = AutoModelForSequenceClassification.from_pretrained(folder)
        mib = os.path.getsize(os.path.join(folder, "model.safetensors")) / 2**20
        rows[name] = {"accuracy": sst2_accuracy(model), "safetensors_mib": mib}
        print(f"[bench] format {name}: {rows[name]}")
    base = rows["fp32"]["safetensors_mib"]
    for r in rows.values():
        r["size_vs_fp32"] = r["safetensors_mib"] / base
    save("formats_sst2", {"dense_accuracy": dense_acc, "rows": rows})


def section_gmp80_hidden_kd() -> None:
    """80% GMP of the dense fine-tune, global scope, with logits and hidden-state KD from the dense model
    (same depth, so layer i learns from layer i) over 3 more epochs; 80% is reached after 1.2 of them."""
    gmp = {"type": "magnitude_pruning", "final_sparsity": 0.8, "start": 0.0, "end": 0.4, "update_every": 10}
    kd = {**PRUNE_FROM_DENSE_KD, "hidden_weight": 1.0}
    row_from_dense("gmp80_global_hidden_kd_3ep", [{**gmp, "scope": "global"}, kd], lr=1e-4, epochs=3)


def recipe_yaml(name: str) -> dict:
    """recipes/<name> as a dict (its data paths are relative to the repository)."""
    import yaml

    return yaml.safe_load(open(os.path.join(REPO, "recipes", name)))


def section_gmp80_hidden_kd_8ep() -> None:
    """recipes/gmp_80_kd.yaml, the GMP-80 recipe that meets issue 3's goal: as ``gmp80_hidden_kd`` but
    8 more epochs at lr 2e-4, 80% reached after 2.4 of them (at lr 1e-4 the same run kept 95.9%). Seed 0
    and seed 1, each pruning the dense fine-tune of its own seed, with it as teacher and as the reference
    (about 15 min each)."""
    recipe = recipe_yaml("gmp_80_kd.yaml")
    lr, epochs = recipe["training"]["learning_rate"], recipe["training"]["num_train_epochs"]
    for seed, suffix in ((0, ""), (1, "_seed1")):
        row_from_dense(f"gmp80_global_hidden_kd_8ep{suffix}", recipe["modifiers"], lr, epochs, seed)


def section_obs_8ep() -> None:
    """recipes/obs_90_kd.yaml (OBS 90%, logits + hidden KD from the dense fine-tune, 8 more epochs at lr 2e-4,
    90% reached after 2.4 of them), then the same budget for GMP at 90% and OBS and GMP at 80%: issue 25's
    goals judged on the recipe the issue names rather than the curve's one-epoch budget."""
    recipe = recipe_yaml("obs_90_kd.yaml")
    lr, epochs = recipe["training"]["learning_rate"], recipe["training"]["num_train_epochs"]
    obs, kd = recipe["modifiers"]
    gmp = {**recipe_yaml("gmp_80_kd.yaml")["modifiers"][0]}
    runs = {"obs90_hidden_kd_8ep": obs, "gmp90_hidden_kd_8ep": {**gmp, "final_sparsity": 0.9},
            "obs80_hidden_kd_8ep": {**obs, "final_sparsity": 0.8}}  # fmt: skip
    for name, pruning in runs.items():
        if not os.path.exists(os.path.join(RESULTS, f"sst2_{name}.json")):
            row_from_dense(name, [pruning, kd], lr, epochs)


def section_full_train() -> None:
    """Dense vs GMP 80% (the core row's schedule) on all 60,614 SST-2 training rows instead of the protocol's
    8,000: same budget for both, 1 epoch; the pruned model is measured against this dense run."""
    torch.set_num_threads(2)
    full = {"data__max_train_samples": None}
    dense = sst2_row("dense_full_train", [], **full)
    gmp = {"type": "magnitude_pruning", "final_sparsity": 0.8, "start": 0.05, "end": 0.7, "update_every": 10}
    sst2_row("gmp80_full_train", [gmp], dense["accuracy"], **full)


def section_seeds() -> None:
    """How much a single seed decides: dense, LoRA and GMP 80% again at seed 1 (the core rows use 0);
    LoRA and GMP rows are measured against the dense run of their own seed."""
    torch.set_num_threads(2)
    lora = {"type": "lora", "r": 8, "alpha": 16, "dropout": 0.05, "merge": True}
    gmp = {"type": "magnitude_pruning", "final_sparsity": 0.8, "start": 0.05, "end": 0.7, "update_every": 10}
    for seed in (1,):  # each seed adds three fine-tunes, about 6 minutes
        dense = sst2_row(f"dense_seed{seed}", [], training__seed=seed)["accuracy"]
        sst2_row(f"lora_r8_seed{seed}", [lora], dense, training__seed=seed, training__learning_rate=5e-4)
        sst2_row(f"gmp80_seed{seed}", [gmp], dense, training__seed=seed)


RTN_INT4_G32 = {"type": "ptq", "method": "rtn", "bits": 4, "group_size": 32}
QAT_INT4_G32 = {"type": "qat", "bits": 4, "group_size": 32}


def int4_g32_rows(seed: int, rows: tuple[str, ...] = ("rtn", "qat", "scales")) -> None:
    """The int4 g32 rows of one seed, each against the dense fine-tune of that seed: ``rtn`` rounds that
    fine-tune, ``qat`` is a QAT fine-tune from the pretrained model, ``scales`` takes RTN's own codes and
    learns only the per-group scales for one more epoch with the dense fine-tune as KD teacher."""
    torch.set_num_threads(2)
    dense_dir, dense = dense_reference(seed)
    suffix = f"_seed{seed}" if seed else ""
    if "rtn" in rows:
        sst2_row(
            f"ptq_rtn_int4_g32{suffix}", [RTN_INT4_G32], dense, model__name_or_path=dense_dir, training__max_steps=0
        )
    if "qat" in rows:
        sst2_row(f"qat_int4_g32{suffix}", [QAT_INT4_G32], dense, training__seed=seed)
    if "scales" in rows:
        rtn = {"type": "rtn", "bits": 4, "group_size": 32, "symmetric": True, "recovery": "scales"}
        row_from_dense(f"rtn_int4_g32_scales_kd_from_dense{suffix}", [rtn, PRUNE_FROM_DENSE_KD], lr=2e-5, seed=seed)


def section_int4_seed1() -> None:
    """The int4 g32 pair (RTN on the dense fine-tune, QAT fine-tune) again at seed 1, against dense seed 1:
    at seed 0 RTN loses nothing, so whether QAT wins back half of RTN's loss cannot be judged there."""
    int4_g32_rows(1, ("rtn", "qat"))


def section_int4_scales_kd() -> None:
    """RTN int4 g32 on the dense fine-tune (the grid of the RTN rows), then one epoch that learns only the
    per-group scales (integer codes fixed) with the dense model as KD teacher, at seeds 0 and 1."""
    for seed in (0, 1):
        int4_g32_rows(seed, ("scales",))


INT4_MORE_SEEDS = (2, 3, 4)


def section_int4_seeds() -> None:
    """Every int4 g32 row (dense, RTN, QAT, RTN + scales-only QAT) at seeds 2-4, about 6 minutes a seed.
    RTN's loss at one seed is a few of 872 examples, below one run's noise, so the goal is also judged
    on the means over seeds 0-4."""
    for seed in INT4_MORE_SEEDS:
        int4_g32_rows(seed)


def section_int4_control() -> None:
    """The control for the scales-only QAT rows: the same extra epoch with the same KD teacher and learning
    rate on the dense fine-tune, nothing quantized, at seeds 0-4. What it gains is what the extra epoch
    gives, not what QAT wins back."""
    for seed in (0, 1, *INT4_MORE_SEEDS):
        row_from_dense(f"dense_kd_epoch{f'_seed{seed}' if seed else ''}", [PRUNE_FROM_DENSE_KD], lr=2e-5, seed=seed)


def section_quantization() -> None:
    """QAT int8 / int4 g32 fine-tunes; RTN int4 and dynamic int8 applied to the dense fine-tune."""
    from transformers import AutoModelForSequenceClassification

    from hf_lite.quantization.modifiers import dynamic_int8

    torch.set_num_threads(2)
    dense_dir, dense_acc = dense_reference()
    no_train = {"model__name_or_path": dense_dir, "training__max_steps": 0}
    sst2_row("ptq_rtn_int4_g32", [RTN_INT4_G32], dense_acc, **no_train)
    row = sst2_row("ptq_dynamic_int8", [{"type": "ptq", "method": "dynamic_int8"}], dense_acc, **no_train)
    dense = AutoModelForSequenceClassification.from_pretrained(dense_dir)
    quantized = dynamic_int8(AutoModelForSequenceClassification.from_pretrained(dense_dir))
    save("sst2_ptq_dynamic_int8", with_speedups(row, {"fp32": dense, "dynamic_int8": quantized}))
    sst2_row("qat_int8", [{"type": "qat", "bits": 8}], dense_acc)
    sst2_row("qat_int4_g32", [QAT_INT4_G32], dense_acc)


def section_int4_per_channel() -> None:
    """A grid coarse enough to hurt: int4 with one scale per output channel (no groups). RTN on the dense
    fine-tune vs QAT over the same 1-epoch budget - how much of RTN's loss does QAT win back?"""
    torch.set_num_threads(2)
    dense_dir, dense_acc = dense_reference()
    no_train = {"model__name_or_path": dense_dir, "training__max_steps": 0}
    sst2_row("ptq_rtn_int4_per_channel", [{"type": "ptq", "method": "rtn", "bits": 4}], dense_acc, **no_train)
    sst2_row("qat_int4_per_channel", [{"type": "qat", "bits": 4}], dense_acc)


def section_qat_from_dense() -> None:
    """int4 per-channel QAT as a short fine-tune of the dense model (KD from it), the usual QAT recipe."""
    row_from_dense("qat_int4_per_channel_kd_from_dense", [{"type": "qat", "bits": 4}, PRUNE_FROM_DENSE_KD], lr=2e-5)


def section_qat_int4_long() -> None:
    """int4 per-channel QAT from the dense fine-tune with KD, 3 epochs at lr 5e-5 (vs 1 epoch at 2e-5)."""
    mods = [{"type": "qat", "bits": 4}, PRUNE_FROM_DENSE_KD]
    row_from_dense("qat_int4_per_channel_kd_from_dense_3ep", mods, lr=5e-5, epochs=3)


def section_qat_int4_lsq() -> None:
    """int4 per-channel QAT from the dense fine-tune with KD and learned scales (LSQ), +1 epoch at lr 5e-5."""
    mods = [{"type": "qat", "bits": 4, "learnable_scales": True}, PRUNE_FROM_DENSE_KD]
    row_from_dense("qat_int4_per_channel_lsq_kd_from_dense", mods, lr=5e-5)


def section_peft() -> None:
    torch.set_num_threads(2)
    _, dense_acc = dense_reference()
    sst2_row("head_only", [{"type": "head_only"}], dense_acc, training__learning_rate=1e-3)
    sst2_row("lora_r8", [{"type": "lora", "r": 8, "alpha": 16, "dropout": 0.05, "merge": True}], dense_acc,
             training__learning_rate=5e-4)  # fmt: skip


def section_distillation() -> None:
    """3-layer student from the dense teacher's blocks 0, 2, 4: logits KD (alpha 0.5, T 2) and no KD;
    student vs teacher latency side by side."""
    from transformers import AutoModelForSequenceClassification

    torch.set_num_threads(2)
    dense_dir, dense_acc = dense_reference()
    student = student_overrides(dense_dir)
    sst2_row("student3_no_kd", [], dense_acc, **student)
    kd = [{"type": "distillation", "temperature": 2.0, "alpha": 0.5}]
    row = sst2_row("student3_kd_logits", kd, dense_acc, teacher__name_or_path=dense_dir, **student)
    teacher = AutoModelForSequenceClassification.from_pretrained(dense_dir)
    student_model = AutoModelForSequenceClassification.from_pretrained(os.path.join(OUT, "student3_kd_logits"))
    save("sst2_student3_kd_logits", with_speedups(row, {"teacher": teacher, "student": student_model}))


def section_kd_hidden() -> None:
    """The 3-layer student with logits KD (alpha 0.7) plus hidden-state MSE on a uniform layer map."""
    torch.set_num_threads(2)
    dense_dir, dense_acc = dense_reference()
    student = student_overrides(dense_dir)
    kd = [{"type": "distillation", "temperature": 2.0, "alpha": 0.7, "hidden_weight": 1.0, "layer_map": "uniform"}]
    sst2_row("student3_kd", kd, dense_acc, teacher__name_or_path=dense_dir, **student)


def section_smollm2_kd(steps: int = 30) -> None:
    """Half-depth SmolLM2 student (layers 0, 2, ..., 28) on tiny_shakespeare: logits KD vs no KD, same steps."""

    torch.set_num_threads(2)
    rows = {}
    for name, mods in (("no_kd", []), ("kd", [{"type": "distillation", "temperature": 2.0, "alpha": 0.5}])):
        recipe = {
            "model": {"name_or_path": "smollm2-135m", "task": "causal-lm", "init_from_teacher": {"layers": list(range(0, 30, 2))}},
            "data": {"train": f"{SHARED}/tiny_shakespeare/input.txt", "eval": f"{SHARED}/wikitext2_raw/wiki.test.raw",
                     "max_length": 256, "max_train_samples": 2 * steps, "max_eval_samples": 8},
            "training": {"max_steps": steps, "learning_rate": 1e-4, "per_device_train_batch_size": 2,
                         "per_device_eval_batch_size": 4, "seed": 0, "logging_steps": 5},
            "modifiers": mods,
            "export": {"output_dir": os.path.join(OUT, f"smollm2_half_{name}"), "overwrite": True},
        }  # fmt: skip
        if mods:
            recipe["teacher"] = {"name_or_path": "smollm2-135m"}
        report = run_recipe(recipe)
        m = report["metrics"]
        rows[name] = {"ppl_before": m["before"]["before_perplexity"], "ppl_after": m["after"]["after_perplexity"],
                      "train_s": report["timings_s"].get("train_s"), "parameters": report["compression"]["parameters"]}  # fmt: skip
    save("smollm2_half_depth_kd", {"steps": steps, "batch": 2, "seq_len": 256,
                                   "eval": "WikiText-2 test, 8 x 256 tokens", "rows": rows})  # fmt: skip


def section_kd_cache(dense_dir: str | None = None, rows: int = 960) -> None:
    """KD step cost: plain student vs KD vs KD with cache_teacher, 2 epochs of 960 rows (epoch 2 reuses logits)."""

    torch.set_num_threads(2)
    dense_dir = dense_dir or dense_reference()[0]
    base = json.loads(json.dumps(SST2_BASE))
    base["model"].update(name_or_path=dense_dir, init_from_teacher={"layers": [0, 2, 4]})
    base["data"].update(max_train_samples=rows, eval=None)
    base["training"].update(num_train_epochs=2, learning_rate=1e-4)
    kd = {"type": "distillation", "temperature": 2.0, "alpha": 0.7}
    out = {}
    for name, mods, teacher in (
        ("student_plain", [], False),
        ("kd", [kd], True),
        ("kd_cached", [{**kd, "cache_teacher": True}], True),
    ):
        recipe = json.loads(json.dumps(base))
        recipe["modifiers"] = mods
        if teacher:
            recipe["teacher"] = {"name_or_path": dense_dir}
        recipe["export"] = {"output_dir": os.path.join(OUT, f"kdcache_{name}"), "overwrite": True}
        report = run_recipe(recipe)
        out[name] = {
            "train_s": report["timings_s"]["train_s"],
            "train_loss": report["metrics"]["train"].get("train_loss"),
        }
    out["kd_over_plain"] = out["kd"]["train_s"] / out["student_plain"]["train_s"]
    out["kd_cached_over_plain"] = out["kd_cached"]["train_s"] / out["student_plain"]["train_s"]
    save("kd_step_cost", {"rows": rows, "epochs": 2, "batch": 32, **out})


QLORA_CHILD = r"""
import json, resource, sys, time, torch
sys.path.insert(0, {repo!r})
torch.set_num_threads(2)
from hf_lite.api import run_recipe
recipe = {{
    "model": {{"name_or_path": "smollm2-135m", "task": "causal-lm"}},
    "data": {{"train": "{shared}/tiny_shakespeare/input.txt", "max_length": 256, "max_train_samples": 64}},
    "training": {{"max_steps": {steps}, "learning_rate": {lr}, "per_device_train_batch_size": 2, "logging_steps": 1, "seed": 0, "save_strategy": "no"}},
    "modifiers": {modifiers},
    "export": {{"output_dir": "{out}", "overwrite": True}},
}}
t = time.perf_counter()
report = run_recipe(recipe)
print(json.dumps({{"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "wall_s": time.perf_counter() - t,
                   "train_loss": report["metrics"]["train"].get("train_loss"), "trainable_fraction": report["trainable_fraction"]}}))
"""


def section_qlora_memory(steps: int = 8) -> None:
    """SmolLM2-135M on tiny_shakespeare, a few steps: QLoRA (NF4 base + LoRA r=8) vs full fine-tune, peak RSS."""
    rows = {}
    for name, modifiers, lr in (
        ("full", [], 5e-5),
        ("qlora", [{"type": "qlora", "r": 8, "alpha": 16, "merge": False}], 2e-4),
    ):
        code = QLORA_CHILD.format(
            repo=REPO,
            shared=SHARED,
            steps=steps,
            lr=lr,
            modifiers=repr(modifiers),
            out=os.path.join(OUT, f"smollm2_{name}"),
        )
        res = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}
        )
        try:
            rows[name] = json.loads(res.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            rows[name] = {"error": res.stderr[-2000:]}
        logs = [line for line in res.stdout.splitlines() if line.startswith("{'loss'")]
        rows[name]["loss_log"] = logs
    if "peak_rss_mib" in rows.get("full", {}) and "peak_rss_mib" in rows.get("qlora", {}):
        rows["rss_ratio_qlora_over_full"] = rows["qlora"]["peak_rss_mib"] / rows["full"]["peak_rss_mib"]
    save("smollm2_qlora_memory", {"steps": steps, "batch": 2, "seq_len": 256, "rows": rows})


def section_fsdp_teacher(steps: int = 4) -> None:
    """Distillation under FSDP2 on a 2-process CPU mesh (gloo): a BERT-base-sized teacher sharded like the
    student vs a whole teacher per rank. Per rank: teacher bytes held, RSS after training, peak RSS."""
    rows: dict[str, list] = {}
    worker = os.path.join(REPO, "bench", "fsdp_teacher_worker.py")
    # a fixed mmap threshold returns freed tensors to the OS, so RSS shows live memory, not the allocator's
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "131072"}
    env["PYTHONPATH"] = REPO
    for mode in ("sharded", "full"):
        out = os.path.join(OUT, f"fsdp_teacher_{mode}")
        shutil.rmtree(out, ignore_errors=True)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", worker,
               "--teacher", mode, "--steps", str(steps), "--out", out]  # fmt: skip
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        found = [json.load(open(os.path.join(out, f"rank{r}.json"))) for r in (0, 1) if res.returncode == 0]
        rows[mode] = found or [{"error": res.stderr[-2000:]}]
    save("fsdp_teacher_memory", {"world_size": 2, "steps": steps, "rows": rows})


def recovery_row(recipe: dict, folder: str) -> dict:
    """Run a one-shot + recovery recipe on SmolLM2: perplexity before, after one-shot and after training."""

    report = run_recipe(recipe, output_dir=os.path.join(OUT, folder), overwrite=True)
    m = report["metrics"]
    row = {
        "ppl_dense": m["before"]["before_perplexity"],
        "ppl_after_oneshot": m["after_oneshot"]["oneshot_perplexity"],
        "ppl_after_recovery": m["after"]["after_perplexity"],
        "sparsity": report["compression"]["sparsity"],
        "bits": report["compression"]["bits"],
        "trainable_parameters": report["trainable_parameters"],  # counted after the one-shot step
        "timings_s": report["timings_s"],
        "generation_sample": report.get("generation_sample"),
        "modifiers": recipe["modifiers"],
        "calibration": recipe["calibration"],
        "training": recipe["training"],
        "commit": COMMIT,  # a file can hold rows from several runs
    }
    print(f"[bench] {folder}: {row['ppl_after_oneshot']} -> {row['ppl_after_recovery']}")
    return row


def section_recovery(variants: tuple[str, ...] = ("kd",)) -> None:
    """recipes/oneshot_sparsegpt24_recover.yaml: SparseGPT 2:4 on SmolLM2, then 20 steps that keep the mask
    with the dense model as distillation teacher (pure KL, T 1); `recovery_plain`: the same steps without KD."""
    torch.set_num_threads(2)
    os.chdir(REPO)  # the recipe's data paths are relative to the repository
    base = recipe_yaml("oneshot_sparsegpt24_recover.yaml")
    kd = json.loads(json.dumps(base))
    kd["teacher"] = {"name_or_path": "smollm2-135m"}
    kd["modifiers"].append({"type": "distillation", "temperature": 1.0, "alpha": 1.0})
    rows = saved_rows("smollm2_sparsegpt24_recover")
    for name, recipe in (("plain", base), ("kd", kd)):
        if name in variants:
            rows[name] = recovery_row(recipe, f"recover_{name}")
    save("smollm2_sparsegpt24_recover", {"recipe": "recipes/oneshot_sparsegpt24_recover.yaml", "rows": rows})


def section_gptq_recover() -> None:
    """recipes/oneshot_gptq_g128_recover.yaml: GPTQ int4 g128 (our best grid) on SmolLM2, then 30 KD steps
    that learn only the per-group scales; `snap`: the same steps training the weights in float and rounding
    them back onto GPTQ's grid at finalize."""
    torch.set_num_threads(2)
    os.chdir(REPO)  # the recipe's data paths are relative to the repository
    scales = recipe_yaml("oneshot_gptq_g128_recover.yaml")
    snap = json.loads(json.dumps(scales))
    snap["modifiers"][0]["recovery"] = "snap"
    rows = {}
    for name, recipe in (("scales", scales), ("snap", snap)):
        rows[name] = recovery_row(recipe, f"gptq_recover_{name}")
        save("smollm2_gptq_g128_recover", {"recipe": "recipes/oneshot_gptq_g128_recover.yaml", "rows": rows})


def wikitext_held_out() -> str:
    """WikiText-2 test text from character 600,000 on: disjoint from the first 16,384 evaluated tokens (which
    end near character 65,000), so it serves as in-domain text for calibration and recovery."""
    return open(f"{SHARED}/wikitext2_raw/wiki.test.raw", encoding="utf-8").read().replace("\r", "")[600_000:]


def section_gptq_recover_wiki(
    steps: int = 150,
    recovery: str = "scales",
    true_sequential: bool = False,
    lr: float = 1e-3,
) -> None:
    """gptq_recover in-domain: GPTQ int4 g128 calibrated on held-out WikiText (32 x 256 tokens), then
    ``steps`` x 2 x 512 tokens of the same text learning the scales, KD from the dense model, peak ``lr``.
    ``recovery: scales`` also trains the float parameters (tied embeddings, norms); ``scales_only`` not.
    ``true_sequential`` calibrates stage by stage."""
    torch.set_num_threads(2)
    os.chdir(REPO)
    text_file = os.path.join(OUT, "wikitext_heldout.txt")
    with open(text_file, "w", encoding="utf-8") as f:
        f.write(wikitext_held_out())
    recipe = recipe_yaml("oneshot_gptq_g128_recover.yaml")
    recipe["calibration"].update(source=text_file, true_sequential=true_sequential)
    recipe["data"]["train"] = text_file
    recipe["data"]["max_train_samples"] = 2 * steps
    recipe["training"].update(max_steps=steps, learning_rate=lr)
    recipe["modifiers"][0]["recovery"] = recovery
    key = recovery + ("_true_sequential" if true_sequential else "")
    key += "" if (steps, lr) == (150, 1e-3) else f"_{steps}steps_lr{lr:g}"  # the first rows' names stay
    row = recovery_row(recipe, f"gptq_recover_wiki_{key}")
    row["text"] = "wiki.test.raw from character 600,000 (CR stripped), for calibration and training"
    rows = saved_rows("smollm2_gptq_g128_recover_wiki")
    rows[key] = row
    save("smollm2_gptq_g128_recover_wiki", {"recipe": "recipes/oneshot_gptq_g128_recover.yaml", "rows": rows})


def section_gptq_recover_wiki_scales_only() -> None:
    section_gptq_recover_wiki(recovery="scales_only")


def section_gptq_recover_wiki_long() -> None:
    """scales_only for twice the steps at half the peak lr."""
    section_gptq_recover_wiki(steps=300, recovery="scales_only", lr=5e-4)


def section_recovery_plain() -> None:
    section_recovery(("plain",))


def section_latency() -> None:
    """Re-measure every side-by-side speed-up from the saved folders in one quiet run (3 interleaved repeats)."""
    from transformers import AutoModelForSequenceClassification

    from hf_lite.quantization.modifiers import dynamic_int8

    torch.set_num_threads(2)
    load = lambda name: AutoModelForSequenceClassification.from_pretrained(os.path.join(OUT, name))  # noqa: E731
    models = {"dense": load("dense"), "dynamic_int8": dynamic_int8(load("dense"))}
    for name in ("structured_ffn50_heads25", "student3_kd_logits"):
        if os.path.exists(os.path.join(OUT, name, "config.json")):
            models[name] = load(name)
    lat = side_by_side_latency(models)
    speedups = {f"{n}_b{b}": lat[f"dense_b{b}"] / lat[f"{n}_b{b}"] for n in models if n != "dense" for b in (1, 8)}
    save("latency_side_by_side", {"latency_s": lat, "speedup_vs_dense": speedups, "loadavg_before": os.getloadavg()})


def section_int8_engines() -> None:
    """Why dynamic int8 stops short of 1.8x here: model latency under each quantized engine and with
    torch.compile (interleaved), the FFN GEMM alone (1024 x 384 -> 1536, batch 8 x 128), and a profile of
    where fp32 and int8 time goes."""
    import copy

    from torch.profiler import profile
    from transformers import AutoModelForSequenceClassification

    from hf_lite.quantization.modifiers import dynamic_int8

    torch.set_num_threads(2)
    dense = AutoModelForSequenceClassification.from_pretrained(os.path.join(OUT, "dense")).eval()
    engines = [e for e in ("x86", "fbgemm", "onednn") if e in torch.backends.quantized.supported_engines]
    default_engine = torch.backends.quantized.engine
    models, times = {"fp32": dense}, {}  # keys: the quantized engine each int8 copy was built and runs with
    for engine in engines:
        torch.backends.quantized.engine = engine
        models[engine] = dynamic_int8(copy.deepcopy(dense))
    torch.backends.quantized.engine = default_engine
    # torch.compile (inductor) fuses GELU, LayerNorm and the adds around the Linears, for both models
    for name in ("fp32", default_engine):
        models[f"{name}_compiled"] = torch.compile(copy.deepcopy(models[name]))
    for _ in range(3):
        for name, model in models.items():
            engine = name.removesuffix("_compiled")
            torch.backends.quantized.engine = default_engine if engine == "fp32" else engine
            times.setdefault(name, []).append(latency(model, 8))
    lat = {k: statistics.median(v) for k, v in times.items()}

    x, ffn = torch.randn(1024, 384), torch.nn.Linear(384, 1536)
    gemm = {}
    for engine in engines:
        torch.backends.quantized.engine = engine
        int8 = dynamic_int8(torch.nn.Sequential(copy.deepcopy(ffn)))
        fp32_ms, int8_ms = (1e3 * median_seconds(lambda m=m: m(x), runs=50, warmup=5) for m in (ffn, int8))
        gemm[engine] = {"fp32_ms": fp32_ms, "int8_ms": int8_ms, "speedup": fp32_ms / int8_ms}
    torch.backends.quantized.engine = default_engine
    ids = torch.randint(1000, 2000, (8, 128))
    share = {}
    for name in ("fp32", default_engine):
        model = models[name]
        with torch.inference_mode(), profile() as prof:
            for _ in range(5):
                model(input_ids=ids, attention_mask=torch.ones_like(ids))
        ops = {e.key: e.self_cpu_time_total / 1e3 for e in prof.key_averages()}
        linear = sum(v for k, v in ops.items() if k in ("aten::addmm", "aten::copy_", "quantized::linear_dynamic"))
        share[name] = {"total_ms": sum(ops.values()), "linear_ms": linear, "top_ops_ms": dict(sorted(ops.items(), key=lambda kv: -kv[1])[:6])}  # fmt: skip
    save(
        "dynamic_int8_engines",
        {
            "default_engine": default_engine,
            "latency_b8_s": lat,
            "speedup_b8": {k: lat["fp32"] / v for k, v in lat.items() if k != "fp32"},
            "ffn_gemm": gemm,
            "profile_5_forwards": share,
            "note": "linear_ms counts addmm plus the bias copy_ (fp32) or quantized::linear_dynamic (int8)",
        },
    )


def section_overhead(steps: int = 30, variants_only: tuple[str, ...] | None = None) -> None:
    """Step time of LiteTrainer + each modifier vs a plain Trainer, same model and batch, interleaved."""
    import datasets
    from transformers import Trainer, TrainingArguments

    from hf_lite import LiteTrainer
    from hf_lite.models import load_model, load_tokenizer

    torch.set_num_threads(2)
    tok = load_tokenizer("minilm-l6")
    texts = [line.split("\t")[0] for line in open(f"{SST2}/train.tsv").read().splitlines()[1 : 1 + 32 * steps]]
    enc = tok(texts, truncation=True, max_length=64, padding="max_length")
    enc["labels"] = [i % 2 for i in range(len(texts))]
    ds = datasets.Dataset.from_dict(dict(enc))
    variants = {
        "plain": None,
        "magnitude_pruning": [
            {"type": "magnitude_pruning", "final_sparsity": 0.8, "start": 0, "end": 0.7, "update_every": 10}
        ],
        "qat_int8": [{"type": "qat", "bits": 8}],
    }
    extra = os.environ.get("BENCH_OVERHEAD_EXTRA")
    if extra:
        variants.update(json.loads(extra))
    if variants_only:
        variants = {k: v for k, v in variants.items() if k == "plain" or k in variants_only}
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(3):  # interleave repeats: the machine is noisy
        for name, recipe in variants.items():
            args = TrainingArguments(
                output_dir=os.path.join(OUT, "overhead"),
                max_steps=steps,
                per_device_train_batch_size=32,
                report_to="none",
                save_strategy="no",
                use_cpu=True,
                disable_tqdm=True,
                logging_steps=1000,
            )
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
            save(
                f"overhead_{name}",
                {
                    "step_s": statistics.median(ts),
                    "plain_step_s": base,
                    "ratio": statistics.median(ts) / base,
                    "all_s": ts,
                },
            )


def run_peer(python: str, script: str, *args: str) -> dict:
    """Run bench/peers/<script> in a peer's venv; its last stdout line is JSON (or the error is kept)."""
    load = os.getloadavg()
    res = subprocess.run(
        [python, os.path.join(HERE, "peers", script), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    try:
        out = json.loads(res.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        out = {"error": res.stderr[-2000:]}
    return {**out, "loadavg_before": load}


def section_torchao() -> None:
    """torchao int8 QAT (plain Trainer) vs hf_lite's `qat bits: 8`: SST-2 accuracy and step-time ratio.

    TAO_PYTHON: a python with torchao (make peers-venv). Each tool's step-time ratio is taken against a
    plain Trainer in the same process, interleaved; then the two ratios are compared.
    """
    from hf_lite.models import resolve_model_path

    tao_python = os.environ.get("TAO_PYTHON", os.path.join(os.path.dirname(REPO), "tao-venv", "bin", "python"))
    if not os.path.exists(tao_python):
        print(f"[bench] torchao: {tao_python} is absent; run `make peers-venv` or set TAO_PYTHON")
        return
    model_dir = resolve_model_path("minilm-l6")
    _, dense_acc = dense_reference()
    ours = json.load(open(os.path.join(RESULTS, "sst2_qat_int8.json")))
    theirs = {}
    for mode in ("accuracy", "overhead", "latency"):
        theirs[mode] = run_peer(tao_python, "torchao_qat.py", model_dir, SST2, mode)
    if "overhead" not in DONE:  # the core run measured it minutes ago; alone, measure it now
        section_overhead(variants_only=("qat_int8",))
    our_overhead = json.load(open(os.path.join(RESULTS, "overhead_qat_int8.json")))
    save(
        "qat_int8_vs_torchao",
        {
            "dense_accuracy": dense_acc,
            "hf_lite": {"accuracy": ours["accuracy"], "step_ratio": our_overhead["ratio"], "train_s": ours["train_s"]},
            "torchao": {
                "accuracy": theirs["accuracy"].get("accuracy"),
                "step_ratio": theirs["overhead"].get("ratio"),
                "train_s": theirs["accuracy"].get("train_s"),
                "int8_dynamic_speedup_b8": theirs["latency"].get("speedup_b8"),
                "int8_dynamic_speedup_b1": theirs["latency"].get("speedup_b1"),
                "raw": theirs,
            },
        },
    )


SHARED = os.path.normpath(os.path.join(REPO, "..", "shared", "data"))
ONESHOT_METHODS = {
    "dense": None,
    "magnitude50": {"type": "magnitude", "sparsity": 0.5},
    "wanda50": {"type": "wanda", "sparsity": 0.5},
    "sparsegpt50": {"type": "sparsegpt", "sparsity": 0.5},
    "magnitude24": {"type": "magnitude", "pattern": "2:4"},
    "wanda24": {"type": "wanda", "pattern": "2:4"},
    "sparsegpt24": {"type": "sparsegpt", "pattern": "2:4"},
    "rtn_g64": {"type": "rtn", "bits": 4, "group_size": 64, "symmetric": True},
    "gptq_g64": {"type": "gptq", "bits": 4, "group_size": 64, "symmetric": True},
    "rtn_g64_asym": {"type": "rtn", "bits": 4, "group_size": 64, "symmetric": False},
    "gptq_g64_asym_actorder": {"type": "gptq", "bits": 4, "group_size": 64, "symmetric": False, "act_order": True},
    "rtn_g64_asym_mse": {"type": "rtn", "bits": 4, "group_size": 64, "symmetric": False, "observer": "mse"},
    "gptq_g64_asym_mse_actorder": {
        "type": "gptq",
        "bits": 4,
        "group_size": 64,
        "symmetric": False,
        "act_order": True,
        "observer": "mse",
    },
    # 128 does not divide SmolLM2's 576 inputs: the last group of those layers is 64 wide
    "rtn_g128": {"type": "rtn", "bits": 4, "group_size": 128, "symmetric": True},
    "gptq_g128": {"type": "gptq", "bits": 4, "group_size": 128, "symmetric": True},
    "gptq_g128_asym_mse_actorder": {
        "type": "gptq",
        "bits": 4,
        "group_size": 128,
        "symmetric": False,
        "act_order": True,
        "observer": "mse",
    },
    # the checkpoint itself is a dequantized Q4_1 GGUF (asymmetric, blocks of 32): g32 is its native size
    "rtn_g32_asym": {"type": "rtn", "bits": 4, "group_size": 32, "symmetric": False},
    "gptq_g32_asym_actorder": {"type": "gptq", "bits": 4, "group_size": 32, "symmetric": False, "act_order": True},
    # float zero point: the grid spans each group's exact [min, max], as GGUF Q4_1 does
    "rtn_g32_asym_float_zero": {"type": "rtn", "bits": 4, "group_size": 32, "symmetric": False, "zero_point": "float"},
    "rtn_g64_asym_float_zero": {"type": "rtn", "bits": 4, "group_size": 64, "symmetric": False, "zero_point": "float"},
    "gptq_g64_asym_float_zero_actorder": {
        "type": "gptq",
        "bits": 4,
        "group_size": 64,
        "symmetric": False,
        "zero_point": "float",
        "act_order": True,
    },
    "gptq_g128_asym_float_zero_actorder": {
        "type": "gptq",
        "bits": 4,
        "group_size": 128,
        "symmetric": False,
        "zero_point": "float",
        "act_order": True,
    },
}


ONESHOT_DONE: set[str] = set()  # rows computed in this process (the peers section reuses them)


def section_oneshot_variants() -> None:
    section_oneshot([m for m in ONESHOT_METHODS if m not in ONESHOT_CORE])


def section_oneshot(methods: list[str] | None = None) -> None:
    """SmolLM2-135M one-shot methods; calibration 32 x 256 tiny-shakespeare tokens, ppl on 32 x 512 WikiText-2 tokens."""
    from hf_lite.core.settings import RecipeError
    from hf_lite.models import load_model, load_tokenizer
    from hf_lite.oneshot import apply_recipe_
    from hf_lite.oneshot.apply import calibration_token_chunks
    from hf_lite.oneshot.evaluate import generation_sample, perplexity, text_windows
    from hf_lite.report import model_report

    torch.set_num_threads(2)
    tok = load_tokenizer("smollm2-135m")
    cal = calibration_token_chunks(open(f"{SHARED}/tiny_shakespeare/input.txt").read(), tok, 32, 256)
    windows = text_windows(open(f"{SHARED}/wikitext2_raw/wiki.test.raw", encoding="utf-8").read(), tok, 512, 32)
    rows = saved_rows("oneshot_smollm2")
    for name in methods or ONESHOT_CORE:
        spec = ONESHOT_METHODS[name]
        model = load_model("smollm2-135m", "causal-lm")
        load = os.getloadavg()
        t = time.perf_counter()
        try:
            timings = apply_recipe_(model, {"modifiers": [spec]}, cal).timings if spec else {}
        except RecipeError as e:
            rows[name] = {"modifier": spec, "error": str(e)}
            print(f"[bench] {name}: {e}")
            continue
        wall = time.perf_counter() - t
        t = time.perf_counter()
        ppl = perplexity(model, windows)
        report = model_report(model)
        rows[name] = {
            "modifier": spec,
            "ppl": ppl,
            "compress_s": round(wall, 1) if spec else None,
            "phases_s": timings,
            "eval_s": round(time.perf_counter() - t, 1),
            "sparsity": report["sparsity"],
            "bits": report["bits"],
            "loadavg_before": load,
            "sample": generation_sample(model, tok, "The history of the city begins", 24),
        }
        ONESHOT_DONE.add(name)
        print(f"[bench] {name}: ppl {ppl:.2f}, compress {wall:.1f} s, sparsity {report['sparsity']:.3f}")
        save(
            "oneshot_smollm2",
            {
                "protocol": "BENCH-PROTOCOL causal-LM: calibration tiny_shakespeare 32x256 from token 0; "
                "WikiText-2 test first 16,384 tokens as 32 x 512 windows",
                "rows": rows,
            },
        )


GPTQ_CALIBRATION_RUNS = {  # name: (calibration text, samples, seq_len, damp, true_sequential)
    "shakespeare_32x256_damp0.1": ("shakespeare", 32, 256, 0.1, False),
    "shakespeare_32x256_damp0.3": ("shakespeare", 32, 256, 0.3, False),
    "wikitext_heldout_32x256": ("held_out", 32, 256, 0.01, False),
    "wikitext_heldout_128x512": ("held_out", 128, 512, 0.01, False),
    "shakespeare_32x256": ("shakespeare", 32, 256, 0.01, False),  # the core row's setting, re-run beside the next
    "shakespeare_32x256_true_sequential": ("shakespeare", 32, 256, 0.01, True),
    "wikitext_heldout_32x256_true_sequential": ("held_out", 32, 256, 0.01, True),
}


def section_gptq_calibration(names: list[str] | None = None) -> None:
    """Is GPTQ int4 g128's gap to dense a calibration question? Our best g128 setting with more Hessian
    dampening, calibrated in-domain: WikiText-2 test text from character 600,000 on (disjoint from the
    first 16,384 evaluated tokens, which end near character 65,000), 32 x 256 and 128 x 512 tokens, and
    with ``calibration.true_sequential``. ``names``: a subset of GPTQ_CALIBRATION_RUNS (rows saved before are kept)."""
    from hf_lite.models import load_model, load_tokenizer
    from hf_lite.oneshot import apply_recipe_
    from hf_lite.oneshot.apply import calibration_token_chunks
    from hf_lite.oneshot.evaluate import perplexity, text_windows

    torch.set_num_threads(2)
    tok = load_tokenizer("smollm2-135m")
    windows = text_windows(open(f"{SHARED}/wikitext2_raw/wiki.test.raw", encoding="utf-8").read(), tok, 512, 32)
    texts = {"shakespeare": open(f"{SHARED}/tiny_shakespeare/input.txt").read(), "held_out": wikitext_held_out()}
    rows = saved_rows("oneshot_gptq_calibration")
    for name in names or GPTQ_CALIBRATION_RUNS:
        text, samples, seq_len, damp, true_sequential = GPTQ_CALIBRATION_RUNS[name]
        spec = {**ONESHOT_METHODS["gptq_g128_asym_mse_actorder"], "damp": damp}
        model = load_model("smollm2-135m", "causal-lm")
        recipe = {"modifiers": [spec], "calibration": {"true_sequential": true_sequential}}
        t = time.perf_counter()
        apply_recipe_(model, recipe, calibration_token_chunks(texts[text], tok, samples, seq_len))
        rows[name] = {
            "modifier": spec,
            "true_sequential": true_sequential,
            "commit": COMMIT,  # rows saved by earlier runs keep theirs (or have none)
            "compress_s": round(time.perf_counter() - t, 1),
            "ppl": perplexity(model, windows),
        }
        print(f"[bench] gptq calibration {name}: {rows[name]}")
        save(
            "oneshot_gptq_calibration",
            {
                "base_row": "gptq_g128_asym_mse_actorder (oneshot_smollm2.json)",
                "older_rows": "rows without a commit were made at e66b242 on the earlier AVX2 CPU (exploration script)",
                "rows": rows,
            },
        )


def section_gptq_true_sequential() -> None:
    """true_sequential next to the same calibration without it, on the same CPU."""
    section_gptq_calibration(
        [n for n in GPTQ_CALIBRATION_RUNS if n.endswith("true_sequential") or n.endswith("_32x256")]
    )


PEER_METHODS = {  # llm-compressor method -> our equivalent row in ONESHOT_METHODS
    "wanda50": "wanda50",
    "sparsegpt50": "sparsegpt50",
    "sparsegpt24": "sparsegpt24",
    "rtn_g64": "rtn_g64",
    "gptq_g64": "gptq_g64",
}


PEERS_CORE = ["wanda50", "rtn_g64", "gptq_g64"]  # llm-compressor's SparseGPT takes ~13 min a row here


def section_peers_sparsegpt() -> None:
    section_peers(["sparsegpt50", "sparsegpt24"])


def section_peers(methods: list[str] | None = None) -> None:
    """Ours and llm-compressor's, method by method in one run (LC_PYTHON: a python with llmcompressor).
    Our row is reused when this process computed it already (the core run's oneshot section)."""
    from hf_lite.models import resolve_model_path

    lc_python = os.environ.get("LC_PYTHON", os.path.join(os.path.dirname(REPO), "lc-venv", "bin", "python"))
    if not os.path.exists(lc_python):
        print(
            f"[bench] peers: {lc_python} is absent; create a venv with `pip install torch==2.13.0 llmcompressor` and set LC_PYTHON"
        )
        return
    model_dir = resolve_model_path("smollm2-135m")
    rows = saved_rows("oneshot_vs_llmcompressor")
    for name in methods or PEERS_CORE:
        if PEER_METHODS[name] not in ONESHOT_DONE:
            section_oneshot([PEER_METHODS[name]])
        ours = saved_rows("oneshot_smollm2")[PEER_METHODS[name]]
        theirs = run_peer(lc_python, "llmcompressor_oneshot.py", model_dir, SHARED, name)
        rows[name] = {
            "hf_lite": {k: ours.get(k) for k in ("ppl", "compress_s", "sparsity", "loadavg_before")},
            "llmcompressor": theirs,
            "time_ratio_theirs_over_ours": (theirs["compress_s"] / ours["compress_s"])
            if theirs.get("compress_s") and ours.get("compress_s")
            else None,
        }
        print(
            f"[bench] peers {name}: ours {ours.get('ppl')} in {ours.get('compress_s')} s; llm-compressor {theirs.get('ppl')} in {theirs.get('compress_s')} s"
        )
        save("oneshot_vs_llmcompressor", {"peer": "llmcompressor (see versions in its venv)", "rows": rows})


# Every ablation row starts from the paper's (and llm-compressor's) damp 0.01, hf_lite's default before this
# ablation moved it to 0.1, so the rows stay comparable with the peer's defaults.
SGPT_ABLATION_BASE = {"damp": 0.01}
SGPT_ABLATION = {  # name: (sparsegpt_ keywords, modifier settings, calibration seed (0: the protocol's chunks), true_sequential)
    "default": ({}, {}, 0, False),
    "threshold_rule": ({"rule": "threshold"}, {}, 0, False),
    "per_row": ({"per_row": True}, {}, 0, False),
    "mask_block_32": ({}, {"mask_block": 32}, 0, False),
    "true_sequential": ({}, {}, 0, True),
    "float64": ({"dtype": "float64"}, {}, 0, False),
    "damp_0.001": ({}, {"damp": 0.001}, 0, False),
    "damp_0.1": ({}, {"damp": 0.1}, 0, False),
    "default_cal1": ({}, {}, 1, False),
    "default_cal2": ({}, {}, 2, False),
    "mask_block_32_cal1": ({}, {"mask_block": 32}, 1, False),
    "mask_block_32_cal2": ({}, {"mask_block": 32}, 2, False),
    "damp_0.1_cal1": ({}, {"damp": 0.1}, 1, False),
    "damp_0.1_cal2": ({}, {"damp": 0.1}, 2, False),
    "threshold_rule_cal1": ({"rule": "threshold"}, {}, 1, False),
    "threshold_rule_cal2": ({"rule": "threshold"}, {}, 2, False),
}
SGPT_PEER_ROWS = {  # name: (calibration seed, method of bench/peers/llmcompressor_oneshot.py)
    "llmcompressor": (0, "sparsegpt50"),
    "llmcompressor_cal1": (1, "sparsegpt50"),
    "llmcompressor_cal2": (2, "sparsegpt50"),
    "llmcompressor_damp_0.1": (0, "sparsegpt50_damp0.1"),
    "llmcompressor_damp_0.1_cal1": (1, "sparsegpt50_damp0.1"),
    "llmcompressor_damp_0.1_cal2": (2, "sparsegpt50_damp0.1"),
}


def section_sparsegpt_ablation(names: list[str] | None = None) -> None:
    """SparseGPT 50% on SmolLM2-135M: where does a gap to llm-compressor come from? Ours with one change at a
    time from damp 0.01 (mask rule, mask granularity, precision, dampening, true_sequential) and both tools on two more
    calibration sets (32 x 256 random tiny-shakespeare windows, seeds 1 and 2), WikiText-2 ppl by the
    protocol. Rows already in bench/results/sparsegpt_ablation.json are kept."""
    from unittest import mock

    from hf_lite.models import load_model, load_tokenizer, resolve_model_path
    from hf_lite.oneshot import algorithms as alg
    from hf_lite.oneshot import apply_recipe_
    from hf_lite.oneshot.apply import calibration_token_chunks
    from hf_lite.oneshot.evaluate import perplexity, text_windows

    torch.set_num_threads(2)
    tok = load_tokenizer("smollm2-135m")
    text = open(f"{SHARED}/tiny_shakespeare/input.txt").read()
    cals = {0: calibration_token_chunks(text, tok, 32, 256)}
    cals.update({s: calibration_token_chunks(text, tok, 32, 256, "random", s) for s in (1, 2)})
    windows = text_windows(open(f"{SHARED}/wikitext2_raw/wiki.test.raw", encoding="utf-8").read(), tok, 512, 32)
    rows = saved_rows("sparsegpt_ablation")
    lc_python = os.environ.get("LC_PYTHON", os.path.join(os.path.dirname(REPO), "lc-venv", "bin", "python"))
    # the peer's rows next to ours on the same calibration, so a cut-short run still compares
    todo = names or ["default", "llmcompressor", "threshold_rule", "per_row", "mask_block_32", "true_sequential",
                     "default_cal1", "llmcompressor_cal1", "default_cal2", "llmcompressor_cal2", "float64",
                     "damp_0.001", "damp_0.1", "mask_block_32_cal1", "mask_block_32_cal2", "damp_0.1_cal1",
                     "damp_0.1_cal2", "llmcompressor_damp_0.1", "llmcompressor_damp_0.1_cal1",
                     "llmcompressor_damp_0.1_cal2", "threshold_rule_cal1", "threshold_rule_cal2"]  # fmt: skip
    for name in [n for n in todo if n not in rows]:
        if name in SGPT_PEER_ROWS:
            if not os.path.exists(lc_python):
                print(f"[bench] sparsegpt ablation: {lc_python} is absent (make peers-venv)")
                continue
            seed, method = SGPT_PEER_ROWS[name]
            cal_file = os.path.join(OUT, f"calibration_seed{seed}.json")
            os.makedirs(OUT, exist_ok=True)
            json.dump(cals[seed].tolist(), open(cal_file, "w"))
            out = run_peer(
                lc_python,
                "llmcompressor_oneshot.py",
                resolve_model_path("smollm2-135m"),
                SHARED,
                method,
                "",
                cal_file,
            )
            rows[name] = {
                "tool": "llmcompressor",
                "calibration_seed": seed,
                "change": {"dampening_frac": 0.1} if "damp" in name else {},
                **{k: out.get(k) for k in ("ppl", "compress_s", "sparsity", "error", "loadavg_before")},
            }
        else:
            keywords, settings, seed, true_sequential = SGPT_ABLATION[name]
            kw = {k: getattr(torch, v) if k == "dtype" else v for k, v in keywords.items()}
            model = load_model("smollm2-135m", "causal-lm")
            load = os.getloadavg()
            t = time.perf_counter()
            recipe = {
                "modifiers": [{"type": "sparsegpt", "sparsity": 0.5, **SGPT_ABLATION_BASE, **settings}],
                "calibration": {"true_sequential": true_sequential},
            }
            with mock.patch.object(alg, "sparsegpt_", functools.partial(alg.sparsegpt_, **kw)):
                apply_recipe_(model, recipe, cals[seed])
            wall = time.perf_counter() - t
            rows[name] = {"tool": "hf_lite", "calibration_seed": seed, "change": {**keywords, **settings, **({"true_sequential": True} if true_sequential else {})},
                          "ppl": perplexity(model, windows), "compress_s": round(wall, 1), "loadavg_before": load}  # fmt: skip
        print(f"[bench] sparsegpt ablation {name}: {rows[name].get('ppl')}", flush=True)
        save("sparsegpt_ablation", {"protocol": section_sparsegpt_ablation.__doc__, "rows": rows})


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
    from hf_lite.oneshot.apply import calibration_token_chunks
    from hf_lite.oneshot.evaluate import perplexity, text_windows
    from hf_lite.report import folder_size

    torch.set_num_threads(2)
    tok = load_tokenizer("smollm2-135m")
    cal = calibration_token_chunks(open(f"{SHARED}/tiny_shakespeare/input.txt").read(), tok, 32, 256)
    windows = text_windows(open(f"{SHARED}/wikitext2_raw/wiki.test.raw", encoding="utf-8").read(), tok, 512, 32)

    def block_bytes(path: str) -> int:
        """Bytes of the block Linears' tensors (weights, or packed codes + scales + shapes); norms excluded."""
        with safe_open(path, "pt") as f:
            tensors = [f.get_tensor(k) for k in f.keys() if ".layers." in k and "norm" not in k]
        return sum(t.numel() * t.element_size() for t in tensors)

    rows = {}
    for group in (64, 32):
        spec = {"type": "gptq", "bits": 4, "group_size": group, "symmetric": True}
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


def section_deploy_onnx(names: list[str] | None = None) -> None:
    """MiniLM-L6 SST-2 classifiers exported to ONNX (fp32 graph, onnxruntime dynamic int8 graph) against
    torch fp32 and torch dynamic int8: accuracy on the 872 test rows (max_length 64), latency at batch 1 x 128
    and 8 x 128 (median of 20 after warm-up, the four engines interleaved over 3 rounds, 2 threads each),
    file sizes. Rows: the dense fine-tune, and (if asked) GMP 80% with KD and QAT int8 from it."""
    import copy

    import numpy as np
    import onnxruntime as ort
    from transformers import AutoModelForSequenceClassification

    from hf_lite.data import load_split
    from hf_lite.deploy.onnx import FILES, export_onnx
    from hf_lite.models import load_tokenizer
    from hf_lite.quantization.modifiers import dynamic_int8

    torch.set_num_threads(2)
    dense_dir, dense_acc = dense_reference()
    folders = {"dense": dense_dir}
    extra = {
        "gmp80_kd": [{"type": "magnitude_pruning", "final_sparsity": 0.8, "scope": "global", "end": 0.7},
                     {"type": "distillation", "temperature": 2.0, "alpha": 0.9}],
        "qat_int8": [{"type": "qat", "bits": 8}],
    }  # fmt: skip
    for name in names or []:
        folder = os.path.join(OUT, f"onnx_{name}")
        if not os.path.isfile(os.path.join(folder, "model.safetensors")):
            recipe = copy.deepcopy(SST2_BASE)
            recipe["model"] = {"name_or_path": dense_dir, "task": "sequence-classification"}
            recipe["teacher"] = {"name_or_path": dense_dir}
            recipe["modifiers"] = extra[name]
            if name == "qat_int8":
                recipe.pop("teacher")
            run_recipe(recipe, output_dir=folder, overwrite=True)
        folders[name] = folder
    tok = load_tokenizer("minilm-l6")
    rows_sst2 = load_split(f"{SST2}/test.tsv", "eval")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    rows = {}
    for name, folder in folders.items():
        onnx_dir = os.path.join(folder, "onnx")
        if not os.path.isfile(os.path.join(onnx_dir, FILES["int8"])):
            shutil.rmtree(onnx_dir, ignore_errors=True)
            export_onnx(folder, onnx_dir)
        fp32 = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        engines = {
            "torch_fp32": fp32,
            "torch_int8": dynamic_int8(copy.deepcopy(fp32)),
            "ort_fp32": ort.InferenceSession(os.path.join(onnx_dir, FILES["fp32"]), options, providers=["CPUExecutionProvider"]),
            "ort_int8": ort.InferenceSession(os.path.join(onnx_dir, FILES["int8"]), options, providers=["CPUExecutionProvider"]),
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
    from hf_lite.oneshot.apply import calibration_token_chunks
    from hf_lite.oneshot.evaluate import perplexity, text_windows

    torch.set_num_threads(2)
    tok = load_tokenizer("smollm2-135m")
    cal = calibration_token_chunks(open(f"{SHARED}/tiny_shakespeare/input.txt").read(), tok, 32, 256)
    windows = text_windows(open(f"{SHARED}/wikitext2_raw/wiki.test.raw", encoding="utf-8").read(), tok, 512, 32)
    dense_dir = resolve_model_path("smollm2-135m")
    gptq_dir = os.path.join(OUT, "deploy_gguf_gptq_g32")
    if not os.path.isfile(os.path.join(gptq_dir, "model.safetensors")):
        model = load_model("smollm2-135m", "causal-lm")
        session = apply_recipe_(
            model, {"modifiers": [{"type": "gptq", "bits": 4, "group_size": 32, "symmetric": True}]}, cal
        )
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


SAMSUM = os.path.normpath(os.path.join(REPO, "..", "shared", "data", "samsum"))
#: SAMSum protocol (the shared data has no train split): the first 128 validation dialogues train for one
#: epoch (batch 4, 32 steps, dialogues over 384 tokens left out), the first 50 test dialogues are scored
#: (greedy, 48 new tokens, ROUGE F1 stemmed) with SmolLM2-135M-Instruct's chat template.
SAMSUM_BASE = {
    "version": 1,
    "model": {"name_or_path": "smollm2-135m", "task": "chat"},
    "data": {
        "train": f"{SAMSUM}/validation.jsonl",
        "eval": f"{SAMSUM}/test.jsonl",
        "prompt_column": "context",
        "response_column": "response",
        "prompt_template": "Summarize this dialogue in one or two sentences.\n\n{prompt}",
        "max_length": 384,
        "max_train_samples": 128,
        "max_eval_samples": 50,
    },
    "generation": {
        "max_new_tokens": 48,
        "batch_size": 10,
        "max_samples": 50,
        "samples": 3,
        "prompts": ["What is the capital of France?", "Write a one-line greeting for a friend's birthday."],
    },
    "training": {
        "num_train_epochs": 1,
        "learning_rate": 1e-4,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 3,
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 10,
        "train_sampling_strategy": "group_by_length",
        "logging_steps": 8,
        "seed": 0,
    },
    "modifiers": [],
}


def samsum_row(name: str, changes: dict) -> dict:
    """One SAMSum recipe (SAMSUM_BASE with ``changes`` merged per section) run to bench/out/samsum_<name>."""
    import copy

    recipe = copy.deepcopy(SAMSUM_BASE)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(recipe.get(key), dict):
            recipe[key].update(value)
        else:
            recipe[key] = value
    folder = os.path.join(OUT, f"samsum_{name}")
    t = time.perf_counter()
    report = run_recipe(recipe, output_dir=folder, overwrite=True)
    m = report["metrics"]
    row = {
        "recipe": {k: recipe[k] for k in ("model", "modifiers", "training") if k in recipe},
        "folder": folder,
        "before": {k[7:]: v for k, v in m["before"].items() if "rouge" in k or "perplexity" in k},
        "after": {k[6:]: v for k, v in m["after"].items() if "rouge" in k or "perplexity" in k},
        "after_oneshot": {k[8:]: v for k, v in m.get("after_oneshot", {}).items() if "rouge" in k},
        "parameters": report["compression"]["parameters"],
        "sparsity": report["compression"]["sparsity"],
        "size_on_disk_mib": report["compression"]["size_on_disk_bytes"] / 2**20,
        "train_rows": recipe["data"]["max_train_samples"],
        "epochs": recipe["training"]["num_train_epochs"],
        "samples": report["generation"]["samples"],
        "prompts": report["generation"]["prompts"],
        "wall_s": round(time.perf_counter() - t, 1),
        "timings_s": report["timings_s"],
    }
    print(f"[bench] samsum {name}: rougeL {row['before'].get('rougeL')} -> {row['after'].get('rougeL')}", flush=True)
    return row


def section_samsum(names: list[str] | None = None) -> None:
    """SmolLM2-135M-Instruct on SAMSum (SAMSUM_BASE): zero-shot (the dense SFT's "before"), the dense SFT,
    Wanda 50%, SparseGPT 2:4 and GPTQ int4 g32 on the SFT with KD recovery from it, LoRA r16 on the instruct
    model, and a 15-of-30-layer student distilled from the SFT. Then the generation speed of the SFT and the student side by side (same 20 prompts, 3 rounds,
    alternating, median tokens/s)."""
    rows = saved_rows("samsum")
    sft = os.path.join(OUT, "samsum_sft")
    recover = {
        "model": {"name_or_path": sft, "task": "chat"},
        "teacher": {"name_or_path": sft},
        "calibration": {"samples": 32, "seq_len": 256},
        "training": {"learning_rate": 5e-5},
    }
    kd = {"type": "distillation", "temperature": 1.0, "alpha": 1.0}
    variants = {
        "sft": {},
        "wanda50_kd": {**recover, "modifiers": [{"type": "wanda", "sparsity": 0.5}, kd]},
        "sparsegpt24_kd": {**recover, "modifiers": [{"type": "sparsegpt", "pattern": "2:4"}, kd]},
        "lora": {"modifiers": [{"type": "lora", "r": 16, "alpha": 32}], "training": {"learning_rate": 5e-4}},
        "gptq_int4_g32_kd": {
            **recover,
            "modifiers": [{"type": "gptq", "bits": 4, "group_size": 32, "symmetric": True, "recovery": "scales"}, kd],
            "training": {"learning_rate": 5e-4},
        },
        "student15_kd": {
            "model": {"name_or_path": sft, "task": "chat", "init_from_teacher": {"layers": list(range(0, 30, 2))}},
            "teacher": {"name_or_path": sft},
            "modifiers": [{"type": "distillation", "temperature": 1.0, "alpha": 0.5}],
            "training": {"num_train_epochs": 2, "learning_rate": 2e-4},
        },
    }
    for name in names or list(variants):
        if name == "speed":
            continue
        if name != "sft" and not os.path.isfile(os.path.join(sft, "model.safetensors")):
            rows["sft"] = samsum_row("sft", variants["sft"])
        rows[name] = samsum_row(name, variants[name])
        save("samsum", {"protocol": section_samsum.__doc__ + SAMSUM_PROTOCOL, "rows": rows})
    student = os.path.join(OUT, "samsum_student15_kd")
    if os.path.isdir(student) and (names is None or "speed" in names):
        rows["speed"] = samsum_speed({"sft": sft, "student15_kd": student})
        save("samsum", {"protocol": section_samsum.__doc__ + SAMSUM_PROTOCOL, "rows": rows})


SAMSUM_PROTOCOL = (
    " Data: the first 128 validation dialogues train (1 epoch, batch 4), the first 50 test dialogues are scored; "
    "greedy decoding, 48 new tokens, ROUGE F1 with stemming (rouge-score)."
)


def samsum_speed(folders: dict[str, str], prompts: int = 20, rounds: int = 3) -> dict:
    from hf_lite.chat import prompt_and_reference, read_chat_rows
    from hf_lite.core.recipe import DataSettings, GenerationSettings
    from hf_lite.generation import generate
    from hf_lite.models import load_model, load_tokenizer

    torch.set_num_threads(2)
    d = SAMSUM_BASE["data"]
    settings = DataSettings(
        train=d["eval"], prompt_column="context", prompt_template=d["prompt_template"], max_train_samples=prompts
    )
    convs = [prompt_and_reference(c)[0] for c in read_chat_rows(settings)[0]]
    gen = GenerationSettings(max_new_tokens=48, batch_size=1)
    models = {k: load_model(v, "causal-lm").eval() for k, v in folders.items()}
    tok = load_tokenizer(folders["sft"])
    speeds: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(rounds):
        for k, model in models.items():
            speeds[k].append(generate(model, tok, convs, gen)[1]["tokens_per_s"])
    med = {k: statistics.median(v) for k, v in speeds.items()}
    row = {
        "tokens_per_s": med,
        "all_rounds": speeds,
        "batch": 1,
        "prompts": prompts,
        "student_speedup": med["student15_kd"] / med["sft"],
    }
    print(f"[bench] samsum speed: {row}", flush=True)
    return row


# `make bench` runs CORE in this order (about an hour on 2 cores, bench/results/bench_run.json); STUDIES are
# the extra attempts at goals the core rows miss, run by name or all together with `--section studies`.
CORE = {
    "overhead": section_overhead,
    "dense": section_dense,
    "peft": section_peft,
    "pruning": section_pruning,
    "structured": section_structured,
    "quantization": section_quantization,
    "distillation": section_distillation,
    "combined": section_combined,
    "formats": section_formats,
    "latency": section_latency,
    "torchao": section_torchao,
    "oneshot": section_oneshot,
    "recovery": section_recovery,
    "peers": section_peers,
}
STUDIES = {
    "prune_finetuned": section_prune_finetuned,
    "gmp80_long": section_gmp80_long,
    "gmp80_hidden_kd": section_gmp80_hidden_kd,
    "gmp80_hidden_kd_8ep": section_gmp80_hidden_kd_8ep,
    "obs_8ep": section_obs_8ep,
    "int4_per_channel": section_int4_per_channel,
    "qat_from_dense": section_qat_from_dense,
    "qat_int4_long": section_qat_int4_long,
    "full_train": section_full_train,
    "seeds": section_seeds,
    "qat_int4_lsq": section_qat_int4_lsq,
    "kd_hidden": section_kd_hidden,
    "kd_cache": section_kd_cache,
    "smollm2_kd": section_smollm2_kd,
    "qlora_memory": section_qlora_memory,
    "fsdp_teacher": section_fsdp_teacher,
    "sparsity": section_sparsity,
    "sparsity_budget": section_sparsity_budget,
    "recovery_plain": section_recovery_plain,
    "oneshot_variants": section_oneshot_variants,
    "gptq_calibration": section_gptq_calibration,
    "gptq_recover": section_gptq_recover,
    "gptq_recover_wiki": section_gptq_recover_wiki,
    "gptq_recover_wiki_scales_only": section_gptq_recover_wiki_scales_only,
    "gptq_recover_wiki_long": section_gptq_recover_wiki_long,
    "gptq_true_sequential": section_gptq_true_sequential,
    "sparsegpt_ablation": section_sparsegpt_ablation,
    "int8_engines": section_int8_engines,
    "int4_seed1": section_int4_seed1,
    "int4_seeds": section_int4_seeds,
    "int4_control": section_int4_control,
    "int4_scales_kd": section_int4_scales_kd,
    "peers_sparsegpt": section_peers_sparsegpt,
    "deploy_ct": section_deploy_ct,
    "samsum": section_samsum,
    "deploy_onnx": section_deploy_onnx,
    "deploy_gguf": section_deploy_gguf,
}
SECTIONS = {**CORE, **STUDIES}
DONE: set[str] = set()  # sections finished in this process


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--section", nargs="+", default=["all"], choices=["all", "studies", *SECTIONS])
    p.add_argument(
        "--methods",
        nargs="*",
        help=f"oneshot: a subset of {list(ONESHOT_METHODS)}; peers: of {list(PEER_METHODS)}; sparsegpt_ablation: row names",
    )
    a = p.parse_args()
    names: list[str] = []
    for s in a.section:
        names += list(CORE) if s == "all" else list(STUDIES) if s == "studies" else [s]
    run = {"sections": {}, "loadavg_start": os.getloadavg()}
    start = time.perf_counter()
    for name in names:
        t = time.perf_counter()
        fn = SECTIONS[name]
        fn(a.methods) if name in (
            "oneshot",
            "peers",
            "sparsegpt_ablation",
            "sparsity",
            "samsum",
            "deploy_onnx",
        ) else fn()
        DONE.add(name)
        run["sections"][name] = round(time.perf_counter() - t, 1)
        print(f"[bench] section {name}: {run['sections'][name]:.0f} s")
    run["total_s"] = round(time.perf_counter() - start, 1)
    if a.section in (["all"], ["studies"]):  # the wall time of a whole `make bench` (or of all studies)
        save(f"bench_run_{a.section[0]}", run)


if __name__ == "__main__":
    main()
