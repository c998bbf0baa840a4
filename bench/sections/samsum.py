"""SAMSum dialogue summarization with SmolLM2-135M-Instruct: the recipes/samsum_*.yaml recipes on a CPU
budget (bench/configs/samsum.yaml), ROUGE before and after, and the student's generation speed."""

from __future__ import annotations

import os
import statistics
import time

from bench.common import (
    OUT,
    SHARED,
    config,
    machine,
    merged,
    recipe_yaml,
    replace_in_strings,
    run_recipe,
    save,
    saved_rows,
)
from bench.sections import section


def samsum_recipe(name: str) -> dict:
    """recipes/samsum_<...>.yaml of config row ``name`` with the bench's budget; paths made absolute."""
    cfg = config("samsum")

    row = cfg["rows"][name]
    row = {"recipe": row} if isinstance(row, str) else dict(row)
    recipe = merged(merged(recipe_yaml(row.pop("recipe")), cfg["budget"]), row)
    recipe = replace_in_strings(replace_in_strings(recipe, "../shared/data", SHARED), "runs/", OUT + "/")
    recipe.pop("export", None)
    return recipe


def recipe_file(name: str) -> str:
    row = config("samsum")["rows"][name]
    return "recipes/" + (row if isinstance(row, str) else row["recipe"])


def samsum_row(name: str) -> dict:
    """Run config row ``name`` to bench/out/samsum_<name>: ROUGE and answer perplexity before and after."""
    recipe = samsum_recipe(name)
    folder = os.path.join(OUT, f"samsum_{name}")
    t = time.perf_counter()
    report = run_recipe(recipe, output_dir=folder, overwrite=True)
    m = report["metrics"]
    row = {
        "recipe": {k: recipe[k] for k in ("model", "modifiers", "training") if k in recipe},
        "recipe_file": recipe_file(name),
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


@section(names=True)
def section_samsum(names: list[str] | None = None) -> None:
    """SmolLM2-135M-Instruct on SAMSum: zero-shot (the dense SFT's "before"), the dense SFT, Wanda 50%,
    SparseGPT 2:4 and GPTQ int4 g32 on the SFT with KD recovery from it, LoRA r16 on the instruct model,
    and a 15-of-30-layer student distilled from the SFT (recipes/samsum_*.yaml). Then the generation speed
    of the SFT and the student side by side (same 20 prompts, 3 rounds, alternating, median tokens/s)."""
    rows = saved_rows("samsum")
    sft = os.path.join(OUT, "samsum_sft")
    cfg = config("samsum")
    for name in [n for n in names or cfg["rows"] if n != "speed"]:
        if name != "sft" and not os.path.isfile(os.path.join(sft, "model.safetensors")):
            rows["sft"] = samsum_row("sft")
        rows[name] = samsum_row(name)
        save("samsum", {"protocol": section_samsum.__doc__ + PROTOCOL, "rows": rows})
    speed = dict(cfg["speed"])
    student = os.path.join(OUT, f"samsum_{speed.pop('student')}")
    if names and "speed" in names and not os.path.isdir(student):
        raise SystemExit(f"samsum speed: no student folder {student}; run its row first (config `speed.student`)")
    if os.path.isdir(student) and (names is None or "speed" in names):
        rows["speed"] = samsum_speed({"sft": sft, "student": student}, **speed)
        save("samsum", {"protocol": section_samsum.__doc__ + PROTOCOL, "rows": rows})


PROTOCOL = (
    " Data: the first 128 validation dialogues train (1 epoch, batch 4), the first 50 test dialogues are scored; "
    "greedy decoding, 48 new tokens, ROUGE F1 with stemming (rouge-score)."
)


def samsum_speed(folders: dict[str, str], prompts: int = 20, rounds: int = 3) -> dict:
    from hf_lite.chat import prompt_and_reference, read_chat_rows
    from hf_lite.core.recipe import DataSettings, GenerationSettings
    from hf_lite.generation import generate
    from hf_lite.models import load_model, load_tokenizer

    d = samsum_recipe("sft")["data"]
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
        "student_folder": os.path.basename(folders["student"]),
        "student_speedup": med["student"] / med["sft"],
        "machine": machine(),
    }
    print(f"[bench] samsum speed: {row}", flush=True)
    return row
