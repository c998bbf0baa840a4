"""ONNX export of encoder classifiers: fp32 and dynamic int8 graphs run by onnxruntime."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch
from conftest import tiny_bert

from hf_lite.cli import main
from hf_lite.core.recipe import load_recipe
from hf_lite.core.settings import RecipeError

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def _run(tmp_path, tiny_bert_dir, tiny_tsv, modifiers: str, formats: str = "[safetensors, onnx]"):
    out = tmp_path / "out"
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"model: {{name_or_path: {tiny_bert_dir}}}\n"
        f"data: {{train: {tiny_tsv}, eval: {tiny_tsv}, text_column: text, label_column: target, max_length: 16}}\n"
        "training: {max_steps: 4, per_device_train_batch_size: 8, learning_rate: 1.0e-3}\n"
        f"modifiers: {modifiers}\nexport: {{output_dir: {out}, formats: {formats}}}\n"
    )
    assert main(["run", str(recipe)]) == 0
    return out


def _logits(path: str, tok, texts):
    import onnxruntime as ort

    enc = tok(texts, padding=True, return_tensors="np")
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    feed = {i.name: enc[i.name].astype(np.int64) for i in session.get_inputs()}
    return session.run(["logits"], feed)[0]


def test_pruned_classifier_to_onnx_keeps_zeros_and_logits(tmp_path, tiny_bert_dir, tiny_tsv, capsys):
    import onnx
    from onnx import numpy_helper
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = _run(tmp_path, tiny_bert_dir, tiny_tsv, "[{type: magnitude_pruning, final_sparsity: 0.5, end: 2}]")
    onnx_dir = out / "onnx"
    assert {"model.onnx", "model_int8.onnx", "config.json", "tokenizer.json"} <= set(os.listdir(onnx_dir))
    report = json.loads((out / "report.json").read_text())
    assert report["formats"]["onnx_int8"]["size_bytes"] < report["formats"]["onnx_fp32"]["size_bytes"]
    # the run measures what it deployed: accuracy of each engine on the eval rows, latency, sizes
    deployed = report["deployment"]["onnx"]
    assert report["timings_s"]["deploy_check_s"] > 0  # the check's own time is reported
    assert set(deployed["accuracy"]) == {"torch_fp32", "onnx_fp32", "onnx_int8"}
    assert deployed["accuracy"]["onnx_fp32"] == deployed["accuracy"]["torch_fp32"]
    assert deployed["size_bytes"]["onnx_int8"] == report["formats"]["onnx_int8"]["size_bytes"]
    assert all(v > 0 for v in deployed["latency_ms"].values()) and deployed["input"].startswith("batch 1 x 16")
    assert "onnx int8 in onnxruntime: accuracy" in capsys.readouterr().out
    card = (out / "README.md").read_text()  # the card says how to run the graphs, and what was measured
    assert 'disabled_optimizers=["SkipLayerNormFusion"]' in card.replace("'", '"') and "Measured: onnx int8" in card
    tok = AutoTokenizer.from_pretrained(onnx_dir)
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    texts = ["good movie", "the plot was very boring and the acting was weak"]
    with torch.no_grad():
        want = model(**tok(texts, padding=True, return_tensors="pt")).logits.numpy()
    assert np.abs(_logits(str(onnx_dir / "model.onnx"), tok, texts) - want).max() < 1e-4
    assert np.abs(_logits(str(onnx_dir / "model_int8.onnx"), tok, texts) - want).max() < 0.05
    # the pruned zeros: fp32 initializers keep them, and the int8 codes of zero weights are 0
    zeros = {n: (p == 0).float().mean().item() for n, p in model.named_parameters() if "encoder" in n and p.dim() == 2}
    assert min(zeros.values()) > 0.3
    int8_graph = onnx.load(str(onnx_dir / "model_int8.onnx"))
    inits = [numpy_helper.to_array(t) for t in int8_graph.graph.initializer]
    int8 = [a for a in inits if a.dtype == np.int8 and a.ndim == 2]
    assert int8 and sum((a == 0).sum() for a in int8) / sum(a.size for a in int8) > 0.3


def test_onnx_is_refused_for_a_causal_lm_before_training():
    with pytest.raises(RecipeError, match="onnx is written for sequence classifiers"):
        load_recipe({"model": {"task": "causal-lm"}, "export": {"formats": ["safetensors", "onnx"]}})


def test_hf_lite_export_onnx_for_a_written_folder(tmp_path, tiny_bert_dir, capsys):
    folder = str(tmp_path / "plain")
    tiny_bert().save_pretrained(folder)
    from conftest import make_tokenizer

    make_tokenizer(folder)
    assert main(["export", folder, "--format", "onnx"]) == 0
    assert "model_int8.onnx" in capsys.readouterr().out
    assert os.path.isfile(os.path.join(folder, "onnx", "model.onnx"))
    assert main(["export", folder, "--format", "onnx"]) == 2  # not over an existing one


def test_hf_lite_export_of_a_finished_run_adds_the_format_to_its_card(tmp_path, tiny_bert_dir, tiny_tsv, capsys):
    out = _run(tmp_path, tiny_bert_dir, tiny_tsv, "[]", formats="[safetensors]")
    assert "## Other formats" not in (out / "README.md").read_text()
    assert main(["export", str(out), "--format", "onnx"]) == 0
    assert "added onnx to" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["formats"]["onnx_int8"]["path"] == "onnx/model_int8.onnx" and "safetensors" in report["formats"]
    card = (out / "README.md").read_text()
    assert "**ONNX**" in card and "## Metrics" in card  # the rest of the card is rewritten from the report
    elsewhere = tmp_path / "elsewhere"  # written outside the folder: its card does not point there
    assert main(["export", str(out), "--format", "onnx", "--out", str(elsewhere)]) == 0
    assert json.loads((out / "report.json").read_text()) == report
    # a broken run record is refused before anything is written
    (out / "report.json").write_text("{not json")
    shutil.rmtree(out / "onnx")
    assert main(["export", str(out), "--format", "onnx"]) == 2
    assert not (out / "onnx").exists()


def test_sessions_keep_residual_adds_apart_from_layer_norms(tmp_path, tiny_bert_dir):
    """onnxruntime's SkipLayerNormalization is slower on CPU than Add + LayerNormalization: the export leaves
    them apart, and :func:`session` keeps onnxruntime from fusing them at load (it ignores unknown optimizer
    names, so the fusion's name is checked on the graph onnxruntime actually runs)."""
    import onnx
    import onnxruntime as ort

    from hf_lite.deploy.onnx import DISABLED_FUSIONS, export_onnx, session

    paths = export_onnx(tiny_bert_dir, str(tmp_path / "onnx"))
    for kind, path in paths.items():
        ops = {n.op_type for n in onnx.load(path).graph.node}
        assert "LayerNormalization" in ops and "SkipLayerNormalization" not in ops, kind
        assert "Attention" in ops or "QAttention" in ops, kind  # the fusion that makes it fast is still there
        ran = {}
        for disabled in ([], list(DISABLED_FUSIONS)):
            options = ort.SessionOptions()
            options.optimized_model_filepath = str(tmp_path / f"{kind}_{len(disabled)}.onnx")
            ort.InferenceSession(path, options, providers=["CPUExecutionProvider"], disabled_optimizers=disabled)
            ran[len(disabled)] = {n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node}
        assert "SkipLayerNormalization" in ran[0] and "SkipLayerNormalization" not in ran[len(DISABLED_FUSIONS)]
        assert session(path, threads=1).get_inputs()
