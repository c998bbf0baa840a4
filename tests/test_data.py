"""Data as users have it: string labels, bad files and bad values give one clear error naming the file
and line before any model loads or any training step starts."""

from __future__ import annotations

import json

import pytest
from conftest import run_fresh, sentiment_rows

from hf_lite.cli import main
from hf_lite.core.recipe import DataSettings, ModelSettings
from hf_lite.core.settings import DataError
from hf_lite.data import read_classification

EMOTIONS = ["sadness", "joy", "love", "anger", "fear", "surprise"]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def emotion_rows(n=48):
    return [{"text": text, "label": EMOTIONS[i % 6]} for i, (text, _) in enumerate(sentiment_rows(n))]


def read(path, model=None, **data):
    settings = DataSettings(train=str(path), text_column=data.pop("text_column", "text"), **data)
    return read_classification(settings, ModelSettings(**(model or {})))


def test_string_labels_map_to_sorted_ids(tmp_path):
    _, _, labels = read(write_jsonl(tmp_path / "emo.jsonl", emotion_rows()))
    assert labels.names == sorted(EMOTIONS) and labels.num_labels == 6
    assert labels.config()["id2label"][0] == "anger"


def test_data_labels_fix_the_order_and_catch_typos(tmp_path):
    path = write_jsonl(tmp_path / "emo.jsonl", emotion_rows())
    _, _, labels = read(path, labels=EMOTIONS)
    assert labels.names == EMOTIONS
    with pytest.raises(DataError, match=r"emo.jsonl, line 6: label 'surprise' is not one of data.labels"):
        read(path, labels=EMOTIONS[:5] + ["suprise"])


BAD = {
    "empty.tsv": ("", "is empty"),
    "header_only.tsv": ("text\tlabel\n", "no rows (only a header line)"),
    "truncated.jsonl": ('{"text": "good", "label": 1}\n{"text": "bad", "lab\n', "line 2 is not valid JSON"),
    "latin1.tsv": (b"text\tlabel\ngood\t1\ncaf\xe9\t0\n", "line 3 is not UTF-8 text"),
    "no_label.jsonl": ('{"text": "good", "label": 1}\n{"text": "bad", "label": null}\n', "line 2 has no label"),
    "no_text.tsv": ("text\tlabel\ngood\t1\n\t0\n", "line 3 has no text"),
    "too_many.tsv": ("text\tlabel\ngood\t1\nbad\t5\n", "line 3: label 5 is out of range for 2 classes"),
    "mixed.jsonl": ('{"text": "a", "label": 1}\n{"text": "b", "label": "joy"}\n', "line 2: label 'joy' mixes"),
    "one_class.tsv": ("text\tlabel\ngood\tpos\nbad\tpos\n", "two or more classes"),
    "floats.jsonl": ('{"text": "a", "label": 0.5}\n{"text": "b", "label": 1}\n', "problem_type: regression"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_files_are_one_line_errors_naming_file_and_line(tmp_path, name):
    content, message = BAD[name]
    path = tmp_path / name
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    model = {"num_labels": 2} if name == "too_many.tsv" else {}
    with pytest.raises(DataError) as err:
        read(path, model=model)
    text = str(err.value)
    assert message in text and name in text and "\n" not in text, text


def test_regression_only_when_asked(tmp_path):
    path = write_jsonl(tmp_path / "scores.jsonl", [{"text": "good", "label": 0.7}, {"text": "bad", "label": 0.1}])
    _, _, labels = read(path, model={"problem_type": "regression"})
    assert labels.regression and labels.config() == {"num_labels": 1, "problem_type": "regression"}
    with pytest.raises(Exception, match="problem_type: regression"):
        ModelSettings(num_labels=1)


def recipe(tmp_path, model_dir, train, **extra):
    text = f"""
model: {{name_or_path: {model_dir}}}
data: {{train: {train}, eval: {train}, text_column: text, max_length: 16}}
training: {{max_steps: 4, per_device_train_batch_size: 8, learning_rate: 1e-3}}
modifiers:
  - {{type: magnitude_pruning, final_sparsity: 0.5, start: 0, end: 2, update_every: 1}}
export: {{output_dir: {tmp_path / "out"}}}
"""
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return str(path)


def test_string_label_file_trains_and_the_config_names_the_classes(tmp_path, tiny_bert_dir, capsys):
    train = write_jsonl(tmp_path / "emo.jsonl", emotion_rows())
    assert main(["run", recipe(tmp_path, tiny_bert_dir, train)]) == 0
    out = tmp_path / "out"
    report = json.loads((out / "report.json").read_text())
    assert report["labels"] == sorted(EMOTIONS) and "after_accuracy" in report["metrics"]["after"]
    got = run_fresh(
        "import json; from transformers import AutoConfig\n"
        f"c = AutoConfig.from_pretrained({str(out)!r}); print(json.dumps({{'labels': c.id2label}}))"
    )
    assert got["labels"] == {str(i): n for i, n in enumerate(sorted(EMOTIONS))}


def test_bad_data_stops_the_cli_before_the_model_loads(tmp_path, tiny_bert_dir, capsys, monkeypatch):
    import hf_lite.api

    def no_model(*a, **k):
        raise AssertionError("the model was loaded before the data was checked")

    monkeypatch.setattr(hf_lite.api, "_build_model", no_model)
    bad = tmp_path / "bad.tsv"
    bad.write_text("text\tlabel\ngood\t1\nbad\t\n")
    assert main(["run", recipe(tmp_path, tiny_bert_dir, str(bad))]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after datasets' progress bars
    assert err.startswith("hf-lite: error: data.train:") and "bad.tsv, line 3 has no label" in err
    assert not (tmp_path / "out").exists()
