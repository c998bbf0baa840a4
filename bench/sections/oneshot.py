"""One-shot compression of SmolLM2-135M (bench/configs/oneshot.yaml): the method matrix, GPTQ calibration
studies and the SparseGPT ablation against llm-compressor."""

from __future__ import annotations

import functools
import json
import os
import time

import torch

from bench.common import COMMIT, OUT, SHARED, config, peer_python, run_peer, save, saved_rows, wikitext_held_out
from bench.sections import section


def protocol_data(tok):
    """The protocol's calibration chunks (32 x 256 tiny-shakespeare tokens) and WikiText-2 windows."""
    from hf_lite.oneshot.apply import calibration_token_chunks
    from hf_lite.oneshot.evaluate import text_windows

    cal = calibration_token_chunks(open(f"{SHARED}/tiny_shakespeare/input.txt").read(), tok, 32, 256)
    windows = text_windows(open(f"{SHARED}/wikitext2_raw/wiki.test.raw", encoding="utf-8").read(), tok, 512, 32)
    return cal, windows


@section()
def section_oneshot_variants() -> None:
    """The one-shot rows `make bench` leaves out (bench/configs/oneshot.yaml `methods` not in `core`)."""
    cfg = config("oneshot")
    section_oneshot([m for m in cfg["methods"] if m not in cfg["core"]])


@section(names=True)
def section_oneshot(methods: list[str] | None = None) -> None:
    """SmolLM2-135M one-shot methods; calibration 32 x 256 tiny-shakespeare tokens, ppl on 32 x 512 WikiText-2 tokens."""
    from hf_lite.core.settings import RecipeError
    from hf_lite.models import load_model, load_tokenizer
    from hf_lite.oneshot import apply_recipe_
    from hf_lite.oneshot.evaluate import generation_sample, perplexity
    from hf_lite.report import model_report

    tok = load_tokenizer("smollm2-135m")
    cal, windows = protocol_data(tok)
    rows = saved_rows("oneshot_smollm2")
    cfg = config("oneshot")
    for name in methods or cfg["core"]:
        spec = cfg["methods"][name]
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
            "commit": COMMIT,  # the peers section reuses a row this code made
        }
        print(f"[bench] {name}: ppl {ppl:.2f}, compress {wall:.1f} s, sparsity {report['sparsity']:.3f}")
        save(
            "oneshot_smollm2",
            {
                "protocol": "BENCH-PROTOCOL causal-LM: calibration tiny_shakespeare 32x256 from token 0; "
                "WikiText-2 test first 16,384 tokens as 32 x 512 windows",
                "rows": rows,
            },
        )


@section(names=True)
def section_gptq_calibration(names: list[str] | None = None) -> None:
    """Is GPTQ int4 g128's gap to dense a calibration question? Our best g128 setting with more Hessian
    dampening, calibrated in-domain (WikiText-2 test text from character 600,000 on, disjoint from the
    evaluated tokens), 32 x 256 and 128 x 512 tokens, and with ``calibration.true_sequential``.
    ``names``: a subset of bench/configs/oneshot.yaml `gptq_calibration` (rows saved before are kept)."""
    from hf_lite.models import load_model, load_tokenizer
    from hf_lite.oneshot import apply_recipe_
    from hf_lite.oneshot.apply import calibration_token_chunks
    from hf_lite.oneshot.evaluate import perplexity

    cfg = config("oneshot")
    tok = load_tokenizer("smollm2-135m")
    _, windows = protocol_data(tok)
    texts = {"shakespeare": open(f"{SHARED}/tiny_shakespeare/input.txt").read(), "held_out": wikitext_held_out()}
    rows = saved_rows("oneshot_gptq_calibration")
    for name in names or cfg["gptq_calibration"]:
        run = cfg["gptq_calibration"][name]
        true_sequential = run.get("true_sequential", False)
        spec = {**cfg["methods"]["gptq_g128_asym_mse_actorder"], "damp": run["damp"]}
        model = load_model("smollm2-135m", "causal-lm")
        recipe = {"modifiers": [spec], "calibration": {"true_sequential": true_sequential}}
        t = time.perf_counter()
        apply_recipe_(model, recipe, calibration_token_chunks(texts[run["text"]], tok, run["samples"], run["seq_len"]))
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


@section()
def section_gptq_true_sequential() -> None:
    """true_sequential next to the same calibration without it, on the same CPU."""
    runs = config("oneshot")["gptq_calibration"]
    section_gptq_calibration([n for n in runs if n.endswith("true_sequential") or n.endswith("_32x256")])


