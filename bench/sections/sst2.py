"""SST-2 on MiniLM-L6: the rows of bench/configs/sst2.yaml, each a recipe run end to end and its export
reloaded with plain transformers (accuracy, size, sparsity, latency at batch 1 and 8)."""

from __future__ import annotations

import json
import os

from bench.common import (
    OUT,
    RESULTS,
    config,
    latency,
    load_result,
    merged,
    recipe_yaml,
    replace_in_strings,
    run_recipe,
    save,
    with_speedups,
)
from bench.sections import section


def dense_reference(seed: int = 0) -> tuple[str, float]:
    """Folder and accuracy of the dense fine-tune of ``seed`` (made first if absent)."""
    name = "dense" if seed == 0 else f"dense_seed{seed}"
    folder = os.path.join(OUT, name)
    if not os.path.exists(os.path.join(folder, "model.safetensors")):
        sst2_row("dense", seed)
    return folder, load_result(f"sst2_{name}")["accuracy"]


def fill(recipe: dict, dense: str) -> dict:
    """``recipe`` with ``{dense}`` replaced by the dense fine-tune's folder."""
    return replace_in_strings(recipe, "{dense}", dense)


#: what a row's ``recipe: <file>`` takes from the file's ``training`` (with its modifiers)
RECIPE_TRAINING = ("learning_rate", "num_train_epochs", "warmup_steps", "lr_scheduler_type", "lr_scheduler_kwargs")


def sst2_recipe(name: str, seed: int = 0) -> tuple[dict, str | None]:
    """The recipe of config row ``name`` at ``seed`` (``{dense}`` left in place) and its reference row."""
    cfg = config("sst2")
    row = dict(cfg["rows"][name])
    reference = row.pop("reference", None if name == "dense" else "dense")
    recipe = cfg["base"]
    if "recipe" in row:  # the modifiers and schedule (RECIPE_TRAINING) of a recipe users run
        user = recipe_yaml(row.pop("recipe"))
        training = {k: v for k, v in user["training"].items() if k in RECIPE_TRAINING}
        recipe = merged(recipe, {"modifiers": user["modifiers"], "training": training})
    recipe = merged(recipe, row)
    recipe["training"]["seed"] = seed
    return recipe, reference


def row_name(name: str, seed: int) -> str:
    return f"{name}_seed{seed}" if seed else name


def sst2_row(name: str, seed: int = 0) -> dict:
    """Run config row ``name`` at ``seed`` to bench/out/<name>[_seed<n>]; save sst2_<that name>.json."""
    from transformers import AutoModelForSequenceClassification

    recipe, reference = sst2_recipe(name, seed)
    dense_acc = None
    if reference == "dense":
        dense_dir, dense_acc = dense_reference(seed)
        recipe = fill(recipe, dense_dir)
    elif reference:
        dense_acc = load_result(f"sst2_{row_name(reference, seed)}")["accuracy"]
    out = row_name(name, seed)
    recipe["export"] = {"output_dir": os.path.join(OUT, out), "overwrite": True}
    report = run_recipe(recipe)
    model = AutoModelForSequenceClassification.from_pretrained(os.path.join(OUT, out))
    acc = report["metrics"]["after"]["after_accuracy"]
    compression = report["compression"]
    row = {
        "accuracy": acc,
        "recovery": acc / dense_acc if dense_acc else None,
        "parameters": compression["parameters"],
        "sparsity": compression["sparsity"],
        "bits": compression["bits"],
        "disk_mib": compression["size_on_disk_bytes"] / 2**20,
        "latency_b1_s": latency(model, 1),
        "latency_b8_s": latency(model, 8),
        "train_s": report["timings_s"].get("train_s"),
        "trainable_fraction": report.get("trainable_fraction"),
        "layer_sparsity": {n: v["sparsity"] for n, v in compression["layers"].items()},
        "modifiers": recipe["modifiers"],
        "config_row": name,
    }
    save(f"sst2_{out}", row)
    return row


def rows(*names: str, seed: int = 0, skip_saved: bool = False) -> None:
    for name in names:
        if not (skip_saved and os.path.exists(os.path.join(RESULTS, f"sst2_{row_name(name, seed)}.json"))):
            sst2_row(name, seed)


def reload(name: str):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(os.path.join(OUT, name))


@section()
def section_dense() -> None:
    """The dense fine-tune: the reference every SST-2 row is measured against, and the KD teacher."""
    rows("dense")


