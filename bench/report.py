"""Render bench/RESULTS.md and the PNG plots from bench/results/*.json (run after bench/run.py).

python bench/report.py
"""

from __future__ import annotations

import glob
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
OUT = os.path.join(HERE, "out")
PLOTS = os.path.join(HERE, "plots")

SST2_LABELS = {
    "dense": "dense fine-tune",
    "head_only": "head only",
    "lora_r8": "LoRA r=8 (merged)",
    "gmp50": "GMP 50%",
    "gmp80": "GMP 80%",
    "gmp90": "GMP 90%",
    "gmp80_kd_from_dense": "GMP 80% of the dense fine-tune, dense model as KD teacher (+1 epoch)",
    "gmp80_global_kd_2ep": "GMP 80% global of the dense fine-tune, KD, +2 epochs",
    "gmp80_global_hidden_kd_3ep": "GMP 80% global of the dense fine-tune, logits + hidden-state KD, +3 epochs",
    "gmp80_global_hidden_kd_8ep_lr1e4": "as above, +8 epochs, lr 1e-4",
    "gmp80_global_hidden_kd_8ep": "as above, +8 epochs, lr 2e-4",
    "gmp80_global_hidden_kd_8ep_seed1": "as above, seed 1 (from, taught by and kept vs dense seed 1)",
    "obs90_hidden_kd_8ep": "OBS 90% global of the dense fine-tune, logits + hidden KD, +8 epochs (`recipes/obs_90_kd.yaml`)",
    "obs90_hidden_kd_8ep_g25": "as above, Fisher from 25 gradients, a pruning step every 25 (not 10)",
    "gmp90_hidden_kd_8ep": "GMP 90% with the KD, lr and 8 epochs of `recipes/obs_90_kd.yaml`",
    "obs80_hidden_kd_8ep": "OBS 80% with the KD, lr and 8 epochs of `recipes/obs_90_kd.yaml`",
    "obs90_rewind_8ep": "OBS 90%, oBERT's layout in the same 8 epochs: 70% at step 64, then 6 steps to 90% 242 "
    "apart, lr rewound after each, Fisher of 64 gradients, KD only",
    "obs80_rewind_8ep": "as above, 60% to 80%",
    "obs90_rewind_16ep": "OBS 90% on oBERT's layout over 16 epochs (pruning steps 484 apart)",
    "obs90_rewind_8ep_g128": "OBS 90% on oBERT's layout, Fisher from 128 gradients (first step at 128, 234 apart; "
    "`recipes/obs_90_kd_obert.yaml`; trained while another bench shared the CPU)",
    "obs90_rewind_8ep_g128_seed1": "as above, seed 1 (from, taught by and kept vs dense seed 1), the CPU to itself",
    "obs80_rewind_8ep_g128": "OBS 80% the same way (60% at step 128, then to 80%; Intel Xeon run)",
    "obs80_rewind_8ep_g128_seed1": "as above, seed 1 (from, taught by and kept vs dense seed 1)",
    "obs80_rewind_8ep_init40": "OBS 80% on the 64-gradient layout, first step to 40% instead of 60% (Intel Xeon run)",
    "obs80_rewind_8ep_init40_seed1": "as above, seed 1 (from, taught by and kept vs dense seed 1)",
    "obs80_rewind_8ep_t55": "OBS 80% on the 64-gradient layout (60% to 80%), KD temperature 5.5 (Intel Xeon run)",
    "obs80_rewind_8ep_t55_seed1": "as above, seed 1 (from, taught by and kept vs dense seed 1)",
    "obs80_rewind_transfer_t55": "OBS 80% at KD temperature 5.5 over every train.tsv sentence (60,614, labels unused) instead of 8 "
    "passes over 8,000; 2,000 steps (Intel Xeon run)",
    "obs80_rewind_8ep_t55_labels": "OBS 80% on the 64-gradient layout, KD temperature 5.5, half the loss from the "
    "labels (alpha 0.5; Intel Xeon run)",
    "obs80_rewind_8ep_t55_labels_seed1": "as above, seed 1 (from, taught by and kept vs dense seed 1)",
    "dense_8ep_t55_labels": "control: the same 8 epochs, lr rewinds and loss on the dense fine-tune, nothing pruned",
    "gmp90_rewind_8ep": "GMP 90% on that layout (same steps, lr rewinds and KD)",
    "obs90_rewind_8ep_seed1": "OBS 90% on oBERT's layout, seed 1 (from, taught by and kept vs dense seed 1)",
    "gmp90_rewind_8ep_seed1": "GMP 90% on oBERT's layout, seed 1 (kept: vs dense seed 1)",
    "dense_full_train": "dense fine-tune on all 60,614 training rows",
    "dense_seed1": "dense fine-tune, seed 1",
    "lora_r8_seed1": "LoRA r=8, seed 1 (kept: vs dense seed 1)",
    "gmp80_seed1": "GMP 80%, seed 1 (kept: vs dense seed 1)",
    "gmp80_full_train": "GMP 80% on all 60,614 training rows (kept: vs the dense row above)",
    "combined_gmp50_kd_qat8": "combined: GMP 50% + KD + QAT int8, from the dense fine-tune (+1 epoch)",
    "movement80": "movement pruning 80% while fine-tuning the pretrained model (the GMP rows' schedule)",
    "movement90": "movement pruning 90%, the same way",
    "nm24": "2:4 (magnitude, gradual)",
    "structured_ffn50_heads25": "structured: 50% FFN removed, 25% heads zeroed",
    "qat_int8": "QAT int8 per channel",
    "qat_int4_g32": "QAT int4 g32",
    "ptq_rtn_int4_g32": "RTN int4 g32 after fine-tune",
    "ptq_rtn_int4_g32_seed1": "RTN int4 g32 after the seed-1 fine-tune (kept: vs dense seed 1)",
    "qat_int4_g32_seed1": "QAT int4 g32, seed 1 (kept: vs dense seed 1)",
    "qat_int4_per_channel": "QAT int4 per channel",
    "ptq_rtn_int4_per_channel": "RTN int4 per channel after fine-tune",
    "qat_int4_per_channel_kd_from_dense": "QAT int4 per channel of the dense fine-tune, KD from it (+1 epoch)",
    "qat_int4_per_channel_kd_from_dense_3ep": "QAT int4 per channel of the dense fine-tune, KD, lr 5e-5 (+3 epochs)",
    "qat_int4_per_channel_lsq_kd_from_dense": "QAT int4 per channel, learned scales (LSQ), KD from dense (+1 epoch)",
    "rtn_int4_g32_scales_kd_from_dense": "RTN int4 g32 of the dense fine-tune, then QAT of its scales (codes fixed) with KD from it (+1 epoch)",
    "rtn_int4_g32_scales_kd_from_dense_seed1": "as above, seed 1 (kept: vs dense seed 1)",
    "ptq_dynamic_int8": "dynamic int8 after fine-tune",
    "student3_no_kd": "3-layer student, no KD",
    "student3_kd": "3-layer student, KD (logits + hidden)",
    "student3_kd_logits": "3-layer student, KD (logits only)",
}


def oneshot_core() -> list[str]:
    """The one-shot rows `make bench` runs (bench/configs/oneshot.yaml `core`)."""
    import yaml

    with open(os.path.join(HERE, "configs", "oneshot.yaml"), encoding="utf-8") as f:
        return yaml.safe_load(f)["core"]


