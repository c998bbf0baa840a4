"""Integration: the real offline models on ../shared/data, kept small (skipped when either is absent)."""

from __future__ import annotations

import os

import pytest
import torch
from conftest import REPO, run_fresh, shared_data

pytestmark = pytest.mark.integration


def real_model(alias: str) -> str:
    from hf_lite.models import resolve_model_path

    try:
        return resolve_model_path(alias)
    except FileNotFoundError as e:
        pytest.skip(str(e))


def test_smollm2_gptq_recipe_exports_a_grid_model_that_reloads_without_hf_lite(tmp_path):
    from hf_lite import run_recipe

    real_model("smollm2-135m")
    shared_data("wikitext2_raw", "wiki.test.raw")
    shared_data("tiny_shakespeare", "input.txt")
    os.chdir(REPO)  # the recipe's data paths are relative to the repository
    out = str(tmp_path / "gptq")
    report = run_recipe(
        "recipes/oneshot_gptq_int4_g64.yaml",
        output_dir=out,
        overrides=["calibration.samples=4", "calibration.seq_len=64", "data.max_eval_samples=1", "data.max_length=128"],
    )
    before = report["metrics"]["before"]["before_perplexity"]
    after = report["metrics"]["after"]["after_perplexity"]
    assert report["compression"]["bits"] == 4
    assert after < 1.5 * before  # int4 g64 GPTQ stays close to dense even on a tiny calibration set
    assert os.path.exists(os.path.join(out, "quantization_grid.safetensors"))
    assert report["generation_sample"]["greedy"]
    got = run_fresh(
        f"""
import json, torch
from transformers import AutoModelForCausalLM
m = AutoModelForCausalLM.from_pretrained({out!r}).eval()
with torch.no_grad():
    print(json.dumps({{"logits": m(torch.arange(100, 116)[None]).logits[0, -1, :50].tolist()}}))
"""
    )
    assert not got["hf_lite_imported"]
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        expected = model(torch.arange(100, 116)[None]).logits[0, -1, :50]
    assert torch.allclose(torch.tensor(got["logits"]), expected, atol=1e-4)


def minilm_sst2_run(tmp_path, modifiers: list[dict], steps: int, rows: int):
    """MiniLM-L6 on the first ``rows`` SST-2 rows for ``steps`` steps with ``modifiers`` through
    ``run_recipe``: (report, the exported model reloaded with plain transformers)."""
    from transformers import AutoModelForSequenceClassification

    from hf_lite import run_recipe

    real_model("minilm-l6")
    sst2 = shared_data("sst2")
    recipe = {
        "model": {"name_or_path": "minilm-l6", "num_labels": 2},
        "data": {
            "train": f"{sst2}/train.tsv",
            "eval": f"{sst2}/test.tsv",
            "max_length": 32,
            "max_train_samples": rows,
            "max_eval_samples": 32,
        },  # fmt: skip
        "training": {"max_steps": steps, "per_device_train_batch_size": 16, "learning_rate": 5e-5},
        "modifiers": modifiers,
        "export": {"output_dir": str(tmp_path / "out")},
    }
    report = run_recipe(recipe)
    assert 0.0 <= report["metrics"]["after"]["after_accuracy"] <= 1.0
    return report, AutoModelForSequenceClassification.from_pretrained(tmp_path / "out")


def test_minilm_structured_pruning_on_sst2_gives_a_smaller_model(tmp_path):
    pruning = {"type": "structured_pruning", "ffn": 0.5, "heads": 0.25, "start": 0, "end": 2, "update_every": 1}
    report, model = minilm_sst2_run(tmp_path, [pruning], steps=4, rows=64)
    assert model.config.intermediate_size == 768  # 1536 -> 768 in every block
    assert report["compression"]["parameters"] < 19_200_000  # 22.7M dense; 6 x 768 x (384 + 384 + 1) removed


def test_minilm_block_drop_on_sst2_exports_the_kept_blocks(tmp_path):
    drop = {"type": "block_drop", "keep": 3, "start": 2, "end": 4}
    report, model = minilm_sst2_run(tmp_path, [drop], steps=6, rows=96)
    kept = model.config.hf_lite_block_drop["kept"]
    assert model.config.num_hidden_layers == len(model.bert.encoder.layer) == 3 and len(kept) == 3
    assert report["compression"]["parameters"] < 17_500_000  # 22.7M with 6 blocks of 1.8M each


def test_smollm2_samsum_chat_recipe_trains_the_summary_tokens_and_scores_rouge(tmp_path):
    import json

    from hf_lite import run_recipe
    from hf_lite.chat import read_chat_rows, tokenize_conversation
    from hf_lite.core.recipe import load_recipe
    from hf_lite.models import load_tokenizer

    real_model("smollm2-135m")
    shared_data("samsum", "validation.jsonl")
    os.chdir(REPO)
    recipe = load_recipe("recipes/samsum_sft.yaml", ["data.max_train_samples=2"])
    tok = load_tokenizer("smollm2-135m")
    conv = read_chat_rows(recipe.data)[0][0]
    row = tokenize_conversation(tok, conv)
    trained = tok.decode([t for t in row["labels"] if t != -100])
    assert trained == conv[-1]["content"] + "<|im_end|>"  # the summary and the end of the turn, nothing else
    report = run_recipe(
        "recipes/samsum_sft.yaml",
        output_dir=str(tmp_path / "sft"),
        overrides=[
            "data.max_train_samples=4",
            "data.max_eval_samples=2",
            "generation.max_samples=2",
            "generation.max_new_tokens=8",
            "generation.prompts=[]",
            "training.max_steps=1",
            "training.per_device_train_batch_size=2",
        ],
    )
    after = report["metrics"]["after"]
    assert 0 < after["after_rougeL"] <= 1 and after["after_perplexity"] < 50
    assert (
        report["generation"]["samples"][0]["reference"]
        == json.loads(open("../shared/data/samsum/test.jsonl").readline())["response"]
    )