@section()
def section_pruning() -> None:
    """Gradual magnitude pruning during the 1-epoch fine-tune (from the pretrained model): 50/80/90%, 2:4."""
    rows("gmp50", "gmp80", "gmp90", "nm24")


@section()
def section_structured() -> None:
    """50% FFN neurons + 25% heads (Taylor importance); latency vs the pretrained dense model, interleaved."""
    from hf_lite.models import load_model

    row = sst2_row("structured_ffn50_heads25")
    dense = load_model("minilm-l6", num_labels=2)
    row = with_speedups(row, {"dense": dense, "small": reload("structured_ffn50_heads25")})
    row["dense_parameters"] = sum(p.numel() for p in dense.parameters())
    save("sst2_structured_ffn50_heads25", row)


@section()
def section_quantization() -> None:
    """QAT int8 / int4 g32 fine-tunes; RTN int4 and dynamic int8 applied to the dense fine-tune."""
    from hf_lite.quantization.ptq import dynamic_int8

    rows("ptq_rtn_int4_g32")
    row = sst2_row("ptq_dynamic_int8")
    save(
        "sst2_ptq_dynamic_int8",
        with_speedups(row, {"fp32": reload("dense"), "dynamic_int8": dynamic_int8(reload("dense"))}),
    )
    rows("qat_int8", "qat_int4_g32")


@section()
def section_peft() -> None:
    """Parameter-efficient fine-tunes: the classifier head only, and LoRA r=8 merged at export."""
    rows("head_only", "lora_r8")


@section()
def section_distillation() -> None:
    """3-layer student from the dense teacher's blocks 0, 2, 4: logits KD (alpha 0.5, T 2) and no KD;
    student vs teacher latency side by side."""
    rows("student3_no_kd")
    row = sst2_row("student3_kd_logits")
    save(
        "sst2_student3_kd_logits",
        with_speedups(row, {"teacher": reload("dense"), "student": reload("student3_kd_logits")}),
    )


@section()
def section_kd_hidden() -> None:
    """The 3-layer student with logits KD (alpha 0.7) plus hidden-state MSE on a uniform layer map."""
    rows("student3_kd")


@section()
def section_combined() -> None:
    """The combined recipe: 50% GMP + logits KD + int8 QAT (from 60% of the run) on the dense fine-tune."""
    rows("combined_gmp50_kd_qat8")


@section()
def section_prune_finetuned() -> None:
    """GMP 80% per layer + logits KD on the dense fine-tune, one more epoch."""
    rows("gmp80_kd_from_dense")


@section()
def section_gmp80_long() -> None:
    """80% GMP of the dense fine-tune with KD over 2 more epochs, global scope, half the run spent at 80%."""
    rows("gmp80_global_kd_2ep")


@section()
def section_gmp80_hidden_kd() -> None:
    """80% GMP of the dense fine-tune, global, logits and hidden-state KD from the dense model, 3 more epochs."""
    rows("gmp80_global_hidden_kd_3ep")


@section()
def section_gmp80_hidden_kd_8ep() -> None:
    """recipes/gmp_80_kd.yaml (8 more epochs at lr 2e-4, 80% reached after 2.4 of them), seeds 0 and 1, each
    pruning the dense fine-tune of its own seed, with it as teacher and as the reference (~15 min each)."""
    for seed in (0, 1):
        sst2_row("gmp80_global_hidden_kd_8ep", seed)


@section()
def section_obs_8ep() -> None:
    """recipes/obs_90_kd.yaml (OBS 90%, logits + hidden KD from the dense fine-tune, 8 more epochs at lr 2e-4,
    90% reached after 2.4 of them), then the same budget for GMP at 90% and OBS at 80%: issue 25's goals
    judged on the recipe the issue names rather than the curve's one-epoch budget."""
    rows("obs90_hidden_kd_8ep", "gmp90_hidden_kd_8ep", "obs80_hidden_kd_8ep", skip_saved=True)


@section()
def section_obs_8ep_fisher() -> None:
    """recipes/obs_90_kd.yaml with a Fisher from 25 gradients (every 25 steps) instead of 10 (every 10)."""
    rows("obs90_hidden_kd_8ep_g25", skip_saved=True)