def load(name: str) -> dict | None:
    path = os.path.join(RESULTS, f"{name}.json")
    return json.load(open(path)) if os.path.exists(path) else None


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def num(x: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if x is None else fmt.format(x)


# rows made by `make bench SECTION=studies` (extra attempts at missed goals); every other row is core
SST2_STUDIES = {
    "gmp80_kd_from_dense",
    "gmp80_global_kd_2ep",
    "gmp80_global_hidden_kd_3ep",
    "gmp80_global_hidden_kd_8ep_lr1e4",
    "gmp80_global_hidden_kd_8ep",
    "gmp80_global_hidden_kd_8ep_seed1",
    "obs90_hidden_kd_8ep",
    "obs90_hidden_kd_8ep_g25",
    "gmp90_hidden_kd_8ep",
    "obs80_hidden_kd_8ep",
    "obs90_rewind_8ep",
    "obs80_rewind_8ep",
    "obs90_rewind_16ep",
    "obs90_rewind_8ep_g128",
    "obs90_rewind_8ep_g128_seed1",
    "obs80_rewind_8ep_g128",
    "obs80_rewind_8ep_g128_seed1",
    "obs80_rewind_8ep_init40",
    "obs80_rewind_8ep_init40_seed1",
    "obs80_rewind_8ep_t55",
    "obs80_rewind_8ep_t55_seed1",
    "obs80_rewind_transfer_t55",
    "obs80_rewind_8ep_t55_labels",
    "movement80",
    "movement90",
    "obs80_rewind_8ep_t55_labels_seed1",
    "dense_8ep_t55_labels",
    "gmp90_rewind_8ep",
    "obs90_rewind_8ep_seed1",
    "gmp90_rewind_8ep_seed1",
    "dense_full_train",
    "gmp80_full_train",
    "dense_seed1",
    "lora_r8_seed1",
    "gmp80_seed1",
    "ptq_rtn_int4_g32_seed1",
    "qat_int4_g32_seed1",
    "ptq_rtn_int4_per_channel",
    "qat_int4_per_channel",
    "qat_int4_per_channel_kd_from_dense",
    "qat_int4_per_channel_kd_from_dense_3ep",
    "qat_int4_per_channel_lsq_kd_from_dense",
    "rtn_int4_g32_scales_kd_from_dense",
    "rtn_int4_g32_scales_kd_from_dense_seed1",
    "student3_kd",
}


def sst2_rows(studies: bool | None = None) -> list[tuple[str, dict]]:
    """All SST-2 rows, or only the core (``studies=False``) or only the study rows (``True``)."""
    rows = []
    for key in SST2_LABELS:
        if studies is not None and (key in SST2_STUDIES) != studies:
            continue
        data = load(f"sst2_{key}")
        if data:
            rows.append((key, data))
    return rows


def sst2_table(rows: list[tuple[str, dict]], compact: bool = False) -> str:
    """The SST-2 rows; ``compact`` (for the README) drops the per-row latencies, which come from
    separate runs at different load (the side-by-side speed-ups are the comparable numbers)."""
    head = ["row", "accuracy", "kept vs dense", "parameters", "trainable", "zeros", "bits", "safetensors"]
    head += ["train"] if compact else ["latency b1", "latency b8", "train"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, r in rows:
        side = r.get("latency_side_by_side_s", {})
        if "dynamic_int8_b8" in side:  # the folder holds float weights; int8 is applied at load time
            r = {**r, "latency_b1_s": side["dynamic_int8_b1"], "latency_b8_s": side["dynamic_int8_b8"]}
        cells = [
            f"{SST2_LABELS[key]} (`sst2_{key}.json`)",
            pct(r["accuracy"]),
            pct(r.get("recovery")),
            f"{r['parameters'] / 1e6:.1f}M",
            pct(r.get("trainable_fraction")),
            pct(r.get("sparsity")),
            str(int(r.get("bits") or 32)),
            num(r.get("disk_mib"), "{:.1f} MiB"),
        ]
        if not compact:
            cells += [num(r.get("latency_b1_s"), "{:.3f} s"), num(r.get("latency_b8_s"), "{:.3f} s")]
        cells.append(num(r.get("train_s"), "{:.0f} s"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def speedups() -> str:
    lines = ["| comparison (same run, interleaved) | batch 1 | batch 8 |", "|---|---|---|"]
    quiet = load("latency_side_by_side")
    if quiet:  # one run with every model side by side (bench/run.py --section latency)
        labels = {
            "dynamic_int8": "dynamic int8",
            "structured_ffn50_heads25": "structured (FFN halved)",
            "student3_kd_logits": "3-layer KD student",
        }
        for name, label in labels.items():
            if f"{name}_b8" in quiet["speedup_vs_dense"]:
                sp = quiet["speedup_vs_dense"]
                lines.append(
                    f"| {label} vs fp32 dense (`latency_side_by_side.json`) | {sp[f'{name}_b1']:.2f}x | {sp[f'{name}_b8']:.2f}x |"
                )
    for name, label in (
        ("sst2_ptq_dynamic_int8", "dynamic int8 vs fp32"),
        ("sst2_structured_ffn50_heads25", "structured (FFN halved) vs dense"),
        ("sst2_student3_kd_logits", "3-layer student vs 6-layer teacher"),
    ):
        r = load(name)
        if r and "speedup_b8" in r:  # measured again, side by side, at the end of that row's own run
            lines.append(f"| {label} (`{name}.json`, its own run) | {r['speedup_b1']:.2f}x | {r['speedup_b8']:.2f}x |")
    return "\n".join(lines) if len(lines) > 2 else ""


def overhead_table() -> str:
    lines = ["| modifier | step time | plain Trainer step | ratio |", "|---|---|---|---|"]
    for path in sorted(glob.glob(os.path.join(RESULTS, "overhead_*.json"))):
        r = json.load(open(path))
        lines.append(
            f"| `{r['name'][len('overhead_') :]}` | {r['step_s']:.3f} s | {r['plain_step_s']:.3f} s | {r['ratio']:.3f} |"
        )
    return "\n".join(lines) if len(lines) > 2 else ""


def oneshot_table(core: bool = True) -> str:
    data = load("oneshot_smollm2")
    if not data:
        return ""
    core_rows = oneshot_core()
    data = {**data, "rows": {k: v for k, v in data["rows"].items() if (k in core_rows) == core or k == "dense"}}
    dense = data["rows"].get("dense", {}).get("ppl")
    lines = [
        "| method | WikiText-2 ppl | vs dense | zeros in block Linears | compression wall time |",
        "|---|---|---|---|---|",
    ]
    for name, r in data["rows"].items():
        if "error" in r:
            lines.append(f"| `{name}` | error: {r['error']} | | | |")
            continue
        rel = f"+{100 * (r['ppl'] / dense - 1):.1f}%" if dense and name != "dense" else "-"
        lines.append(
            f"| `{name}` | {r['ppl']:.2f} | {rel} | {pct(r['sparsity'])} | {num(r.get('compress_s'), '{:.0f} s')} |"
        )
    return "\n".join(lines)


# llm-compressor's numbers in ../shared/BENCH-PROTOCOL.md (same protocol, another run): ppl / wall time
PROTOCOL_REFERENCE = {
    "wanda50": "67.1 / 158 s",
    "sparsegpt50": "69.3 / 575 s",
    "sparsegpt24": "217.7 / 818 s",
    "rtn_g64": "39.9 / 10 s",
    "gptq_g64": "45.8 / 445-740 s",
}


def peers_table() -> str:
    data = load("oneshot_vs_llmcompressor")
    if not data:
        return ""
    lines = [
        "| method | hf_lite ppl | llm-compressor ppl | hf_lite time | llm-compressor time | time ratio (theirs / ours) "
        "| llm-compressor, protocol reference |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in data["rows"].items():
        ours, theirs = r["hf_lite"], r["llmcompressor"]
        their_ppl = num(theirs.get("ppl")) if not theirs.get("error") else f"error: {theirs['error'][:120]}"
        ratio = r.get("time_ratio_theirs_over_ours")
        lines.append(
            f"| `{name}` | {num(ours.get('ppl'))} | {their_ppl} | {num(ours.get('compress_s'), '{:.0f} s')} | "
            f"{num(theirs.get('compress_s'), '{:.0f} s')} | {num(ratio, '{:.1f}x')} | {PROTOCOL_REFERENCE.get(name, '-')} |"
        )
    return "\n".join(lines)


def gptq_calibration_table() -> str:
    data, base = load("oneshot_gptq_calibration"), load("oneshot_smollm2")
    if not data or not base or "dense" not in base["rows"]:
        return ""
    dense = base["rows"]["dense"]["ppl"]
    lines = [
        "| GPTQ int4 g128 asym + act_order + mse, calibrated on | damp | WikiText-2 ppl | vs dense | wall time |",
        "|---|---|---|---|---|",
    ]
    core = base["rows"].get("gptq_g128_asym_mse_actorder")
    entries = ([("shakespeare_32x256 (the protocol's, core row)", core)] if core else []) + list(data["rows"].items())
    for name, r in entries:
        lines.append(
            f"| {name.split('_damp')[0]} | {r['modifier'].get('damp', 0.01)} | "  # 0.01: GPTQ's default damp
            f"{r['ppl']:.2f} | +{100 * (r['ppl'] / dense - 1):.1f}% | {num(r.get('compress_s'), '{:.0f} s')} |"
        )
    return "\n".join(lines)


RECOVERY_LABELS = {  # (file, row) -> (what ran, what was kept: a text, or "sparsity" for the row's zeros)
    ("smollm2_sparsegpt24_recover", "plain"): ("SparseGPT 2:4, keeping the mask", "sparsity"),
    ("smollm2_sparsegpt24_recover", "kd"): (
        "SparseGPT 2:4, keeping the mask, KD from the dense model (T 1)",
        "sparsity",
    ),
    ("smollm2_gptq_g128_recover", "scales"): (
        "GPTQ int4 g128 (asym, act_order, mse), learning the scales (`recovery: scales`: the float embeddings and norms train too), KD (T 1)",
        "int4 grid, GPTQ's codes",
    ),
    ("smollm2_gptq_g128_recover_wiki", "scales"): (
        "GPTQ int4 g128 as above, calibrated and recovered on held-out WikiText text, `recovery: scales`, KD",
        "int4 grid, GPTQ's codes",
    ),
    ("smollm2_gptq_g128_recover_wiki", "scales_only"): (
        "the same with `recovery: scales_only` (every other parameter frozen)",
        "int4 grid, GPTQ's codes",
    ),
    ("smollm2_gptq_g128_recover_wiki", "scales_only_300steps_lr0.0005"): (
        "the same, `scales_only`, 300 steps (1.94 passes over the 310 held-out windows) at peak lr 5e-4",
        "int4 grid, GPTQ's codes",
    ),
    ("smollm2_gptq_g128_recover", "snap"): (
        "GPTQ int4 g128 (asym, act_order, mse), float weights rounded back at the end, KD (T 1)",
        "int4 grid",
    ),
}


def recovery_table() -> str:
    lines = [
        "| SmolLM2-135M one-shot, then steps of 2 x 512 tokens (tiny-shakespeare unless named) | steps | dense | after one-shot | after recovery | kept |",
        "|---|---|---|---|---|---|",
    ]
    for (file, name), (label, kept) in RECOVERY_LABELS.items():
        row = ((load(file) or {}).get("rows") or {}).get(name)
        if not row:
            continue
        steps = row.get("training", {}).get("max_steps", 20)  # the SparseGPT rows predate the field: 20 steps
        lines.append(
            f"| {label} | {steps} | {row['ppl_dense']:.2f} | {row['ppl_after_oneshot']:.2f} | "
            f"{row['ppl_after_recovery']:.2f} | {f'{pct(row[kept])} zeros' if kept in row else kept} |"
        )
    return "\n".join(lines) if len(lines) > 2 else ""


def formats_table() -> str:
    r = load("formats_sst2")
    if not r:
        return ""
    lines = [
        "| saved format of the dense fine-tune | model.safetensors | vs fp32 | accuracy after `from_pretrained` |",
        "|---|---|---|---|",
    ]
    for name, row in r["rows"].items():
        lines.append(
            f"| `{name}` | {row['safetensors_mib']:.1f} MiB | {row['size_vs_fp32']:.2f}x | {pct(row['accuracy'])} |"
        )
    return "\n".join(lines)


def sparsity_curve_table() -> str:
    r = load("sparsity_curve")
    if not r:
        return ""
    lines = [
        f"| method | sparsity | seed | accuracy | recovery (dense {pct(r['dense_accuracy'])}) | train time "
        "| vs GMP | peak RSS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in sorted(r["rows"], key=lambda x: (x["sparsity"], x["method"], x["seed"])):
        if "accuracy" not in row:
            lines.append(f"| {row['method']} | {pct(row['sparsity'])} | {row['seed']} | failed | | | | |")
            continue
        lines.append(
            f"| {row['method']} | {pct(row['sparsity'])} | {row['seed']} | {pct(row['accuracy'])} | "
            f"{pct(row.get('recovery'))} | {row['train_s']:.0f} s | {num(row.get('step_time_ratio_vs_gmp'), '{:.2f}x')} "
            f"| {row['peak_rss_mib']:.0f} MiB |"
        )
    return "\n".join(lines)


def sparsegpt_ablation_table() -> str:
    r = load("sparsegpt_ablation")
    if not r:
        return ""
    base = {
        row["calibration_seed"]: row["ppl"]
        for name, row in r["rows"].items()
        if row["tool"] == "llmcompressor" and not row.get("change") and row.get("ppl")
    }
    lines = [
        "| row | tool | change from damp 0.01, mask per 128 columns | calibration | ppl | vs llm-compressor defaults, same calibration | time |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in r["rows"].items():
        seed = row["calibration_seed"]
        cal = "protocol chunks" if seed == 0 else f"random windows, seed {seed}"
        change = ", ".join(f"{k}={v}" for k, v in row.get("change", {}).items()) or "-"
        vs = f"{row['ppl'] / base[seed] - 1:+.1%}" if row.get("ppl") and seed in base else "-"
        lines.append(
            f"| `{name}` | {row['tool']} | {change} | {cal} | {num(row.get('ppl'))} | {vs} | {num(row.get('compress_s'), '{:.0f} s')} |"
        )
    groups: dict[tuple[str, str], dict[int, float]] = {}
    for row in r["rows"].values():
        change = ", ".join(f"{k}={v}" for k, v in row.get("change", {}).items()) or "damp 0.01"
        if row.get("ppl"):
            groups.setdefault((row["tool"], change), {})[row["calibration_seed"]] = row["ppl"]
    means = [f"{tool} {change} {sum(v.values()) / len(v):.2f}" for (tool, change), v in groups.items() if len(v) == 3]
    if means:
        lines += ["", "Mean ppl over the three calibration sets: " + "; ".join(means) + "."]
    return "\n".join(lines)


def fsdp_teacher_table() -> str:
    r = load("fsdp_teacher_memory")
    if not r or any("error" in rows[0] for rows in r["rows"].values()):
        return ""
    lines = [
        "| KD teacher under FSDP2 (2 ranks, CPU) | teacher MiB held per rank | RSS after training (MiB, per rank) "
        "| peak RSS (MiB, per rank) | train time |",
        "|---|---|---|---|---|",
    ]
    for mode, rows in r["rows"].items():
        label = "sharded like the student (hf_lite)" if mode == "sharded" else "whole copy on every rank"
        rss = " / ".join(f"{x['rss_after_train_mib']:.0f}" for x in rows)
        peak = " / ".join(f"{x['peak_rss_mib']:.0f}" for x in rows)
        lines.append(
            f"| {label} | {rows[0]['teacher_bytes_on_rank_mib']:.0f} | {rss} | {peak} | {rows[0]['train_s']:.1f} s |"
        )
    return "\n".join(lines)


def torchao_table() -> str:
    r = load("qat_int8_vs_torchao")
    if not r:
        return ""
    ours, theirs = r["hf_lite"], r["torchao"]
    lines = [
        "| int8 weight QAT, per channel, MiniLM-L6 / SST-2 | accuracy | step time vs a plain Trainer (same process) |",
        "|---|---|---|",
        f"| hf_lite `qat bits: 8` (`sst2_qat_int8.json`, `overhead_qat_int8.json`) | {pct(ours['accuracy'])} | "
        f"{num(ours['step_ratio'], '{:.2f}x')} |",
        f"| torchao 0.18 `QATConfig` + plain Trainer (`qat_int8_vs_torchao.json`) | {pct(theirs['accuracy'])} | "
        f"{num(theirs['step_ratio'], '{:.2f}x')} |",
    ]
    if theirs.get("int8_dynamic_speedup_b8"):
        lines += [
            "",
            f"torchao's int8 dynamic-activation/int8-weight inference on this CPU runs at "
            f"{theirs['int8_dynamic_speedup_b8']:.2f}x the fp32 speed at batch 8 x 128 and "
            f"{theirs['int8_dynamic_speedup_b1']:.2f}x at batch 1 (it falls back to a slow path without a GPU).",
        ]
    return "\n".join(lines)


def _acc(name: str) -> float | None:
    r = load(f"sst2_{name}")
    return r["accuracy"] if r else None


INT4_VARIANTS = {"rtn": "ptq_rtn_int4_g32", "qat": "qat_int4_g32", "scales": "rtn_int4_g32_scales_kd_from_dense"}


def int4_seed_rows() -> dict[int, dict[str, float | None]]:
    """{seed: {"dense", "rtn", "qat", "scales", "control": accuracy}} for every seed that has the four
    int4 g32 rows; "control" (the scales rows' extra KD epoch with nothing quantized) may be None."""
    rows = {}
    for seed in range(10):
        suffix = f"_seed{seed}" if seed else ""
        accs = {"dense": _acc(f"dense{suffix}")} | {k: _acc(f"{v}{suffix}") for k, v in INT4_VARIANTS.items()}
        if all(a is not None for a in accs.values()):
            rows[seed] = accs | {"control": _acc(f"dense_kd_epoch{suffix}")}
    return rows


def int4_means(rows: dict[int, dict[str, float | None]]) -> dict[str, float]:
    """Means over the seeds; "control" only when every seed has one."""
    keys = ["dense", "rtn", "qat", "scales"] + (
        ["control"] if all(r["control"] is not None for r in rows.values()) else []
    )
    return {k: sum(r[k] for r in rows.values()) / len(rows) for k in keys}


def int4_seeds_table() -> str:
    rows = int4_seed_rows()
    if len(rows) < 3:
        return ""
    mean = int4_means(rows)
    keys = [k for k in ("qat", "scales", "control") if k in mean]
    head = "| seed | dense | RTN | RTN's loss | QAT fine-tune | RTN + learned scales (codes fixed), KD (+1 epoch) |"
    lines = [head, "|---|---|---|---|---|---|"]
    if "control" in mean:
        lines = [head + " dense + the same KD epoch, nothing quantized |", "|---|---|---|---|---|---|---|"]
    for seed, r in [*rows.items(), ("mean", mean)]:
        cells = [str(seed)] + [pct(r[k]) for k in ("dense", "rtn")] + [f"{100 * (r['dense'] - r['rtn']):+.1f}"]
        lines.append("| " + " | ".join(cells + [pct(r[k]) for k in keys]) + " |")
    return "\n".join(lines)


def goals() -> dict[str, dict]:
    """bench/goals.yaml: every goal's issue, text and thresholds."""
    import yaml

    with open(os.path.join(HERE, "goals.yaml"), encoding="utf-8") as f:
        return yaml.safe_load(f)


Goal = tuple[str, str, str, bool | None]


def judge(key: str, measured: str, name: str = "", **values: float | None) -> Goal:
    """(issue, goal, measured, met) for goal ``key``: met when every value is within its thresholds;
    None (cannot be judged) when one of them is missing."""
    g = goals()[key]
    low, high = g.get("min", {}), g.get("max", {})
    if any(values.get(k) is None for k in (*low, *high)):
        met = None
    else:
        met = all(values[k] >= v for k, v in low.items()) and all(values[k] <= v for k, v in high.items())
    return f"#{g['issue']}", g["text"].format(name=name), measured, met


def _goal_rows() -> list[tuple[str, str, str, bool | None]]:
    """(issue, goal, measured, met) for every numeric goal in the method issues; None = cannot be judged."""
    goals: list[tuple[str, str, str, bool | None]] = []
    dense = _acc("dense")
    if dense:
        # every GMP-80 recipe tried counts (each against its own dense run); other seeds of one recipe do not
        gmp80 = [
            (k, r["recovery"])
            for k in SST2_LABELS
            if k.startswith("gmp80") and "_seed" not in k and (r := load(f"sst2_{k}"))
        ]
        if gmp80:
            best, kept = max(gmp80, key=lambda kv: kv[1])
            text = f"{pct(kept)} at best (`{best}`)"
            other = load(f"sst2_{best}_seed1")
            if other:  # the best recipe run again at seed 1: the goal is met only if both seeds meet it
                text += f"; seed 1 of it: {pct(other['recovery'])}"
                kept = min(kept, other["recovery"])
            goals.append(judge("gmp80_recovery", text, recovery=kept))
    for name, key in (("magnitude_pruning", "gmp_step_overhead"), ("qat_int8", "qat_step_overhead")):
        r = load(f"overhead_{name}")
        if r:
            goals.append(judge(key, f"{r['ratio']:.2f}x", ratio=r["ratio"]))
    q8 = load("sst2_qat_int8")
    if q8:
        goals.append(judge("qat_int8_recovery", pct(q8["recovery"]), recovery=q8["recovery"]))
    for suffix, seed in (("", "seed 0"), ("_seed1", "seed 1")):  # each seed against the dense run of its seed
        base, rtn, qat = _acc(f"dense{suffix}"), _acc(f"ptq_rtn_int4_g32{suffix}"), _acc(f"qat_int4_g32{suffix}")
        if base is None or rtn is None or qat is None:
            continue
        lost = base - rtn
        text = f"RTN {pct(rtn)}, QAT {pct(qat)}, dense {pct(base)}"
        scales = _acc(f"rtn_int4_g32_scales_kd_from_dense{suffix}")
        if scales is not None:  # QAT of the scales alone, on RTN's own codes: the better of the two counts
            text = text.replace(", dense", f", RTN + learned scales {pct(scales)}, dense")
            qat = max(qat, scales)
        if lost <= 0:
            goals.append(judge("int4_qat_wins_back", text + ": RTN loses nothing", seed, won_back=None))
        else:
            goals.append(judge("int4_qat_wins_back", text, seed, won_back=(qat - rtn) / lost))
    seeds = int4_seed_rows()
    if len(seeds) >= 3:  # one seed's RTN loss is a few examples: the means over seeds are the steadier judge
        mean = int4_means(seeds)
        lost, best = mean["dense"] - mean["rtn"], max(mean["qat"], mean["scales"])
        text = (f"RTN {pct(mean['rtn'])}, QAT {pct(mean['qat'])}, RTN + learned scales {pct(mean['scales'])}, "
                f"dense {pct(mean['dense'])}")  # fmt: skip
        if "control" in mean:  # the learned-scales rows' extra epoch, nothing quantized
            text += f", dense + the same KD epoch {pct(mean['control'])}"
        won_back = None if lost <= 0 else (best - mean["rtn"]) / lost
        text += ": RTN loses nothing" if lost <= 0 else ""
        goals.append(judge("int4_qat_wins_back", text, f"mean of {len(seeds)} seeds", won_back=won_back))
    lat = load("latency_side_by_side")
    if lat and "dynamic_int8_b8" in lat["speedup_vs_dense"]:
        sp = lat["speedup_vs_dense"]["dynamic_int8_b8"]
        goals.append(judge("dynamic_int8_speed", f"{sp:.2f}x", speedup=sp))
    student, no_kd = load("sst2_student3_kd_logits"), _acc("student3_no_kd")
    if student:
        goals.append(judge("student_recovery", pct(student["recovery"]), recovery=student["recovery"]))
        if "speedup_b8" in student:
            sp = student["speedup_b8"]
            goals.append(judge("student_speed", f"{sp:.2f}x", speedup=sp))
        if no_kd is not None:
            text = f"{pct(student['accuracy'])} vs {pct(no_kd)}"
            goals.append(judge("student_kd_beats_no_kd", text, margin=student["accuracy"] - no_kd))
    lora = load("sst2_lora_r8")
    if lora:
        text = f"{pct(lora['recovery'])}, {pct(lora['trainable_fraction'])} trainable"
        goals.append(judge("lora", text, recovery=lora["recovery"], trainable=lora["trainable_fraction"]))
    one = (load("oneshot_smollm2") or {}).get("rows", {})
    ppl = {k: v["ppl"] for k, v in one.items() if "ppl" in v}
    for pattern, mag in (("50", "magnitude50"), ("24", "magnitude24")):
        pruned = {k: ppl[k] for k in (f"wanda{pattern}", f"sparsegpt{pattern}") if k in ppl}
        if mag in ppl and pruned:
            worst = max(pruned.values())
            text = ", ".join(f"{k} {v:.1f}" for k, v in pruned.items()) + f" vs {mag} {ppl[mag]:.1f}"
            goals.append(judge("oneshot_vs_magnitude", text, ratio=worst / ppl[mag]))
    g128 = {k: v for k, v in ppl.items() if k.startswith("gptq_g128")}
    if "dense" in ppl and g128:
        best = min(g128, key=g128.get)
        rel = g128[best] / ppl["dense"] - 1
        text = f"+{100 * rel:.1f}% (`{best}`)"
        for file, where in (("smollm2_gptq_g128_recover", ""), ("smollm2_gptq_g128_recover_wiki", " on WikiText")):
            rows = (load(file) or {}).get("rows") or {}
            done = [r["ppl_after_recovery"] for k, r in rows.items() if k != "snap"]
            if done:  # the best of the recoveries that keep GPTQ's codes
                rel_r = min(done) / ppl["dense"] - 1
                text += f"; after a KD recovery with GPTQ's codes fixed{where} +{100 * rel_r:.1f}%"
                rel = min(rel, rel_r)
        goals.append(judge("gptq_g128_ppl", text, increase=rel))
    goals += _sparsity_goal_rows()
    return goals


def _sparsity_goal_rows() -> list[tuple[str, str, str, bool | None]]:
    goals = []
    peer = ((load("oneshot_vs_llmcompressor") or {}).get("rows") or {}).get("sparsegpt50")
    if peer and peer["hf_lite"].get("ppl") and peer["llmcompressor"].get("ppl"):
        ours, theirs = peer["hf_lite"]["ppl"], peer["llmcompressor"]["ppl"]
        goals.append(judge("sparsegpt_parity", f"{ours:.2f} vs {theirs:.2f}", ratio=ours / theirs))
    rows = [r for r in (load("sparsity_curve") or {}).get("rows", []) if "accuracy" in r]
    if not rows:
        return goals

    def mean(method: str, sparsity: float, key: str) -> float | None:
        vals = [r[key] for r in rows if r["method"] == method and r["sparsity"] == sparsity and r.get(key)]
        return sum(vals) / len(vals) if vals else None

    for sparsity, key in ((0.9, "obs_90"), (0.8, "obs_80")):
        rec = mean("obs", sparsity, "recovery")
        n = round(100 * sparsity)
        runs = {
            "8-epoch recipe": f"sst2_obs{n}_hidden_kd_8ep",
            "8 epochs, oBERT's layout": f"sst2_obs{n}_rewind_8ep",
            "16 epochs, oBERT's layout": f"sst2_obs{n}_rewind_16ep",
            "the layout with a Fisher of 128": f"sst2_obs{n}_rewind_8ep_g128",
            "the layout from 40%": f"sst2_obs{n}_rewind_8ep_init40",
            "the layout at KD temperature 5.5": f"sst2_obs{n}_rewind_8ep_t55",
            "the same over all 60,614 train sentences": f"sst2_obs{n}_rewind_transfer_t55",
            "the layout at 5.5 with half the loss from the labels": f"sst2_obs{n}_rewind_8ep_t55_labels",
        }
        texts, long = [f"1-epoch curve {pct(rec)}"], {}
        for label, base in runs.items():
            seeds = [(load(f"{base}{tail}") or {}).get("recovery") for tail in ("", "_seed1")]
            if seeds[0] is None:
                continue
            # as for GMP 80%: a recipe run at two seeds meets the goal only if both do
            both = [v for v in seeds if v is not None]
            texts.append(
                f"{label} {' / '.join(f'{100 * v:.2f}%' for v in both)}" + (" (seeds 0 / 1)" if len(both) > 1 else "")
            )
            long[label] = min(both)
        labels, control = load(f"sst2_obs{n}_rewind_8ep_t55_labels"), load("sst2_dense_8ep_t55_labels")
        if labels and control:  # the same 8 epochs and loss on the dense model: what the pruning itself costs
            texts.append(
                f"against the dense model trained the same way {pct(labels['accuracy'] / control['accuracy'])}"
            )
        found = [r for r in (rec, *long.values()) if r is not None]
        if found:  # judged on the best of the curve and the 8-epoch runs
            goals.append(judge(key, "; ".join(texts), recovery=max(found)))
    high = sorted({r["sparsity"] for r in rows if r["method"] == "obs" and r["sparsity"] >= 0.8})
    if high:
        margin = min((mean("obs", sp, "accuracy") or 0) - (mean(m, sp, "accuracy") or 0)
                     for sp in high for m in ("gmp", "movement"))  # fmt: skip
        text = "; ".join(
            f"{pct(sp)}: OBS {pct(mean('obs', sp, 'accuracy'))}, GMP {pct(mean('gmp', sp, 'accuracy'))}, "
            f"movement {pct(mean('movement', sp, 'accuracy'))}"
            for sp in high
        )
        goals.append(judge("obs_ahead", text, margin=margin))
    ratios = [r["step_time_ratio_vs_gmp"] for r in rows if r["method"] == "obs" and r.get("step_time_ratio_vs_gmp")]
    if ratios:
        avg = sum(ratios) / len(ratios)
        goals.append(judge("obs_step_time", f"{avg:.2f}x", ratio=avg))
    return goals


SAMSUM_ROWS = (
    ("sft", "dense SFT (`recipes/samsum_sft.yaml`)"),
    ("wanda50_kd", "Wanda 50% + KD recovery (`samsum_wanda50_kd.yaml`)"),
    ("wanda50_kd_3ep", "as above, 3 epochs at lr 1e-4"),
    ("sparsegpt24_kd", "SparseGPT 2:4 + KD recovery (`samsum_sparsegpt24_kd.yaml`)"),
    ("gptq_int4_g32_kd", "GPTQ int4 g32 + scales/KD recovery (`samsum_gptq_int4_kd.yaml`)"),
    ("student15_kd_block", "15-of-30-layer student: the first 6 and last 9 blocks, KD (`samsum_student15_kd.yaml`)"),
    ("student15_kd", "as above, every other block"),
    (
        "student15_kd_block_hidden",
        "the block student, plus hidden-state KD (cosine, `layer_map: kept`; Intel Xeon run)",
    ),
    ("student15_kd_block_seqkd", "the block student on the SFT's own answers (sequence-level KD; Intel Xeon run)"),
    (
        "student15_keep_kd_512",
        "the block student chosen by `init_from_teacher: {keep: 15}`, 512 dialogues (Intel Xeon run)",
    ),
    ("student15_keep_kd_818_3ep", "as above, all 818 validation dialogues, 3 passes (Intel Xeon run)"),
    ("sft_818", "dense SFT on all 818 validation dialogues, 1 pass (Intel Xeon run)"),
    ("student15_keep_kd_818_3ep_t818", "the keep-15 student cut from and taught by that SFT, 818 dialogues, 3 passes"),
    ("student15_keep_seqkd_818_3ep_t818", "as above, on that SFT's own greedy answers (sequence-level KD)"),
    (
        "student15_keep_seqkd_all_818_3ep_t818",
        "as above, the soft loss over the dialogue tokens too (`distillation.soft_tokens: all`)",
    ),
    ("student15_keep_seqkd_all_818_6ep_t818", "as above, 6 passes"),
    (
        "student15_cosine_seqkd_all_818_3ep_t818",
        "the 3-pass row with the 15 blocks of lowest input/output cosine instead of the contiguous cut",
    ),
    ("student15_cosine_seqkd_all_818_6ep_t818", "as above, 6 passes"),
    (
        "student15_search_seqkd_all_818_3ep_t818",
        "the 3-pass cosine row, the blocks chosen by `init_from_teacher: {keep: 15, by: search}` (cosine, then swaps by loss)",
    ),
    (
        "student15_fade_seqkd_all_818_3ep_t818",
        "the cosine row's blocks faded out over the first pass by `block_drop` instead of cut before training",
    ),
    ("lora", "LoRA r16 (`samsum_lora.yaml`)"),
)


def samsum_reference(rows: dict, row: dict) -> tuple[str, float]:
    """The SFT a SAMSum row is kept against: the one trained on as many dialogues as the row when the bench
    has it (``sft_<n>`` for rows on n dialogues), else the recipes' SFT (``sft``, 128 dialogues)."""
    key = f"sft_{row.get('train_rows')}"
    key = key if key in rows else "sft"
    return key, rows[key]["after"]["rougeL"]


def samsum_table() -> str:
    rows = (load("samsum") or {}).get("rows") or {}
    sft = rows.get("sft")
    if not sft:
        return ""
    ref = sft["after"]["rougeL"]
    lines = [
        "| model | parameters | zeros | MiB | ROUGE-1 | ROUGE-2 | ROUGE-L | ROUGE-L vs SFT | answer ppl | wall |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    b = sft["before"]
    lines.append(f"| zero-shot SmolLM2-135M-Instruct | {sft['parameters'] / 1e6:.1f}M | - | - | {pct(b['rouge1'])} | "
                 f"{pct(b['rouge2'])} | {pct(b['rougeL'])} | {pct(b['rougeL'] / ref)} | {b['perplexity']:.2f} | - |")  # fmt: skip
    for key, label in SAMSUM_ROWS:
        r = rows.get(key)
        if not r:
            continue
        a, one = r["after"], r.get("after_oneshot") or {}
        shot = f" (one-shot alone {pct(one['rougeL'])})" if one.get("rougeL") is not None else ""
        kept = pct(a["rougeL"] / ref)
        ref_key, ref_same = samsum_reference(rows, r)
        if ref_key != "sft" and key != ref_key:
            kept += f" (vs the {r['train_rows']}-dialogue SFT: {pct(a['rougeL'] / ref_same)})"
        lines.append(
            f"| {label} | {r['parameters'] / 1e6:.1f}M | {pct(r['sparsity'])} | {r['size_on_disk_mib']:.0f} | "
            f"{pct(a['rouge1'])} | {pct(a['rouge2'])} | {pct(a['rougeL'])}{shot} | {kept} | "
            f"{a['perplexity']:.2f} | {r['wall_s'] / 60:.0f} min |"
        )
    for key in ("speed", "speed_amd_epyc"):
        if speed := rows.get(key):
            t = speed["tokens_per_s"]
            lines += ["", f"Greedy generation at batch 1 on 20 test prompts, 3 alternating rounds (median), "
                          f"{speed['machine']['cpu']}: dense SFT {t['sft']:.1f} tokens/s, 15-layer student "
                          f"(`{speed['student_folder']}`) {t['student']:.1f} tokens/s ({speed['student_speedup']:.2f}x)."]  # fmt: skip
    for study in ("wide_test", "full_test"):
        if wide := rows.get(study):
            lines += ["", wide_test_table(wide)]
    return "\n".join(lines)


def wide_test_table(wide: dict) -> str:
    """The `wide_test` study: models scored on more test dialogues than the rows' 50."""
    ref = wide["reference"]
    n = next(iter(wide["rows"].values()))["dialogues"]
    lines = [
        f"The same models on {'all' if wide.get('test') is None else 'the first'} {n} test dialogues "
        f"(same greedy settings; the interval is 95%, "
        f"{wide['resamples']} paired bootstrap draws of the dialogues):",
        "",
        f"| model | ROUGE-1 | ROUGE-2 | ROUGE-L | ROUGE-L vs `{ref}` |",
        "|---|---|---|---|---|",
    ]
    for name, r in wide["rows"].items():
        kept = "-"
        if "kept_vs_reference" in r:
            lo, hi = r["kept_interval_95"]
            kept = f"{pct(r['kept_vs_reference'])} ({pct(lo)} to {pct(hi)})"
        lines.append(f"| `{name}` | {pct(r['rouge1'])} | {pct(r['rouge2'])} | {pct(r['rougeL'])} | {kept} |")
    return "\n".join(lines)


def _samsum_goal_rows() -> list[tuple[str, str, str, bool | None]]:
    rows = (load("samsum") or {}).get("rows") or {}
    if "sft" not in rows:
        return []
    ref = rows["sft"]["after"]["rougeL"]
    goals = []
    for keys, goal in ((("wanda50_kd", "wanda50_kd_3ep"), "samsum_sparse"), (("gptq_int4_g32_kd",), "samsum_int4")):
        kept = {k: rows[k]["after"]["rougeL"] / ref for k in keys if k in rows}
        if kept:  # the best recipe, each shown
            text = "; ".join(f"{k} {pct(v)}" for k, v in kept.items()) if len(kept) > 1 else pct(max(kept.values()))
            goals.append(judge(goal, text, keep=max(kept.values())))
    students = {  # each kept against the SFT trained on as many dialogues
        k: rows[k]["after"]["rougeL"] / samsum_reference(rows, rows[k])[1]
        for k, _ in SAMSUM_ROWS
        if k.startswith("student") and k in rows
    }
    if students:  # the same 15-block architecture, so the same speed: judged on the better one
        keep = max(students.values())
        speed = (rows.get("speed") or {}).get("student_speedup")
        text = "; ".join(f"{k} {pct(v)}" for k, v in students.items()) if len(students) > 1 else pct(keep)
        if full := rows.get("full_test"):  # the whole test split outranks its first 50 dialogues
            name, r = max(((k, v) for k, v in full["rows"].items() if "kept_vs_reference" in v),
                          key=lambda kv: kv[1]["kept_vs_reference"])  # fmt: skip
            keep, (lo, hi) = r["kept_vs_reference"], r["kept_interval_95"]
            text += (f"; on all {r['dialogues']} test dialogues (judged on these): {name} {pct(keep)} "
                     f"(95% interval {pct(lo)} to {pct(hi)})")  # fmt: skip
        text += f", {speed:.2f}x" if speed else ", speed not measured"
        goals.append(judge("samsum_student", text, keep=keep, speedup=speed))
    return goals


def deploy_ct_table() -> str:
    rows = (load("deploy_compressed_tensors") or {}).get("rows") or {}
    if not rows:
        return ""
    lines = [
        "| grid | block weights fp32 | compressed-tensors | ratio | folder fp32 / CT (MiB) | ppl ours | ppl reloaded | max logit diff |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['block_weight_bytes_fp32'] / 2**20:.1f} MiB | {r['block_weight_bytes_ct'] / 2**20:.1f} MiB | "
            f"{r['block_ratio']:.3f} | {r['folder_mib_fp32']:.0f} / {r['folder_mib_ct']:.0f} | {r['ppl_ours']:.2f} | "
            f"{r['ppl_reloaded']:.2f} | {r['max_logit_diff']:.2e} |"
        )
    return "\n".join(lines)


#: the ONNX section's results: this machine's run, then an earlier run on another CPU (kept, not re-run)
ONNX_RUNS = ("deploy_onnx", "deploy_onnx_amd_epyc")


def cpu_of(data: dict) -> str:
    m = data.get("machine") or {}
    return f"{m.get('cpu', '?')}, int8 dot products: {', '.join(m.get('int8_dot_product') or ['none'])}"


def deploy_onnx_table(name: str = "deploy_onnx") -> str:
    data = load(name) or {}
    rows = data.get("rows") or {}
    if not rows:
        return ""
    engines = ("torch_fp32", "torch_int8", "ort_fp32", "ort_int8", "ort_int8_default_fusions")
    lines = [
        "| model | engine | accuracy | vs dense | speed-up b1 x 128 | speed-up b8 x 128 | file MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        size = r["size_mib"]
        files = {"torch_fp32": size["safetensors"], "torch_int8": None, "ort_fp32": size["onnx_fp32"],
                 "ort_int8": size["onnx_int8"], "ort_int8_default_fusions": size["onnx_int8"]}  # fmt: skip
        for e in (e for e in engines if e in r["accuracy"]):
            sp = r["speedup_vs_torch_fp32"]
            mib = "-" if files[e] is None else f"{files[e]:.0f}"
            lines.append(f"| {name} | {e} | {pct(r['accuracy'][e])} | {pct(r['accuracy_vs_dense_torch'][e])} | "
                         f"{sp['b1'][e]:.2f}x | {sp['b8'][e]:.2f}x | {mib} |")  # fmt: skip
    return "\n".join(lines)


def deploy_gguf_table() -> str:
    rows = (load("deploy_gguf") or {}).get("rows") or {}
    if not rows:
        return ""
    lines = [
        "| model | engine | file MiB | block weights vs fp32 | WikiText-2 ppl | prompt tok/s | decode tok/s | decode vs fp32 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    labels = {
        "dense_fp32_transformers": ("dense fp32", "transformers"),
        "gptq_fp32_transformers": ("GPTQ int4 g32, our export (dequantized)", "transformers"),
        "dense_q8_0": ("dense, GGUF Q8_0 (gguf's quantizer)", "llama.cpp"),
        "gptq_q8_0": ("GPTQ int4 g32, GGUF Q8_0", "llama.cpp"),
        "gptq_q4_0": ("GPTQ int4 g32, GGUF Q4_0 from our codes", "llama.cpp"),
    }
    for key, (label, engine) in labels.items():
        r = rows.get(key)
        if not r:
            continue
        cells = [
            label, engine, f"{r['file_mib']:.0f}" if "file_mib" in r else "-",
            f"{r['block_ratio_vs_fp32']:.3f}x" if "block_ratio_vs_fp32" in r else "-", f"{r['ppl']:.2f}",
            f"{r['prompt_tokens_per_s']:.0f}" if "prompt_tokens_per_s" in r else "-",
            f"{r['decode_tokens_per_s']:.1f}" if "decode_tokens_per_s" in r else "-",
            f"{r['decode_speedup_vs_fp32_transformers']:.2f}x" if "decode_speedup_vs_fp32_transformers" in r else "-",
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _deploy_goal_rows() -> list[tuple[str, str, str, bool | None]]:
    gg = (load("deploy_gguf") or {}).get("rows") or {}
    goals = []
    q4 = gg.get("gptq_q4_0")
    if q4:
        ratio, speed = q4["block_ratio_vs_fp32"], q4["decode_speedup_vs_fp32_transformers"]
        goals += [
            judge("gguf_int4_size", f"{ratio:.3f}x", ratio=ratio),
            judge("gguf_int4_decode", f"{speed:.2f}x", speedup=speed),
            judge("gguf_int4_ppl", f"{q4['ppl']:.2f} vs {gg['gptq_fp32_transformers']['ppl']:.2f}",
                  ratio=q4["ppl_vs_our_export"]),
        ]  # fmt: skip

    def onnx_text(r: dict) -> str:
        sp = r["speedup_vs_torch_fp32"]
        return f"b1 {sp['b1']['ort_int8']:.2f}x, b8 {sp['b8']['ort_int8']:.2f}x, {pct(r['accuracy_vs_dense_torch']['ort_int8'])}"

    # one goal ("a deployed int8 classifier"): judged on the fastest row of this machine's run that keeps
    # 99% of dense; every row is stated, and an earlier run on another CPU next to it
    current, earlier = (load(n) or {} for n in ONNX_RUNS)
    judged = []
    for run in (current, earlier):
        rows = run.get("rows") or {}
        if rows:
            cpu = (run.get("machine") or {}).get("cpu", "?")
            when = "this run" if run is current else "an earlier run"
            judged.append(f"{when}, {cpu}: " + "; ".join(f"{name} {onnx_text(r)}" for name, r in rows.items()))
    candidates = [
        (min(sp["b1"]["ort_int8"], sp["b8"]["ort_int8"]), r["accuracy_vs_dense_torch"]["ort_int8"])
        for r in (current.get("rows") or {}).values()
        if (sp := r["speedup_vs_torch_fp32"])
    ]
    if candidates:
        keeping = [c for c in candidates if c[1] >= 0.99] or candidates
        speed, keep = max(keeping)
        goals.append(judge("onnx_int8", "; ".join(judged), speedup=speed, keep=keep))
    rows = (load("deploy_compressed_tensors") or {}).get("rows") or {}
    return goals + [
        judge("ct_int4_size", f"{r['block_ratio']:.3f}x", n, ratio=r["block_ratio"]) for n, r in rows.items()
    ]


def _cell(text: str) -> str:
    """``text`` as one markdown table cell (a bare "|" would split it)."""
    return str(text).replace("|", "\\|")


def goals_table() -> str:
    rows = _goal_rows() + _samsum_goal_rows() + _deploy_goal_rows()
    if not rows:
        return ""
    mark = {True: "met", False: "**missed**", None: "cannot be judged"}
    lines = ["| issue | goal | measured | |", "|---|---|---|---|"]
    lines += [f"| {i} | {_cell(g)} | {_cell(m)} | {mark[ok]} |" for i, g, m, ok in rows]
    return "\n".join(lines)


def run_table() -> str:
    lines = ["| run | sections | wall time | load average at start |", "|---|---|---|---|"]
    for name, label in (("bench_run_all", "`make bench`"), ("bench_run_studies", "`make bench SECTION=studies`")):
        r = load(name)
        if r:
            secs = ", ".join(f"{k} {v / 60:.0f}" for k, v in r["sections"].items())
            lines.append(f"| {label} (`{name}.json`) | {secs} (minutes) | {r['total_s'] / 60:.0f} min | "
                         f"{r['loadavg_start'][0]:.1f} |")  # fmt: skip
    return "\n".join(lines) if len(lines) > 2 else ""


def plots(rows: list[tuple[str, dict]]) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    os.makedirs(PLOTS, exist_ok=True)
    made = []
    for field, label, fname in (
        ("disk_mib", "safetensors size (MiB)", "accuracy_vs_size.png"),
        ("latency_b8_s", "latency, batch 8 x 128 tokens (s)", "accuracy_vs_latency.png"),
    ):
        pts = [(r[field], r["accuracy"], SST2_LABELS[k]) for k, r in rows if r.get(field) is not None]
        if not pts:
            continue
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for x, y, text in pts:
            ax.scatter(x, 100 * y)
            ax.annotate(text, (x, 100 * y), fontsize=7, xytext=(4, 2), textcoords="offset points")
        ax.set_xlabel(label)
        ax.set_ylabel("SST-2 dev accuracy (%)")
        ax.set_title("MiniLM-L6 on SST-2 (bench/results)")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(os.path.join(PLOTS, fname), dpi=120)
        plt.close(fig)
        made.append(fname)
    curve = load("sparsity_curve")
    if curve and any("accuracy" in r for r in curve["rows"]):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for method in sorted({r["method"] for r in curve["rows"]}):
            pts = sorted((r["sparsity"], r["accuracy"]) for r in curve["rows"]
                         if r["method"] == method and r.get("seed") == 0 and "accuracy" in r)  # fmt: skip
            if pts:
                ax.plot([100 * x for x, _ in pts], [100 * y for _, y in pts], marker="o", label=method)
        ax.axhline(100 * curve["dense_accuracy"], color="gray", linestyle="--", label="dense")
        ax.set_xlabel("sparsity (%)")
        ax.set_ylabel("SST-2 dev accuracy (%)")
        ax.set_title("MiniLM-L6 on SST-2: pruning the dense fine-tune with KD, 1 epoch")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(os.path.join(PLOTS, "sparsity_curve.png"), dpi=120)
        plt.close(fig)
        made.append("sparsity_curve.png")
    layer = layer_sparsity("gmp80")
    if layer:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ax.bar(range(len(layer)), [100 * v for v in layer.values()])
        ax.set_xticks(range(len(layer)), [n.replace("bert.encoder.layer.", "") for n in layer], rotation=90, fontsize=5)
        ax.set_ylabel("sparsity (%)")
        ax.set_title("GMP 80%: sparsity per layer")
        fig.tight_layout()
        fig.savefig(os.path.join(PLOTS, "sparsity_per_layer_gmp80.png"), dpi=120)
        plt.close(fig)
        made.append("sparsity_per_layer_gmp80.png")
    return made


def layer_sparsity(name: str) -> dict[str, float]:
    row = load(f"sst2_{name}") or {}
    if row.get("layer_sparsity"):
        return row["layer_sparsity"]
    weights = os.path.join(OUT, name, "model.safetensors")
    if not os.path.exists(weights):
        return {}
    from safetensors.torch import load_file

    out = {}
    for key, w in load_file(weights).items():
        if key.endswith(".weight") and w.dim() == 2 and ".layer." in key:
            out[key[: -len(".weight")]] = float((w == 0).float().mean())
    return out


def main() -> None:
    rows = sst2_rows()
    made = plots(rows)
    parts = [
        "# Benchmark results",
        "",
        "Generated by `python bench/report.py` from `bench/results/*.json` (protocols: `../shared/BENCH-PROTOCOL.md`).",
        "Each JSON names its command, git commit, package versions, CPU and load average. Latencies are",
        "medians of 20 forwards after warm-up on a shared 2-core CPU: compare ratios measured in one run.",
        "",
        "## Summary (the README's results table)",
        "",
        summary_table(),
        "",
        "## SST-2 on MiniLM-L6 (8,000 training rows, 1 epoch, batch 32, max_length 64, seed 0, grouped by length)",
        "",
        sst2_table(sst2_rows(studies=False)),
        "",
        "### Studies (`make bench SECTION=studies`): more attempts at the goals the core rows miss",
        "",
        sst2_table(sst2_rows(studies=True)),
        "",
        "Rows come from separate runs at different machine load, so compare latencies through the side-by-side",
        "speed-ups below, not across rows. `zeros` counts exact zeros in the block Linears (quantized grids",
        "include zero). Dynamic int8 stores float weights and quantizes at load time (its parameter count is",
        "what torch reports for the quantized modules).",
        "",
    ]
    if goals_table():
        parts += ["## Goals from the method issues", "", goals_table(), ""]
    if run_table():
        parts += ["## Wall time of the benchmark runs", "", run_table(), ""]
    if speedups():
        parts += ["### Speed-ups measured side by side", "", speedups(), ""]
    if overhead_table():
        parts += [
            "## Training-step overhead vs a plain Trainer (MiniLM-L6, batch 32, 30 steps, 3 interleaved repeats)",
            "",
            overhead_table(),
            "",
        ]
    if oneshot_table():
        parts += [
            "## One-shot on SmolLM2-135M (calibration: 32 x 256 tiny-shakespeare tokens; WikiText-2 test, 32 x 512 tokens)",
            "",
            oneshot_table(),
            "",
            "### More one-shot settings (`make bench SECTION=oneshot_variants`)",
            "",
            oneshot_table(core=False),
            "",
        ]
    if int4_seeds_table():
        parts += [
            "### int4 g32 at several seeds (`make bench SECTION=int4_seeds`; each row against its own dense run)",
            "",
            int4_seeds_table(),
            "",
        ]
    if gptq_calibration_table():
        parts += [
            "### GPTQ int4 g128: Hessian dampening and calibration domain (`make bench SECTION=gptq_calibration`)",
            "",
            gptq_calibration_table(),
            "",
        ]
    if peers_table():
        parts += [
            "## hf_lite vs llm-compressor, same model, calibration and evaluation, one run",
            "",
            peers_table(),
            "",
        ]
    if recovery_table():
        parts += [
            "## Recovery fine-tune after one-shot (SmolLM2-135M, WikiText-2 perplexity)",
            "",
            recovery_table(),
            "",
        ]
    if formats_table():
        parts += [
            "## Disk size of each saved format (dense fine-tune, reloaded with plain from_pretrained)",
            "",
            formats_table(),
            "",
        ]
    if sparsity_curve_table():
        parts += [
            "## Sparsity-accuracy curve: GMP, movement, OBS (`make bench SECTION=sparsity`; "
            "`bench/results/sparsity_curve.json`)",
            "",
            "MiniLM-L6 dense SST-2 fine-tune pruned for 1 epoch (8,000 rows) with KD from itself (logits, T 2, "
            "alpha 0.9), global scope, schedule start 0, end 0.7, every 10 steps; each row in its own process.",
            "",
            sparsity_curve_table(),
            "",
            "Movement pruning ends at the majority class (50.9%) at every sparsity here: its scores favour the "
            "weights that training grows, which suits fine-tuning a pretrained model for several epochs (Sanh et "
            "al. 2020), not one epoch of pruning an already fine-tuned one (docs/pruning.md).",
            "",
        ]
    if sparsegpt_ablation_table():
        parts += [
            "## SparseGPT 50% ablation against llm-compressor (`make bench SECTION=sparsegpt_ablation`; "
            "SmolLM2-135M, WikiText-2 ppl by the protocol)",
            "",
            "One change at a time to our SparseGPT, and both tools on three calibration sets of 32 x 256 "
            "tiny-shakespeare tokens. Times are not comparable between rows (other jobs shared the 2 cores).",
            "",
            sparsegpt_ablation_table(),
            "",
        ]
    if samsum_table():
        parts += [
            "## SAMSum dialogue summaries with SmolLM2-135M-Instruct (`make bench SECTION=samsum`; "
            "`bench/results/samsum.json`)",
            "",
            "The shared data has SAMSum's validation and test splits only: the first 128 validation dialogues "
            "train (1 epoch, batch 4; dialogues over 384 tokens left out), the first 50 test dialogues are "
            "answered greedily (48 new tokens) and scored with ROUGE F1 (stemmed, `rouge-score`); answer "
            "perplexity on the test dialogues that fit 384 tokens. Compressed rows start from the dense SFT "
            "and distil from it.",
            "",
            samsum_table(),
            "",
        ]
    if deploy_gguf_table():
        parts += [
            "## GGUF in llama.cpp (`make bench SECTION=deploy_gguf`; SmolLM2-135M, batch 1, 2 threads, medians of "
            "3 alternating rounds)",
            "",
            deploy_gguf_table(),
            "",
        ]
    for i, name in enumerate(n for n in ONNX_RUNS if deploy_onnx_table(n)):
        parts += [
            ("## ONNX export of SST-2 classifiers (`make bench SECTION=deploy_onnx`; speed-ups against torch fp32, "
             "interleaved, 2 threads)" if i == 0 else f"Earlier run of the same section on another CPU (`{name}.json`):"),
            "",
            f"CPU: {cpu_of(load(name))}.",
            "",
            deploy_onnx_table(name),
            "",
        ]  # fmt: skip
    if deploy_ct_table():
        parts += [
            "## compressed-tensors export (`make bench SECTION=deploy_ct`; SmolLM2-135M GPTQ int4, reloaded "
            "by transformers)",
            "",
            deploy_ct_table(),
            "",
        ]
    if fsdp_teacher_table():
        parts += [
            "## Distillation teacher under FSDP2 (`make bench SECTION=fsdp_teacher`; BERT-base-sized teacher, "
            "2-layer student)",
            "",
            fsdp_teacher_table(),
            "",
        ]
    if torchao_table():
        parts += [
            "## hf_lite QAT vs torchao QAT (same protocol; each step ratio against a plain Trainer in its own process)",
            "",
            torchao_table(),
            "",
        ]
    if made:
        parts += ["## Plots", ""] + [f"![{m}](plots/{m})" for m in made] + [""]
    with open(os.path.join(HERE, "RESULTS.md"), "w") as f:
        f.write("\n".join(parts))
    # the docs site's copy, so it never falls behind (docs/plots links to bench/plots)
    with open(os.path.join(os.path.dirname(HERE), "docs", "results.md"), "w") as f:
        f.write("\n".join(parts))
    print(f"wrote {os.path.join(HERE, 'RESULTS.md')}, docs/results.md and {len(made)} plot(s)")
    readme = open(os.path.join(os.path.dirname(HERE), "README.md"), encoding="utf-8").read()
    if summary_table() not in readme:  # README is written by hand; a test holds it to this table
        print("README.md's results table differs from the summary in RESULTS.md: copy it over")


def summary_rows() -> list[list[str]]:
    """One headline row per use: what it keeps and what it saves where it runs (README and RESULTS.md)."""
    rows = []
    onnx = ((load("deploy_onnx") or {}).get("rows") or {}).get("qat_int8")
    if onnx:
        sp, size = onnx["speedup_vs_torch_fp32"], onnx["size_mib"]
        rows.append(["SST-2 classifier, MiniLM-L6", "QAT int8 + ONNX int8 (onnxruntime)",
                     f"{pct(onnx['accuracy_vs_dense_torch']['ort_int8'])} of dense accuracy",
                     f"{size['onnx_int8']:.0f} vs {size['safetensors']:.0f} MiB",
                     f"{sp['b1']['ort_int8']:.1f}x (batch 1), {sp['b8']['ort_int8']:.1f}x (batch 8)", "`deploy_onnx.json`"])  # fmt: skip
    gmp = [(k, r) for k in SST2_LABELS if k.startswith("gmp80") and "_seed" not in k and (r := load(f"sst2_{k}"))]
    if gmp:
        name, r = max(gmp, key=lambda kv: kv[1]["recovery"])
        rows.append(["SST-2 classifier, MiniLM-L6", "GMP 80% sparsity + KD", f"{pct(r['recovery'])} of dense accuracy",
                     "same (dense kernels)", "same", f"`sst2_{name}.json`"])  # fmt: skip
    obs, seed1, control = (load(f"sst2_{k}") for k in ("obs80_rewind_8ep_t55_labels",
                                                       "obs80_rewind_8ep_t55_labels_seed1", "dense_8ep_t55_labels"))  # fmt: skip
    if obs and seed1 and control:
        rows.append(["SST-2 classifier, MiniLM-L6", "OBS 80% sparsity + KD (`recipes/obs_80_kd.yaml`)",
                     f"{pct(obs['recovery'])} / {pct(seed1['recovery'])} of dense accuracy (seeds 0 / 1); "
                     f"{pct(obs['accuracy'] / control['accuracy'])} of dense trained the same way",
                     "same (dense kernels)", "same", "`sst2_obs80_rewind_8ep_t55_labels.json`"])  # fmt: skip
    student = load("sst2_student3_kd_logits")
    if student and "speedup_b8" in student:
        rows.append(["SST-2 classifier, MiniLM-L6", "3-of-6-layer student + KD",
                     f"{pct(student['recovery'])} of the teacher", f"{student['disk_mib']:.0f} vs 87 MiB"
                     if "disk_mib" in student else "-", f"{student['speedup_b8']:.1f}x (batch 8)",
                     "`sst2_student3_kd_logits.json`"])  # fmt: skip
    gg = (load("deploy_gguf") or {}).get("rows") or {}
    if "gptq_q4_0" in gg:
        q4, ours = gg["gptq_q4_0"], gg["gptq_fp32_transformers"]
        rows.append(["LLM, SmolLM2-135M", "GPTQ int4 g32 as GGUF Q4_0 (llama.cpp)",
                     f"WikiText-2 ppl {q4['ppl']:.2f} (our int4 export {ours['ppl']:.2f}, dense {gg['dense_fp32_transformers']['ppl']:.2f})",
                     f"{q4['file_mib']:.0f} vs {gg['dense_fp32_transformers'].get('file_mib', 513):.0f} MiB",
                     f"{q4['decode_speedup_vs_fp32_transformers']:.1f}x decode", "`deploy_gguf.json`"])  # fmt: skip
    ct = ((load("deploy_compressed_tensors") or {}).get("rows") or {}).get("gptq_g32_sym")
    if ct:
        rows.append(["LLM, SmolLM2-135M", "GPTQ int4 g32 as compressed-tensors (transformers, vLLM)",
                     f"WikiText-2 ppl {ct['ppl_reloaded']:.2f} reloaded (our export {ct['ppl_ours']:.2f})",
                     f"{ct['folder_mib_ct']:.0f} vs {ct['folder_mib_fp32']:.0f} MiB (block weights {ct['block_ratio']:.2f}x)",
                     "-", "`deploy_compressed_tensors.json`"])  # fmt: skip
    peers = (load("oneshot_vs_llmcompressor") or {}).get("rows") or {}
    if "sparsegpt50" in peers:
        r = peers["sparsegpt50"]
        rows.append(["LLM, SmolLM2-135M", "SparseGPT 50%, one-shot",
                     f"ppl {r['hf_lite']['ppl']:.2f} (llm-compressor {num(r['llmcompressor'].get('ppl'))})",
                     "same (dense kernels)", "same", "`oneshot_vs_llmcompressor.json`"])  # fmt: skip
    sam = (load("samsum") or {}).get("rows") or {}
    for key, label in (("gptq_int4_g32_kd", "GPTQ int4 g32 + KD recovery"),
                       ("wanda50_kd_3ep", "Wanda 50% + 3 epochs of KD recovery")):  # fmt: skip
        if key in sam and "sft" in sam:
            keep = sam[key]["after"]["rougeL"] / sam["sft"]["after"]["rougeL"]
            rows.append(["dialogue summary, SmolLM2-135M-Instruct (SAMSum)", label,
                         f"{pct(keep)} of the SFT model's ROUGE-L", "see GGUF / compressed-tensors", "-", "`samsum.json`"])  # fmt: skip
    return rows


def summary_table() -> str:
    rows = summary_rows()
    if not rows:
        return ""
    lines = ["| use | compression | quality kept | size | speed vs fp32 PyTorch | file |", "|---|---|---|---|---|---|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


if __name__ == "__main__":
    main()
