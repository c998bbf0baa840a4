"""Benchmarks on real models and data (not part of CI). Protocols: ../shared/BENCH-PROTOCOL.md.

    python bench/run.py --section pruning      # or: overhead, quantization, all
Each result is a JSON file in bench/results/ with the command, git commit, package versions,
machine (cores, CPU model, load average) and the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
RESULTS = os.path.join(HERE, "results")
OUT = os.path.join(HERE, "out")
SST2 = os.path.normpath(os.path.join(REPO, "..", "shared", "data", "sst2"))

# SST-2 protocol: first 8,000 train rows, all 872 test rows, 1 epoch, batch 32, lr 5e-5, max_length 64, seed 0
SST2_BASE = {
    "version": 1,
    "model": {"name_or_path": "minilm-l6", "task": "sequence-classification", "num_labels": 2},
    "data": {"train": f"{SST2}/train.tsv", "eval": f"{SST2}/test.tsv", "max_length": 64, "max_train_samples": 8000},
    "training": {"num_train_epochs": 1, "learning_rate": 5e-5, "per_device_train_batch_size": 32, "seed": 0, "logging_steps": 50},
    "modifiers": [],
}


def machine() -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cores": os.cpu_count(), "cpu": cpu, "loadavg": os.getloadavg(), "threads": torch.get_num_threads()}


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout.strip()
    except OSError:
        return "unknown"


def save(name: str, data: dict) -> None:
    from hf_lite.api import versions

    os.makedirs(RESULTS, exist_ok=True)
    data = {"name": name, "command": " ".join(sys.argv), "commit": commit(), "versions": versions(), "machine": machine(), **data}
    with open(os.path.join(RESULTS, f"{name}.json"), "w") as f:
        json.dump(data, f, indent=2, default=str)
    print(f"[bench] {name}: {json.dumps({k: v for k, v in data.items() if k in ('accuracy', 'recovery', 'ratio', 'ppl')})}")


def latency(model, batch: int, seq: int = 128, runs: int = 20) -> float:
    """Median seconds per forward, inference_mode, after warm-up (protocol)."""
    model.eval()
    x = torch.randint(1000, 2000, (batch, seq))
    mask = torch.ones_like(x)
    times = []
    with torch.inference_mode():
        for _ in range(3):
            model(input_ids=x, attention_mask=mask)
        for _ in range(runs):
            t = time.perf_counter()
            model(input_ids=x, attention_mask=mask)
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def sst2_row(name: str, modifiers: list, dense_acc: float | None = None, **overrides) -> dict:
    from transformers import AutoModelForSequenceClassification

    from hf_lite.api import run_recipe

    recipe = json.loads(json.dumps(SST2_BASE))
    recipe["modifiers"] = modifiers
    for key, value in overrides.items():
        section, field = key.split("__")
        recipe[section][field] = value
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
        "modifiers": modifiers,
    }
    save(f"sst2_{name}", row)
    return row


def section_pruning() -> None:
    torch.set_num_threads(2)
    dense = sst2_row("dense", [])
    sst2_row("gmp80", [{"type": "magnitude_pruning", "final_sparsity": 0.8, "start": 0.05, "end": 0.7, "update_every": 10}], dense["accuracy"])
    sst2_row("gmp50", [{"type": "magnitude_pruning", "final_sparsity": 0.5, "start": 0.05, "end": 0.7, "update_every": 10}], dense["accuracy"])
    sst2_row("nm24", [{"type": "magnitude_pruning", "pattern": "2:4", "start": 0.05, "end": 0.3, "update_every": 10}], dense["accuracy"])


def section_overhead(steps: int = 30) -> None:
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
        "magnitude_pruning": [{"type": "magnitude_pruning", "final_sparsity": 0.8, "start": 0, "end": 0.7, "update_every": 10}],
    }
    extra = os.environ.get("BENCH_OVERHEAD_EXTRA")
    if extra:
        variants.update(json.loads(extra))
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(3):  # interleave repeats: the machine is noisy
        for name, recipe in variants.items():
            args = TrainingArguments(output_dir=os.path.join(OUT, "overhead"), max_steps=steps, per_device_train_batch_size=32,
                                     report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True, logging_steps=1000)
            model = load_model("minilm-l6", num_labels=2)
            trainer = (Trainer(model=model, args=args, train_dataset=ds) if recipe is None
                       else LiteTrainer(model=model, args=args, train_dataset=ds, recipe=recipe))
            t = time.perf_counter()
            trainer.train()
            times[name].append((time.perf_counter() - t) / steps)
    base = statistics.median(times["plain"])
    for name, ts in times.items():
        if name != "plain":
            save(f"overhead_{name}", {"step_s": statistics.median(ts), "plain_step_s": base, "ratio": statistics.median(ts) / base, "all_s": ts})


SECTIONS = {"pruning": section_pruning, "overhead": section_overhead}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--section", default="all", choices=["all", *SECTIONS])
    a = p.parse_args()
    for name, fn in SECTIONS.items():
        if a.section in ("all", name):
            fn()


if __name__ == "__main__":
    main()