@section()
def section_obs_rewind() -> None:
    """OBS 90% and 80% and GMP 90% on oBERT's own layout scaled to the 8-epoch budget: a jump to 70% (60%),
    six pruning steps 242 apart, a learning-rate rewind after each, a Fisher from 64 gradients, pure KD;
    OBS and GMP at 90% also at seed 1 (from, taught by and kept vs the dense fine-tune of seed 1)."""
    rows("obs90_rewind_8ep", "obs80_rewind_8ep", "gmp90_rewind_8ep", skip_saved=True)
    rows("obs90_rewind_8ep", "gmp90_rewind_8ep", seed=1, skip_saved=True)


@section()
def section_obs_rewind_16ep() -> None:
    """OBS 90% on oBERT's layout over 16 epochs instead of 8 (the paper's recipes use 30): the same jump to
    70% and six pruning steps, 484 apart, each with its learning-rate rewind."""
    rows("obs90_rewind_16ep", skip_saved=True)


@section()
def section_obs_rewind_fisher128() -> None:
    """OBS 90% on oBERT's layout with a Fisher from 128 gradients instead of 64 (the paper used 1,024 on
    BERT-base): the first pruning step once 128 gradients are in, the next six 234 steps apart; seeds 0
    and 1 (seed 1 from, taught by and kept vs the dense fine-tune of seed 1); then OBS 80% (60% to 80%) the
    same way at both seeds."""
    for name in ("obs90_rewind_8ep_g128", "obs80_rewind_8ep_g128"):
        for seed in (0, 1):
            rows(name, seed=seed, skip_saved=True)


@section()
def section_obs80_gentle() -> None:
    """OBS 80% on oBERT's 64-gradient layout with its first pruning step to 40% instead of 60% (the rest of
    the cubic schedule, the lr rewinds and the KD unchanged), seeds 0 and 1."""
    for seed in (0, 1):
        rows("obs80_rewind_8ep_init40", seed=seed, skip_saved=True)


@section()
def section_obs80_t55() -> None:
    """OBS 80% on oBERT's 64-gradient layout (60% to 80%) with oBERT's KD temperature, 5.5 instead of 2.0
    (the schedule, lr rewinds and hidden-state KD unchanged), seeds 0 and 1."""
    for seed in (0, 1):
        rows("obs80_rewind_8ep_t55", seed=seed, skip_saved=True)


@section()
def section_obs80_transfer() -> None:
    """OBS 80% as in ``obs80_t55`` (the 64-gradient layout, 60% to 80%, KD temperature 5.5, 2,000 steps) with
    every train.tsv sentence as the KD transfer set instead of 8 passes over the first 8,000. Seed 0 only: it
    ended below the 8,000-row run, so seed 1 could not make the recipe meet the goal."""
    rows("obs80_rewind_transfer_t55", skip_saved=True)


@section()
def section_obs80_labels() -> None:
    """OBS 80% as in ``obs80_t55`` with half the loss from the labels (KD alpha 0.5 instead of 1.0): the dense
    teacher saw the 8,000 rows once, the pruned model sees them 8 times. Seeds 0 and 1; then the control at
    seed 0: the same 8 epochs and loss on the dense fine-tune with nothing pruned."""
    for seed in (0, 1):
        rows("obs80_rewind_8ep_t55_labels", seed=seed, skip_saved=True)
    rows("dense_8ep_t55_labels", skip_saved=True)


@section()
def section_movement_finetune() -> None:
    """Movement pruning while fine-tuning the pretrained model, as Sanh et al. use it (the GMP rows' schedule,
    1 epoch, layer scope) at 80% and 90%, next to ``gmp80``/``gmp90``."""
    rows("movement80", "movement90", skip_saved=True)


@section()
def section_full_train() -> None:
    """Dense vs GMP 80% (the core row's schedule) on all 60,614 SST-2 training rows instead of the protocol's
    8,000: same budget for both, 1 epoch; the pruned model is measured against this dense run."""
    rows("dense_full_train", "gmp80_full_train")


@section()
def section_seeds() -> None:
    """How much a single seed decides: dense, LoRA and GMP 80% again at seed 1 (the core rows use 0),
    each measured against the dense run of its own seed."""
    rows("dense", "lora_r8", "gmp80", seed=1)


INT4_MORE_SEEDS = (2, 3, 4)


