"""Nothing lost: a failed --overwrite run leaves the previous folder byte-identical, a run killed during
export leaves no finished-looking folder, and a SIGKILLed run resumes to the same weights."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO, make_tokenizer, sentiment_rows, tiny_bert

from hf_lite.cli import main


def tree_hash(folder) -> dict[str, str]:
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            path = os.path.join(root, f)
            out[os.path.relpath(path, folder)] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return out


def write_recipe(tmp_path, model_dir, tsv, out, modifiers, training="max_steps: 6", teacher=None, name="recipe.yaml"):
    path = tmp_path / name
    path.write_text(
        f"model: {{name_or_path: {model_dir}}}\n"
        + (f"teacher: {{name_or_path: {teacher}}}\n" if teacher else "")
        + f"data: {{train: {tsv}, eval: {tsv}, text_column: text, label_column: target, max_length: 16}}\n"
        f"training: {{{training}, per_device_train_batch_size: 8, learning_rate: 1e-3, seed: 0}}\n"
        f"modifiers: {modifiers}\nexport: {{output_dir: {out}}}\n"
    )
    return str(path)


PRUNE = "[{type: magnitude_pruning, final_sparsity: 0.5, start: 0, end: 0.5, update_every: 10}]"


def test_a_failing_overwrite_keeps_the_previous_model(tmp_path, tiny_bert_dir, tiny_tsv, monkeypatch, capsys):
    import hf_lite.api

    out = tmp_path / "out"
    recipe = write_recipe(tmp_path, tiny_bert_dir, tiny_tsv, out, PRUNE)
    assert main(["run", recipe]) == 0
    before = tree_hash(out)

    def interrupted(self):
        os.makedirs(self.stage, exist_ok=True)
        open(os.path.join(self.stage, "model.safetensors"), "wb").write(b"half")
        raise KeyboardInterrupt  # Ctrl-C (or a kill) in the middle of writing the new model

    monkeypatch.setattr(hf_lite.api._Run, "export", interrupted)
    assert main(["run", recipe, "--overwrite"]) == 130
    assert tree_hash(out) == before
    assert "--resume" in capsys.readouterr().err
    # a bad value found only when the run starts: the same
    monkeypatch.undo()
    assert main(["run", recipe, "--overwrite", "--set", "training.per_device_train_batch_size=0"]) == 2
    assert tree_hash(out) == before


def test_a_run_killed_during_export_leaves_no_finished_looking_folder(tmp_path, tiny_bert_dir, tiny_tsv, monkeypatch):
    import hf_lite.core.session

    out = tmp_path / "fresh"
    recipe = write_recipe(tmp_path, tiny_bert_dir, tiny_tsv, out, PRUNE)
    real = hf_lite.core.session.CompressionSession.export

    def dies_midway(self, model, folder, *a, **k):
        real(self, model, folder, *a, **k)
        raise SystemExit(137)  # the process ends after the weights, before report.json and the card

    monkeypatch.setattr(hf_lite.core.session.CompressionSession, "export", dies_midway)
    with pytest.raises(SystemExit):
        main(["run", recipe])
    assert not out.exists()
    # the partial run waits in a hidden work folder, and the next run says how to continue it
    monkeypatch.undo()
    assert main(["run", recipe]) == 2
    assert main(["run", recipe, "--resume"]) == 0
    assert {"config.json", "model.safetensors", "report.json", "README.md"} <= set(os.listdir(out))
    assert not any(".hf_lite-run" in f for f in os.listdir(tmp_path))


def test_size_on_disk_counts_the_model_files_only(tmp_path, tiny_bert_dir, tiny_tsv):
    import json

    out = tmp_path / "out"
    recipe = write_recipe(tmp_path, tiny_bert_dir, tiny_tsv, out, "[{type: lora, r: 2}]")
    assert main(["run", recipe]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["compression"]["size_on_disk_bytes"] == os.path.getsize(out / "model.safetensors")
    assert (out / "adapter").is_dir()  # written, not counted: the merged model is the export


def test_export_checkpoints_in_the_cli_are_kept_next_to_the_model(tmp_path, tiny_bert_dir, tiny_tsv):
    import json

    out = tmp_path / "out"
    recipe = write_recipe(tmp_path, tiny_bert_dir, tiny_tsv, out, "[{type: qat, bits: 8}]")
    assert main(["run", recipe, "--set", "export.checkpoints=true"]) == 0
    exports = sorted((out / "checkpoints").glob("checkpoint-*/export/model.safetensors"))
    assert exports, "each kept checkpoint holds its deployable export"
    report = json.loads((out / "report.json").read_text())
    # the weights plus the int grid written next to them; checkpoints are not counted
    weights = sum(os.path.getsize(f) for f in out.glob("*.safetensors"))
    assert {f.name for f in out.glob("*.safetensors")} == {"model.safetensors", "quantization_grid.safetensors"}
    assert report["compression"]["size_on_disk_bytes"] == weights


def test_published_recipe_has_no_absolute_paths(tmp_path, tiny_bert_dir, tiny_tsv):
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path, tiny_bert_dir, tiny_tsv, out, PRUNE)
    assert main(["run", recipe]) == 0
    for name in ("recipe.yaml", "README.md"):  # the card quotes the recipe too
        text = (out / name).read_text()
        assert str(tmp_path) not in text and "shortened" in text, name


# -- kill and resume -------------------------------------------------------------------------------
STEPS = 240


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    for name, seed in (("student", 0), ("teacher", 1)):
        tiny_bert(seed=seed, dropout=0.0).save_pretrained(str(root / name))
        make_tokenizer(str(root / name))
    tsv = root / "data.tsv"
    tsv.write_text("text\ttarget\n" + "".join(f"{t}\t{y}\n" for t, y in sentiment_rows(64)))
    return root


def cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": REPO}
    return subprocess.Popen([sys.executable, "-m", "hf_lite.cli", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def weights(folder) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(os.path.join(folder, "model.safetensors"))


FAMILIES = {
    "pruning": PRUNE,
    "qat": "[{type: qat, bits: 8, start: 0.1}]",
    "kd": "[{type: distillation, alpha: 0.5, temperature: 2.0}]",
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path, assets, family):
    teacher = str(assets / "teacher") if family == "kd" else None
    training = f"max_steps: {STEPS}, save_steps: 20"
    args = (tmp_path, str(assets / "student"), str(assets / "data.tsv"))
    straight = write_recipe(*args, tmp_path / "straight", FAMILIES[family], training, teacher, "straight.yaml")
    killed_out = tmp_path / "killed"
    killed = write_recipe(*args, killed_out, FAMILIES[family], training, teacher, "killed.yaml")
    reference = cli("run", straight)

    run = cli("run", killed)
    second = tmp_path / ".killed.hf_lite-run" / "checkpoints" / "checkpoint-40" / "hf_lite_state.safetensors"
    deadline = time.time() + 240
    while not second.exists() and run.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert second.exists() and not killed_out.exists(), "killed after its 2nd checkpoint, before the end"

    resumed = cli("run", killed, "--resume")
    assert resumed.wait() == 0, resumed.stderr.read()[-3000:]
    assert reference.wait() == 0, reference.stderr.read()[-3000:]
    a, b = weights(tmp_path / "straight"), weights(killed_out)
    assert a.keys() == b.keys()
    diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert diff <= 1e-6, diff


@pytest.mark.distributed
def test_cli_under_torchrun_writes_the_model_once(tmp_path, assets):
    """`hf-lite run` started by torchrun on 2 processes: rank 0 sets up and publishes, every rank trains;
    the folder is complete, matches one process on the same global batch, and no work folder is left."""
    args = (tmp_path, str(assets / "student"), str(assets / "data.tsv"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}
    for name, nproc, bs in (("ddp", 2, 4), ("single", 1, 8)):
        recipe = write_recipe(*args, tmp_path / name, PRUNE, "max_steps: 6", name=f"{name}.yaml")
        recipe_text = (
            open(recipe).read().replace("per_device_train_batch_size: 8", f"per_device_train_batch_size: {bs}")
        )
        # no eval set: an evaluation before training changes the DDP data order (accelerate), not ours to test
        recipe_text = recipe_text.replace(f", eval: {assets / 'data.tsv'}", "")
        open(recipe, "w").write(recipe_text)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
               "-m", "hf_lite.cli", "run", recipe]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        errors = [line for line in proc.stderr.splitlines() if "hf-lite: error" in line]  # a rank's one-line error
        assert proc.returncode == 0, "\n".join(errors) + "\n" + proc.stderr[-3000:]
        assert not (tmp_path / f".{name}.hf_lite-run").exists()
        report = json.load(open(tmp_path / name / "report.json"))
        assert report["compression"]["sparsity"] == pytest.approx(0.5, abs=0.01) and report["metrics"]["train"]
    a, b = weights(tmp_path / "ddp"), weights(tmp_path / "single")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-5
