"""The peers side by side: torchao's QAT in a plain Trainer, llm-compressor's one-shot methods. Each runs
from its own venv (`make peers-venv`): they pin other releases of transformers and torchao."""

from __future__ import annotations

import os

from bench.common import (
    COMMIT,
    SHARED,
    SST2,
    config,
    load_result,
    made_by_this_code,
    peer_python,
    run_peer,
    save,
    saved_rows,
)
from bench.sections import section
from bench.sections.oneshot import section_oneshot
from bench.sections.speed import section_overhead
from bench.sections.sst2 import dense_reference


@section()
def section_torchao() -> None:
    """torchao int8 QAT (plain Trainer) vs hf_lite's `qat bits: 8`: SST-2 accuracy and step-time ratio.

    TAO_PYTHON: a python with torchao (make peers-venv). Each tool's step-time ratio is taken against a
    plain Trainer in the same process, interleaved; then the two ratios are compared.
    """
    from hf_lite.models import resolve_model_path

    tao_python = peer_python("TAO_PYTHON", "tao-venv")
    if not os.path.exists(tao_python):
        print(f"[bench] torchao: {tao_python} is absent; run `make peers-venv` or set TAO_PYTHON")
        return
    model_dir = resolve_model_path("minilm-l6")
    _, dense_acc = dense_reference()
    ours = load_result("sst2_qat_int8")
    theirs = {}
    for mode in ("accuracy", "overhead", "latency"):
        theirs[mode] = run_peer(tao_python, "torchao_qat.py", model_dir, SST2, mode)
    if not made_by_this_code("overhead_qat_int8"):  # the core run measured it minutes ago; else measure now
        section_overhead(variants_only=("qat_int8",))
    our_overhead = load_result("overhead_qat_int8")
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


@section()
def section_peers_sparsegpt() -> None:
    """llm-compressor's and our SparseGPT 50% and 2:4 side by side."""
    section_peers(["sparsegpt50", "sparsegpt24"])


@section(names=True)
def section_peers(methods: list[str] | None = None) -> None:
    """Ours and llm-compressor's, method by method in one run (LC_PYTHON: a python with llmcompressor).
    Our row is reused when this code made it already (the core run's oneshot section)."""
    from hf_lite.models import resolve_model_path

    lc_python = peer_python("LC_PYTHON", "lc-venv")
    if not os.path.exists(lc_python):
        print(
            f"[bench] peers: {lc_python} is absent; create a venv with `pip install torch==2.13.0 llmcompressor` and set LC_PYTHON"
        )
        return
    model_dir = resolve_model_path("smollm2-135m")
    rows = saved_rows("oneshot_vs_llmcompressor")
    peers = config("oneshot")["peers"]
    for name in methods or peers["core"]:
        our_name = peers["methods"][name]
        if saved_rows("oneshot_smollm2").get(our_name, {}).get("commit") != COMMIT:
            section_oneshot([our_name])
        ours = saved_rows("oneshot_smollm2")[our_name]
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
