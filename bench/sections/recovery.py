"""Recovery after one-shot compression of SmolLM2-135M: the recipes/oneshot_*_recover.yaml recipes run
end to end (one-shot, then training that keeps the mask or grid, with or without KD)."""

from __future__ import annotations

import json
import os

from bench.common import COMMIT, OUT, REPO, recipe_yaml, run_recipe, save, saved_rows, wikitext_held_out
from bench.sections import section


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


@section()
def section_recovery(variants: tuple[str, ...] = ("kd",)) -> None:
    """recipes/oneshot_sparsegpt24_recover.yaml: SparseGPT 2:4 on SmolLM2, then 20 steps that keep the mask
    with the dense model as distillation teacher (pure KL, T 1); `recovery_plain`: the same steps without KD."""
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


@section()
def section_recovery_plain() -> None:
    """section `recovery`'s plain row: the same steps without KD."""
    section_recovery(("plain",))


@section()
def section_gptq_recover() -> None:
    """recipes/oneshot_gptq_g128_recover.yaml: GPTQ int4 g128 (our best grid) on SmolLM2, then 30 KD steps
    that learn only the per-group scales; `snap`: the same steps training the weights in float and rounding
    them back onto GPTQ's grid at finalize."""
    os.chdir(REPO)  # the recipe's data paths are relative to the repository
    scales = recipe_yaml("oneshot_gptq_g128_recover.yaml")
    snap = json.loads(json.dumps(scales))
    snap["modifiers"][0]["recovery"] = "snap"
    rows = {}
    for name, recipe in (("scales", scales), ("snap", snap)):
        rows[name] = recovery_row(recipe, f"gptq_recover_{name}")
        save("smollm2_gptq_g128_recover", {"recipe": "recipes/oneshot_gptq_g128_recover.yaml", "rows": rows})


@section()
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


@section()
def section_gptq_recover_wiki_scales_only() -> None:
    """gptq_recover_wiki training only the scales (tied embeddings and norms frozen)."""
    section_gptq_recover_wiki(recovery="scales_only")


@section()
def section_gptq_recover_wiki_long() -> None:
    """scales_only for twice the steps at half the peak lr."""
    section_gptq_recover_wiki(steps=300, recovery="scales_only", lr=5e-4)
