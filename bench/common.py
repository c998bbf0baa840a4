"""What every bench section shares: paths, the result file format, timing, configs.

Each result is a JSON file in bench/results/ holding the command, git commit, package versions, machine
(cores, CPU model, vector extensions, load average) and the numbers.
"""

from __future__ import annotations

import copy
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
import yaml  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
OUT = os.path.join(HERE, "out")
CONFIGS = os.path.join(HERE, "configs")
SHARED = os.path.normpath(os.path.join(REPO, "..", "shared", "data"))
SST2 = os.path.join(SHARED, "sst2")
SAMSUM = os.path.join(SHARED, "samsum")
THREADS = 2  # the protocol's machine; child processes set the same


def replace_in_strings(x, old: str, new: str):
    """A copy of the JSON-like ``x`` with ``old`` replaced by ``new`` in every string."""
    if isinstance(x, str):
        return x.replace(old, new)
    if isinstance(x, dict):
        return {k: replace_in_strings(v, old, new) for k, v in x.items()}
    if isinstance(x, list):
        return [replace_in_strings(v, old, new) for v in x]
    return x


def config(name: str) -> dict:
    """bench/configs/<name>.yaml with ``{shared}`` in its strings replaced by ../shared/data."""
    with open(os.path.join(CONFIGS, f"{name}.yaml")) as f:
        return replace_in_strings(yaml.safe_load(f), "{shared}", SHARED)


def merged(base: dict, changes: dict) -> dict:
    """A copy of recipe ``base`` with ``changes`` merged one level deep (a section's keys are updated, a
    list such as ``modifiers`` is replaced)."""
    recipe = copy.deepcopy(base)
    for key, value in copy.deepcopy(changes).items():
        if isinstance(value, dict) and isinstance(recipe.get(key), dict):
            recipe[key].update(value)
        else:
            recipe[key] = value
    return recipe


def recipe_yaml(name: str) -> dict:
    """recipes/<name> as a dict (its data paths are relative to the repository)."""
    with open(os.path.join(REPO, "recipes", name)) as f:
        return yaml.safe_load(f)


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
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout.strip()
    except OSError:
        head = ""
    return head or "unknown"  # a copy without .git: run benches from a clone to keep the commit


COMMIT = commit()  # the code this process runs, even if the checkout moves on while it runs


def save(name: str, data: dict) -> None:
    """Write bench/results/<name>.json: provenance first, then ``data``."""
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
    shown = {k: v for k, v in data.items() if k in ("accuracy", "recovery", "ratio", "ppl")}
    print(f"[bench] {name}: {json.dumps(shown)}", flush=True)


def load_result(name: str) -> dict | None:
    path = os.path.join(RESULTS, f"{name}.json")
    return json.load(open(path)) if os.path.exists(path) else None


def saved_rows(name: str) -> dict:
    """The rows already in bench/results/<name>.json (sections add or replace rows one by one)."""
    data = load_result(name)
    return data["rows"] if data else {}


def made_by_this_code(name: str) -> bool:
    """Whether bench/results/<name>.json was written by the commit this process runs (reusable)."""
    data = load_result(name)
    return bool(data) and data.get("commit") == COMMIT


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


def run_child(args: list[str], env: dict | None = None) -> tuple[dict, subprocess.CompletedProcess]:
    """Run a process whose last stdout line is JSON; on failure the JSON is ``{"error": <stderr tail>}``."""
    res = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})
    try:
        return json.loads(res.stdout.strip().splitlines()[-1]), res
    except (IndexError, json.JSONDecodeError):
        return {"error": res.stderr[-2000:]}, res


def run_peer(python: str, script: str, *args: str) -> dict:
    """Run bench/peers/<script> in a peer's venv; its last stdout line is JSON (or the error is kept)."""
    load = os.getloadavg()
    out, _ = run_child([python, os.path.join(HERE, "peers", script), *args])
    return {**out, "loadavg_before": load}


def peer_python(variable: str, venv: str) -> str:
    """The python of a peer's venv: $``variable``, else ../<venv>/bin/python (made by `make peers-venv`)."""
    return os.environ.get(variable, os.path.join(os.path.dirname(REPO), venv, "bin", "python"))


def wikitext_held_out() -> str:
    """WikiText-2 test text from character 600,000 on: disjoint from the first 16,384 evaluated tokens (which
    end near character 65,000), so it serves as in-domain text for calibration and recovery."""
    return open(f"{SHARED}/wikitext2_raw/wiki.test.raw", encoding="utf-8").read().replace("\r", "")[600_000:]
