"""The sparsity-accuracy curve of GMP, movement and OBS on SST-2 (bench/configs/sparsity.yaml)."""

from __future__ import annotations

import json
import os
import sys

from bench.common import OUT, REPO, THREADS, config, merged, run_child, save, saved_rows
from bench.sections import section
from bench.sections.sst2 import dense_reference

CHILD = r"""
import json, resource, sys, torch
sys.path.insert(0, {repo!r})
torch.set_num_threads({threads})
from bench.common import run_recipe
report = run_recipe(json.loads({recipe!r}))
print(json.dumps({{"accuracy": report["metrics"]["after"]["after_accuracy"], "train_s": report["timings_s"]["train_s"],
                   "sparsity_exact": report["compression"]["sparsity"],
                   "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def curve_recipe(folder: str, method: str, sparsity: float, seed: int, epochs: int = 1) -> dict:
    cfg = config("sparsity")
    pruning = {"type": cfg["types"][method], **cfg["pruning"], "final_sparsity": sparsity}
    return merged(
        config("sst2")["base"],
        {
            "model": {"name_or_path": folder},
            "teacher": {"name_or_path": folder},
            "training": {"seed": seed, "num_train_epochs": epochs},
            "modifiers": [pruning, cfg["kd"]],
            "export": {
                "output_dir": os.path.join(OUT, f"curve_{method}_{sparsity}_s{seed}_e{epochs}"),
                "overwrite": True,
            },
        },
    )


def curve_row(folder: str, method: str, sparsity: float, seed: int, epochs: int = 1) -> dict:
    """One curve run in its own process (so its peak RSS is its own)."""
    recipe = json.dumps(curve_recipe(folder, method, sparsity, seed, epochs))
    out, _ = run_child([sys.executable, "-c", CHILD.format(repo=REPO, threads=THREADS, recipe=recipe)])
    out = (
        {k: v for k, v in out.items() if k != "error"} if "accuracy" in out else {"error": out.get("error", "")[-1500:]}
    )
    return {"method": method, "sparsity": sparsity, "seed": seed, **({"epochs": epochs} if epochs != 1 else {}), **out}


def add_row(rows: list[dict], row: dict, dense_acc: float) -> None:
    """Append ``row`` with its recovery and its step time against GMP's matching row."""
    if "accuracy" in row:
        row["recovery"] = row["accuracy"] / dense_acc
    same = ("sparsity", "seed", "epochs")
    gmp = next((r for r in rows if r["method"] == "gmp" and all(r.get(k) == row.get(k) for k in same)
                and "train_s" in r), None)  # fmt: skip
    if gmp and "train_s" in row:
        row["step_time_ratio_vs_gmp"] = row["train_s"] / gmp["train_s"]
    rows.append(row)


def run_curve(result: str, runs: list[tuple[str, float, int]], epochs: int, protocol: str) -> None:
    """Measure ``runs`` (method, sparsity, seed) not yet in bench/results/<result>.json; save after each."""
    folder, dense_acc = dense_reference()
    rows = [r for r in saved_rows(result) or [] if "accuracy" in r]  # rows measured before are kept
    done = {(r["method"], r["sparsity"], r["seed"]) for r in rows}
    for method, sparsity, seed in runs:
        if (method, sparsity, seed) in done:
            continue
        add_row(rows, curve_row(folder, method, sparsity, seed, epochs), dense_acc)
        print(f"[bench] {result} {method} {sparsity} seed {seed}: {rows[-1].get('accuracy')}", flush=True)
        save(result, {"dense_accuracy": dense_acc, "protocol": protocol, "rows": rows})


@section(names=True)
def section_sparsity(methods: list[str] | None = None) -> None:
    """The sparsity-accuracy curve: GMP, movement and OBS (global) at 50-95% on SST-2, each pruning the
    dense fine-tune for 1 epoch with KD from it (logits, T 2, alpha 0.9), the same schedule (start 0, end
    0.7, every 10 steps); at 90% also seed 1. Each row runs in its own process (its peak RSS)."""
    cfg = config("sparsity")
    runs = [(m, sp, seed) for sp, seed in cfg["order"] for m in (methods or cfg["methods"])]
    run_curve("sparsity_curve", runs, 1, section_sparsity.__doc__)