def ablation_calibrations(tok) -> dict:
    from hf_lite.oneshot.apply import calibration_token_chunks

    text = open(f"{SHARED}/tiny_shakespeare/input.txt").read()
    cals = {0: calibration_token_chunks(text, tok, 32, 256)}
    cals.update({s: calibration_token_chunks(text, tok, 32, 256, "random", s) for s in (1, 2)})
    return cals


def peer_ablation_row(row: dict, cal) -> dict | None:
    """llm-compressor's SparseGPT on calibration ``cal`` (None when its venv is absent)."""
    from hf_lite.models import resolve_model_path

    lc_python = peer_python("LC_PYTHON", "lc-venv")
    if not os.path.exists(lc_python):
        print(f"[bench] sparsegpt ablation: {lc_python} is absent (make peers-venv)")
        return None
    seed = row.get("calibration", 0)
    cal_file = os.path.join(OUT, f"calibration_seed{seed}.json")
    os.makedirs(OUT, exist_ok=True)
    json.dump(cal.tolist(), open(cal_file, "w"))
    model_dir = resolve_model_path("smollm2-135m")
    out = run_peer(lc_python, "llmcompressor_oneshot.py", model_dir, SHARED, row["peer"], "", cal_file)
    return {
        "tool": "llmcompressor",
        "calibration_seed": seed,
        "change": {"dampening_frac": 0.1} if "damp" in row["peer"] else {},
        **{k: out.get(k) for k in ("ppl", "compress_s", "sparsity", "error", "loadavg_before")},
    }


def our_ablation_row(base: dict, row: dict, cal, windows) -> dict:
    """Our SparseGPT with the row's algorithm keywords and modifier settings on calibration ``cal``."""
    from unittest import mock

    from hf_lite.models import load_model
    from hf_lite.oneshot import algorithms as alg
    from hf_lite.oneshot import apply_recipe_
    from hf_lite.oneshot.evaluate import perplexity

    keywords, settings = row.get("algorithm", {}), row.get("settings", {})
    true_sequential = row.get("true_sequential", False)
    kw = {k: getattr(torch, v) if k == "dtype" else v for k, v in keywords.items()}
    model = load_model("smollm2-135m", "causal-lm")
    load = os.getloadavg()
    t = time.perf_counter()
    recipe = {"modifiers": [{**base, **settings}], "calibration": {"true_sequential": true_sequential}}
    with mock.patch.object(alg, "sparsegpt_", functools.partial(alg.sparsegpt_, **kw)):
        apply_recipe_(model, recipe, cal)
    wall = time.perf_counter() - t
    change = {**keywords, **settings, **({"true_sequential": True} if true_sequential else {})}
    return {"tool": "hf_lite", "calibration_seed": row.get("calibration", 0), "change": change,
            "ppl": perplexity(model, windows), "compress_s": round(wall, 1), "loadavg_before": load}  # fmt: skip


@section(names=True)
def section_sparsegpt_ablation(names: list[str] | None = None) -> None:
    """SparseGPT 50% on SmolLM2-135M: where does a gap to llm-compressor come from? Ours with one change at a
    time from damp 0.01 (mask rule, mask granularity, precision, dampening, true_sequential) and both tools on two more
    calibration sets (32 x 256 random tiny-shakespeare windows, seeds 1 and 2), WikiText-2 ppl by the
    protocol. Rows already in bench/results/sparsegpt_ablation.json are kept."""
    from hf_lite.models import load_tokenizer

    cfg = config("oneshot")["sparsegpt_ablation"]
    tok = load_tokenizer("smollm2-135m")
    cals = ablation_calibrations(tok)
    _, windows = protocol_data(tok)
    rows = saved_rows("sparsegpt_ablation")
    # the peer's rows next to ours on the same calibration, so a cut-short run still compares
    for name in [n for n in names or cfg["order"] if n not in rows]:
        row = cfg["rows"][name]
        cal = cals[row.get("calibration", 0)]
        result = peer_ablation_row(row, cal) if "peer" in row else our_ablation_row(cfg["base"], row, cal, windows)
        if result is None:
            continue
        rows[name] = result
        print(f"[bench] sparsegpt ablation {name}: {rows[name].get('ppl')}", flush=True)
        save("sparsegpt_ablation", {"protocol": section_sparsegpt_ablation.__doc__, "rows": rows})