def int4_g32_rows(seed: int, which: tuple[str, ...] = ("rtn", "qat", "scales")) -> None:
    """The int4 g32 rows of one seed, each against the dense fine-tune of that seed: ``rtn`` rounds that
    fine-tune, ``qat`` is a QAT fine-tune from the pretrained model, ``scales`` takes RTN's own codes and
    learns only the per-group scales for one more epoch with the dense fine-tune as KD teacher."""
    names = {"rtn": "ptq_rtn_int4_g32", "qat": "qat_int4_g32", "scales": "rtn_int4_g32_scales_kd_from_dense"}
    rows(*(names[w] for w in which), seed=seed)


@section()
def section_int4_seed1() -> None:
    """The int4 g32 pair (RTN on the dense fine-tune, QAT fine-tune) again at seed 1, against dense seed 1."""
    int4_g32_rows(1, ("rtn", "qat"))


@section()
def section_int4_scales_kd() -> None:
    """RTN int4 g32 on the dense fine-tune, then one epoch learning only the per-group scales (codes fixed)
    with the dense model as KD teacher, at seeds 0 and 1."""
    for seed in (0, 1):
        int4_g32_rows(seed, ("scales",))


@section()
def section_int4_seeds() -> None:
    """Every int4 g32 row at seeds 2-4 (about 6 minutes a seed): RTN's loss at one seed is a few of 872
    examples, below one run's noise, so the goal is also judged on the means over seeds 0-4."""
    for seed in INT4_MORE_SEEDS:
        int4_g32_rows(seed)


@section()
def section_int4_control() -> None:
    """The control for the scales-only QAT rows: the same extra epoch with the same KD teacher and learning
    rate on the dense fine-tune, nothing quantized, at seeds 0-4."""
    for seed in (0, 1, *INT4_MORE_SEEDS):
        sst2_row("dense_kd_epoch", seed)


@section()
def section_int4_per_channel() -> None:
    """int4 with one scale per output channel: RTN on the dense fine-tune vs QAT over the same 1-epoch budget."""
    rows("ptq_rtn_int4_per_channel", "qat_int4_per_channel")


@section()
def section_qat_from_dense() -> None:
    """int4 per-channel QAT as a short fine-tune of the dense model (KD from it), the usual QAT recipe."""
    rows("qat_int4_per_channel_kd_from_dense")


@section()
def section_qat_int4_long() -> None:
    """int4 per-channel QAT from the dense fine-tune with KD, 3 epochs at lr 5e-5 (vs 1 epoch at 2e-5)."""
    rows("qat_int4_per_channel_kd_from_dense_3ep")


@section()
def section_qat_int4_lsq() -> None:
    """int4 per-channel QAT from the dense fine-tune with KD and learned scales (LSQ), +1 epoch at lr 5e-5."""
    rows("qat_int4_per_channel_lsq_kd_from_dense")


def sst2_accuracy(model, batch: int = 64) -> float:
    """Accuracy on the 872-row SST-2 dev split (protocol's test.tsv), max_length 64."""
    import torch

    from hf_lite.data import load_split
    from hf_lite.models import load_tokenizer

    tok = load_tokenizer("minilm-l6")
    data = load_split(config("sst2")["base"]["data"]["eval"], "eval")
    correct = 0
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(data), batch):
            chunk = data[i : i + batch]
            enc = tok(chunk["sentence"], truncation=True, max_length=64, padding=True, return_tensors="pt")
            correct += int((model(**enc).logits.argmax(-1) == torch.tensor(chunk["label"])).sum())
    return correct / len(data)


@section()
def section_formats() -> None:
    """Disk size and accuracy of each saved format of the dense fine-tune, reloaded with plain from_pretrained."""
    dense_dir, dense_acc = dense_reference()
    cfg = config("sst2")
    out = {}
    for name, mods in cfg["formats"].items():
        folder = os.path.join(OUT, f"format_{name}")
        recipe = merged(cfg["base"], {"model": {"name_or_path": dense_dir}, "training": {"max_steps": 0},
                                      "modifiers": mods, "export": {"output_dir": folder, "overwrite": True}})  # fmt: skip
        run_recipe(recipe)
        mib = os.path.getsize(os.path.join(folder, "model.safetensors")) / 2**20
        out[name] = {"accuracy": sst2_accuracy(reload(f"format_{name}")), "safetensors_mib": mib}
        print(f"[bench] format {name}: {json.dumps(out[name])}")
    for r in out.values():
        r["size_vs_fp32"] = r["safetensors_mib"] / out["fp32"]["safetensors_mib"]
    save("formats_sst2", {"dense_accuracy": dense_acc, "rows": out})
