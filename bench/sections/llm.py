"""Causal-LM training costs on SmolLM2-135M and BERT-size models: half-depth KD, KD with cached teacher
logits, QLoRA memory, and a teacher sharded under FSDP2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from bench.common import HERE, OUT, REPO, THREADS, config, merged, run_child, run_recipe, save
from bench.sections import section
from bench.sections.sst2 import dense_reference


@section()
def section_smollm2_kd() -> None:
    """Half-depth SmolLM2 student (layers 0, 2, ..., 28) on tiny_shakespeare: logits KD vs no KD, same steps."""
    cfg = config("llm")["smollm2_kd"]
    rows = {}
    for name, changes in cfg["rows"].items():
        folder = os.path.join(OUT, f"smollm2_half_{name}")
        recipe = merged(cfg["base"], {**changes, "export": {"output_dir": folder, "overwrite": True}})
        report = run_recipe(recipe)
        m = report["metrics"]
        rows[name] = {"ppl_before": m["before"]["before_perplexity"], "ppl_after": m["after"]["after_perplexity"],
                      "train_s": report["timings_s"].get("train_s"), "parameters": report["compression"]["parameters"]}  # fmt: skip
    training = cfg["base"]["training"]
    save("smollm2_half_depth_kd", {"steps": training["max_steps"], "batch": training["per_device_train_batch_size"],
                                   "seq_len": cfg["base"]["data"]["max_length"],
                                   "eval": "WikiText-2 test, 8 x 256 tokens", "rows": rows})  # fmt: skip


@section()
def section_kd_cache() -> None:
    """KD step cost: plain student vs KD vs KD with cache_teacher, 2 epochs of 960 rows (epoch 2 reuses logits)."""
    from bench.sections.sst2 import fill

    cfg = config("llm")["kd_cache"]
    dense_dir = dense_reference()[0]
    base = merged(config("sst2")["base"], cfg["base"])
    out = {}
    for name, changes in cfg["rows"].items():
        folder = os.path.join(OUT, f"kdcache_{name}")
        recipe = fill(merged(base, {**changes, "export": {"output_dir": folder, "overwrite": True}}), dense_dir)
        report = run_recipe(recipe)
        out[name] = {
            "train_s": report["timings_s"]["train_s"],
            "train_loss": report["metrics"]["train"].get("train_loss"),
        }
    out["kd_over_plain"] = out["kd"]["train_s"] / out["student_plain"]["train_s"]
    out["kd_cached_over_plain"] = out["kd_cached"]["train_s"] / out["student_plain"]["train_s"]
    save("kd_step_cost", {"rows": base["data"]["max_train_samples"], "epochs": 2, "batch": 32, **out})


QLORA_CHILD = r"""
import json, resource, sys, time, torch
sys.path.insert(0, {repo!r})
torch.set_num_threads({threads})
from bench.common import run_recipe
t = time.perf_counter()
report = run_recipe(json.loads({recipe!r}))
print(json.dumps({{"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "wall_s": time.perf_counter() - t,
                   "train_loss": report["metrics"]["train"].get("train_loss"), "trainable_fraction": report["trainable_fraction"]}}))
"""


@section()
def section_qlora_memory() -> None:
    """SmolLM2-135M on tiny_shakespeare, a few steps: QLoRA (NF4 base + LoRA r=8) vs full fine-tune, peak RSS."""
    cfg = config("llm")["qlora_memory"]
    rows = {}
    for name, changes in cfg["rows"].items():
        folder = os.path.join(OUT, f"smollm2_{name}")
        recipe = merged(cfg["base"], {**changes, "export": {"output_dir": folder, "overwrite": True}})
        recipe["training"]["save_strategy"] = "no"
        code = QLORA_CHILD.format(repo=REPO, threads=THREADS, recipe=json.dumps(recipe))
        rows[name], res = run_child([sys.executable, "-c", code])
        rows[name]["loss_log"] = [line for line in res.stdout.splitlines() if line.startswith("{'loss'")]
    if "peak_rss_mib" in rows.get("full", {}) and "peak_rss_mib" in rows.get("qlora", {}):
        rows["rss_ratio_qlora_over_full"] = rows["qlora"]["peak_rss_mib"] / rows["full"]["peak_rss_mib"]
    training = cfg["base"]["training"]
    save("smollm2_qlora_memory", {"steps": training["max_steps"], "batch": training["per_device_train_batch_size"],
                                  "seq_len": cfg["base"]["data"]["max_length"], "rows": rows})  # fmt: skip


@section()
def section_fsdp_teacher(steps: int = 4) -> None:
    """Distillation under FSDP2 on a 2-process CPU mesh (gloo): a BERT-base-sized teacher sharded like the
    student vs a whole teacher per rank. Per rank: teacher bytes held, RSS after training, peak RSS."""
    rows: dict[str, list] = {}
    worker = os.path.join(HERE, "fsdp_teacher_worker.py")
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
