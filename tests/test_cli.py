"""`hf-lite run/validate/report` end to end on a tiny local model and a TSV with other column names."""

import json
import os

import pytest
from conftest import run_fresh

from hf_lite.cli import main


def recipe_for(tmp_path, model_dir, tsv, **export):
    text = f"""
version: 1
model: {{name_or_path: {model_dir}, task: sequence-classification, num_labels: 2}}
data: {{train: {tsv}, eval: {tsv}, text_column: text, label_column: target, max_length: 16}}
training: {{max_steps: 6, per_device_train_batch_size: 8, learning_rate: 1.0e-3, logging_steps: 2}}
modifiers:
  - {{type: magnitude_pruning, final_sparsity: 0.5, start: 0, end: 3, update_every: 1}}
export: {{output_dir: {tmp_path / "out"}}}
"""
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return str(path)


def test_run_writes_a_folder_plain_transformers_loads(tmp_path, tiny_bert_dir, tiny_tsv, capsys):
    recipe = recipe_for(tmp_path, tiny_bert_dir, tiny_tsv)
    assert main(["run", recipe]) == 0
    out = tmp_path / "out"
    printed = capsys.readouterr().out
    assert f"model written to {out}" in printed
    files = set(os.listdir(out))
    assert {"config.json", "model.safetensors", "recipe.yaml", "report.json", "README.md", "tokenizer.json"} <= files
    assert not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)
    report = json.loads((out / "report.json").read_text())
    assert report["compression"]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert "before_accuracy" in report["metrics"]["before"] and "after_accuracy" in report["metrics"]["after"]
    card = (out / "README.md").read_text()
    assert "AutoModelForSequenceClassification.from_pretrained" in card and "magnitude_pruning" in card
    got = run_fresh(
        "import json; from transformers import AutoModelForSequenceClassification as A\n"
        f"m = A.from_pretrained({str(out)!r}); print(json.dumps({{'labels': m.config.num_labels}}))"
    )
    assert got == {"labels": 2, "hf_lite_imported": False}

    # nothing already written is overwritten without asking
    assert main(["run", recipe]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["report", str(out)]) == 0
    assert "sparsity (block linears): 50.00%" in capsys.readouterr().out


def test_validate_and_one_line_errors(tmp_path, tiny_bert_dir, tiny_tsv, capsys):
    recipe = recipe_for(tmp_path, tiny_bert_dir, tiny_tsv)
    assert main(["validate", recipe]) == 0
    assert "ok:" in capsys.readouterr().out
    assert main(["validate", recipe, "--set", "modifiers.0.final_sparsity=1.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "final_sparsity: got 1.5" in err


def test_wrong_column_names_fail_before_training(tmp_path, tiny_bert_dir, tiny_tsv, capsys):
    recipe = recipe_for(tmp_path, tiny_bert_dir, tiny_tsv)
    assert main(["run", recipe, "--set", "data.text_column=sentence"]) == 2
    assert "column(s) ['sentence'] not found" in capsys.readouterr().err


def test_dynamic_int8_card_shows_the_load_time_transform(tmp_path, tiny_bert_dir, tiny_tsv):
    recipe = recipe_for(tmp_path, tiny_bert_dir, tiny_tsv)
    out = tmp_path / "int8"
    args = ["run", recipe, "--output-dir", str(out), "--set", "modifiers=[{type: ptq, method: dynamic_int8}]"]
    assert main(args) == 0
    card = (out / "README.md").read_text()
    assert "quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)" in card
