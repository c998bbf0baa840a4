"""examples/: each script runs on tiny data in a subprocess with a recipe, and what it saves reloads with
plain transformers showing the compression."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO, WORDS, make_tokenizer, run_fresh, sentiment_rows, tiny_bert, tiny_llama

EXAMPLES = os.path.join(REPO, "examples")
COMMON = ["--max_steps", "3", "--per_device_train_batch_size", "4", "--use_cpu", "--report_to", "none",
          "--save_strategy", "no", "--disable_tqdm", "true", "--learning_rate", "1e-3"]  # fmt: skip


def run_example(script: str, *args: str) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": REPO}
    cmd = [sys.executable, os.path.join(EXAMPLES, script), *args, *COMMON]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]


def sparsity_in_fresh_process(auto_class: str, folder: str, layer_filter: str) -> float:
    code = (
        f"import json, transformers; m = transformers.{auto_class}.from_pretrained({folder!r});"
        f"ws = [p for n, p in m.named_parameters() if {layer_filter!r} in n and p.dim() == 2];"
        "print(json.dumps({'s': float(sum((w == 0).sum() for w in ws) / sum(w.numel() for w in ws))}))"
    )
    return run_fresh(code)["s"]


def test_text_classification_with_string_labels(tmp_path):
    model_dir = str(tmp_path / "bert")
    tiny_bert().save_pretrained(model_dir)
    make_tokenizer(model_dir)
    train = tmp_path / "train.jsonl"
    with open(train, "w") as f:
        for text, y in sentiment_rows(32):
            f.write(json.dumps({"sentence": text, "label": "positive" if y else "negative"}) + "\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "modifiers:\n  - {type: magnitude_pruning, final_sparsity: 0.5, start: 0, end: 1, update_every: 1}\n"
    )
    out = str(tmp_path / "out")
    run_example("text_classification.py", "--model_name_or_path", model_dir, "--train_file", str(train),
                "--recipe", str(recipe), "--output_dir", out, "--do_train")  # fmt: skip
    assert sparsity_in_fresh_process("AutoModelForSequenceClassification", out, "encoder.layer") == pytest.approx(0.5)
    assert json.loads(open(os.path.join(out, "config.json")).read())["id2label"] == {"0": "negative", "1": "positive"}


def test_language_modeling_one_shot_then_recovery(tmp_path):
    model_dir = str(tmp_path / "llama")
    tiny_llama().save_pretrained(model_dir)
    make_tokenizer(model_dir)
    text = tmp_path / "text.txt"
    g = torch.Generator().manual_seed(0)
    text.write_text(
        "\n".join(" ".join(WORDS[int(i)] for i in torch.randint(0, len(WORDS), (40,), generator=g)) for _ in range(40))
    )
    recipe = tmp_path / "r.yaml"
    recipe.write_text("modifiers:\n  - {type: wanda, sparsity: 0.5}\n")
    out = str(tmp_path / "out")
    run_example("language_modeling.py", "--model_name_or_path", model_dir, "--train_file", str(text),
                "--block_size", "16", "--recipe", str(recipe), "--output_dir", out, "--do_train")  # fmt: skip
    assert sparsity_in_fresh_process("AutoModelForCausalLM", out, "layers.") == pytest.approx(0.5)


def test_summarization_with_qat(tmp_path):
    from transformers import T5Config, T5ForConditionalGeneration

    model_dir = str(tmp_path / "t5")
    torch.manual_seed(0)
    T5ForConditionalGeneration(
        T5Config(
            vocab_size=len(WORDS) + 5,
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            decoder_start_token_id=0,
            pad_token_id=0,
            eos_token_id=3,
        )  # fmt: skip
    ).save_pretrained(model_dir)
    make_tokenizer(model_dir)
    train = tmp_path / "train.jsonl"
    with open(train, "w") as f:
        for i, (text, _) in enumerate(sentiment_rows(24)):
            f.write(json.dumps({"context": text, "response": " ".join(text.split()[: 1 + i % 3])}) + "\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "modifiers:\n  - {type: magnitude_pruning, final_sparsity: 0.5, start: 0, end: 1, update_every: 1}\n"
    )
    out = str(tmp_path / "out")
    run_example("summarization.py", "--model_name_or_path", model_dir, "--train_file", str(train),
                "--recipe", str(recipe), "--output_dir", out, "--do_train", "--source_prefix", "")  # fmt: skip
    assert sparsity_in_fresh_process("AutoModelForSeq2SeqLM", out, "block.") == pytest.approx(0.5, abs=0.01)


def test_sft_chat_with_distillation_and_a_half_depth_student(tmp_path):
    pytest.importorskip("trl")
    model_dir = str(tmp_path / "llama")
    tiny_llama(layers=2).save_pretrained(model_dir)
    tok = make_tokenizer(model_dir)
    tok.chat_template = "{% for m in messages %}{{ m['role'] }} {{ m['content'] }} {% endfor %}"
    tok.eos_token = "[SEP]"
    tok.save_pretrained(model_dir)
    train = tmp_path / "chat.jsonl"
    with open(train, "w") as f:
        for text, y in sentiment_rows(24):
            f.write(json.dumps({"prompt": [{"role": "user", "content": text}],
                                "completion": [{"role": "assistant", "content": "good" if y else "bad"}]}) + "\n")  # fmt: skip
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "model: {init_from_teacher: {layers: [1]}}\nteacher: {name_or_path: llama}\n"
        "modifiers:\n  - {type: distillation, alpha: 0.5}\n"
    )  # the teacher path is read from the recipe's folder
    out = str(tmp_path / "out")
    run_example("sft_chat.py", "--model_name_or_path", model_dir, "--train_file", str(train),
                "--recipe", str(recipe), "--output_dir", out, "--bf16", "false",
                "--validation_file", str(train), "--generation_max_new_tokens", "2")  # fmt: skip
    assert json.loads(open(os.path.join(out, "config.json")).read())["num_hidden_layers"] == 1
    scores = json.loads(open(os.path.join(out, "eval_results.json")).read())
    assert {"eval_rouge1", "eval_rougeL", "eval_generate_tokens_per_s"} <= set(scores)
