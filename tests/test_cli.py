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


def test_push_calls_the_hub_api_at_the_network_boundary(tmp_path, tiny_bert_dir, tiny_tsv, monkeypatch, capsys):
    """No network: HfApi is replaced by a recorder; create_repo and upload_folder get what a user asked for."""
    import huggingface_hub

    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, private=False, exist_ok=False):
            calls.append(("create_repo", repo_id, private, exist_ok))

        def upload_folder(self, folder_path, repo_id, commit_message, ignore_patterns):
            calls.append(("upload_folder", folder_path, repo_id, commit_message, tuple(ignore_patterns)))
            return f"https://huggingface.co/{repo_id}/commit/abc"

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    assert main(["run", recipe_for(tmp_path, tiny_bert_dir, tiny_tsv)]) == 0
    out = str(tmp_path / "out")
    assert main(["push", out, "--repo-id", "me/tiny-sparse", "--private"]) == 0
    assert ("create_repo", "me/tiny-sparse", True, True) in calls
    upload = next(c for c in calls if c[0] == "upload_folder")
    assert upload[1:3] == (out, "me/tiny-sparse") and "magnitude_pruning" in upload[3]
    assert "commit/abc" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="no config.json"):
        from hf_lite.hub import push_folder

        push_folder(str(tmp_path), "me/empty")