@section()
def section_sparsity_budget() -> None:
    """The curve's 90% rows of GMP and OBS with a 3-epoch budget instead of 1 (same schedule fractions, so
    three times the steps between pruning steps and after the last one)."""
    budget = config("sparsity")["budget"]
    runs = [(m, budget["sparsity"], 0) for m in budget["methods"]]
    run_curve("sparsity_budget", runs, budget["epochs"], section_sparsity_budget.__doc__)


@section()
def section_movement_scores() -> None:
    """Why movement pruning collapses on a fine-tuned model: the dense SST-2 fine-tune trains 150 more steps
    (batch 32, AdamW lr 5e-5) while the movement scores -W * dL/dW of every encoder Linear are summed;
    then 30% and 50% of each of those weights are removed at once by lowest movement score, at random, and
    by lowest |W|, and the test accuracy is read without further training, with the mean |W| of the removed
    weights over the mean |W| of all of them (averaged over the Linears)."""
    import copy
    import csv

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hf_lite.pruning.masks import topk_mask

    torch.manual_seed(0)
    folder, _ = dense_reference()
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    data = config("sst2")["base"]["data"]

    def read_tsv(path: str) -> list[dict]:
        with open(path, newline="") as f:
            return list(csv.DictReader(f, delimiter="\t"))

    train, test = (read_tsv(data[k]) for k in ("train", "eval"))

    def batch(rows):
        enc = tok([r["sentence"] for r in rows], padding=True, truncation=True, max_length=64, return_tensors="pt")
        return enc, torch.tensor([int(r["label"]) for r in rows])

    @torch.no_grad()
    def accuracy(m) -> float:
        m.eval()
        right = 0
        for i in range(0, len(test), 128):
            enc, labels = batch(test[i : i + 128])
            right += int((m(**enc).logits.argmax(-1) == labels).sum())
        return right / len(test)

    linears = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".encoder." in n}
    movement = {n: torch.zeros_like(m.weight) for n, m in linears.items()}
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5)
    model.train()
    steps = 150
    for step in range(steps):
        enc, labels = batch(train[step * 32 : (step + 1) * 32])
        model(**enc, labels=labels).loss.backward()
        for n, m in linears.items():
            movement[n] -= m.weight.detach() * m.weight.grad
        opt.step()
        opt.zero_grad()
    rows = {"before_pruning": accuracy(model)}
    # mean |W| of the removed weights over the mean |W| of all: which weights each rule takes
    removed_size: dict[str, float] = {}
    gen = torch.Generator().manual_seed(0)
    for sparsity in (0.3, 0.5):
        for rule in ("movement", "random", "magnitude"):
            key = f"{rule}_{round(100 * sparsity)}"
            pruned = copy.deepcopy(model)
            removed = total = 0.0
            with torch.no_grad():
                for n, m in pruned.named_modules():
                    if n not in linears:
                        continue
                    score = {"movement": movement[n], "magnitude": m.weight.abs(),
                             "random": torch.rand(m.weight.shape, generator=gen)}[rule]  # fmt: skip
                    mask = topk_mask(score, sparsity).to(m.weight.dtype)
                    removed += float((m.weight.abs() * (1 - mask)).sum() / (1 - mask).sum())
                    total += float(m.weight.abs().mean())
                    m.weight.mul_(mask)
            rows[key] = accuracy(pruned)
            removed_size[key] = removed / total
            print(f"[bench] movement_scores {key}: {rows[key]}, removed |W| {removed_size[key]:.2f}x", flush=True)
    save(
        "movement_scores",
        {"protocol": section_movement_scores.__doc__, "steps": steps, "accuracy": rows,
         "removed_weight_size": removed_size},
    )  # fmt: skip
