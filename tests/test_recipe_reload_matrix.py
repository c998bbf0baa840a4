"""The reload guarantee: every recipe in recipes/ runs on a tiny model, exports, and the folder reloads in
a fresh process that does not import hf_lite, with the same logits and sparsity.

Tolerances: 1e-5 for plain folders; bitsandbytes 4/8-bit folders 5e-2 (bitsandbytes' CPU kernels are
not bit-exact with a float matmul); adapter folders of a 4-bit QLoRA base are reloaded over a float
base, so only shapes and finiteness are compared there.
"""

from __future__ import annotations

import glob
import json
import os
import re

import pytest
import torch
import yaml
from conftest import CHAT_VOCAB, REPO, WORDS, make_chat_tokenizer, make_tokenizer, run_fresh, sentiment_rows, tiny_bert

RECIPES = sorted(glob.glob(os.path.join(REPO, "recipes", "*.yaml")))
PROBE = [[2, 7, 9, 11, 5, 3, 0, 0], [2, 12, 6, 8, 10, 14, 16, 3]]


def tiny_llama_64(seed: int = 0, vocab_size: int = len(WORDS) + 5):
    """A tiny Llama whose widths (64, 128) fit group size 64 and 2:4 patterns."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0,
    )  # fmt: skip
    return LlamaForCausalLM(config)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("matrix")
    bert = str(root / "bert")
    # hidden 64: bitsandbytes' CPU 4-bit forward fails on rows narrower than its 64-block (AVX-512 CPUs)
    tiny_bert(layers=6, dropout=0.0, hidden=64).save_pretrained(bert)
    make_tokenizer(bert)
    llama = str(root / "llama")
    tiny_llama_64().save_pretrained(llama)
    make_tokenizer(llama)
    chat = str(root / "chat")
    tiny_llama_64(vocab_size=CHAT_VOCAB).save_pretrained(chat)
    make_chat_tokenizer(chat)
    jsonl = root / "chat.jsonl"
    jsonl.write_text(
        "".join(json.dumps({"context": t, "response": t.split()[0]}) + "\n" for t, _ in sentiment_rows(24))
    )
    tsv = root / "sst.tsv"
    tsv.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in sentiment_rows(64)))
    txt = root / "text.txt"
    g = torch.Generator().manual_seed(0)
    txt.write_text(" ".join(WORDS[int(i)] for i in torch.randint(0, len(WORDS), (3000,), generator=g)))
    return {
        "bert": bert,
        "llama": llama,
        "chat": chat,
        "jsonl": str(jsonl),
        "tsv": str(tsv),
        "txt": str(txt),
        "root": root,
    }


def shrink(raw: dict, assets: dict, out: str) -> dict:
    """The recipe with tiny models, tiny data and a 2-step budget; modifiers untouched except group sizes
    wider than the tiny models' narrowest Linear (64 inputs)."""
    task = raw["model"].get("task")
    kind = {"causal-lm": "llama", "chat": "chat"}.get(task, "bert")
    raw["model"]["name_or_path"] = assets[kind]
    if "teacher" in raw:
        raw["teacher"]["name_or_path"] = assets[kind]
    student = raw["model"].get("init_from_teacher")
    if student and kind != "bert":  # the tiny Llamas have 2 blocks
        student["layers"] = [i for i in student["layers"] if i < 2]
    if task == "chat":
        raw["generation"] = {**raw.get("generation", {}), "max_new_tokens": 4, "max_samples": 4, "prompts": ["good"]}
    for modifier in raw.get("modifiers", []):
        if (modifier.get("group_size") or 0) > 64:
            modifier["group_size"] = 64
    data = raw.setdefault("data", {})
    source = assets[{"llama": "txt", "chat": "jsonl"}.get(kind, "tsv")]
    for key in ("train", "eval"):
        if data.get(key):
            data[key] = source
    data.update(max_length=32, max_train_samples=16, max_eval_samples=8, fallback=None)
    if "calibration" in raw:
        raw["calibration"].update(source=assets["txt"], samples=8, seq_len=16)
    training = {k: v for k, v in raw.get("training", {}).items() if k not in ("num_train_epochs", "max_steps")}
    training.update(max_steps=0 if raw.get("training", {}).get("max_steps") == 0 else 2)
    training.update(per_device_train_batch_size=4, per_device_eval_batch_size=8, logging_steps=1, save_strategy="no")
    raw["training"] = training
    raw["export"] = {**raw.get("export", {}), "output_dir": out, "overwrite": True, "push_to_hub": False}
    return raw


RELOAD = """
import json, os, torch
folder, causal, kind = {folder!r}, {causal!r}, {kind!r}
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
auto = AutoModelForCausalLM if causal else AutoModelForSequenceClassification
if kind == "adapter":
    from peft import AutoPeftModelForCausalLM, AutoPeftModelForSequenceClassification
    auto = AutoPeftModelForCausalLM if causal else AutoPeftModelForSequenceClassification
model = auto.from_pretrained(folder).eval()
if kind == "dynamic_int8":
    model = torch.ao.quantization.quantize_dynamic(model, {{torch.nn.Linear}}, dtype=torch.qint8)
ws = [m.weight for n, m in model.named_modules() if ".layer" in n and isinstance(m, torch.nn.Linear)
      and "lora_" not in n and m.weight.dtype.is_floating_point]
ids = torch.tensor({probe!r})
with torch.no_grad():
    logits = model(input_ids=ids, attention_mask=(ids != 0).long()).logits
print(json.dumps({{"logits": logits.tolist(), "zeros": sum(int((w == 0).sum()) for w in ws)}}))
"""


def exponent_form(text: str) -> str:
    """Floats the way most training configs write them: ``5.0e-5`` -> ``5e-5`` (a string to YAML 1.1)."""
    return re.sub(r"\b(\d+)\.0+([eE][-+]?\d+)\b", r"\1\2", text)


def read_with_exponent_floats(path: str) -> dict:
    from hf_lite.core.recipe import RecipeLoader

    with open(path) as f:
        text = f.read()
    raw = yaml.load(exponent_form(text), Loader=RecipeLoader)  # noqa: S506 - a SafeLoader subclass
    assert raw == yaml.safe_load(text), "the exponent form reads back as the same numbers"
    return raw


def test_readme_recipes_load_with_exponent_floats():
    from hf_lite.core.recipe import load_recipe

    with open(os.path.join(REPO, "README.md")) as f:
        blocks = re.findall(r"```yaml\n(.*?)```", f.read(), flags=re.S)
    assert blocks
    for block in blocks:
        recipe = load_recipe(exponent_form(block))
        for key, value in recipe.training.items():
            assert not isinstance(value, str) or not re.match(r"^[\d.]+e", value), (key, value)


@pytest.mark.parametrize("path", RECIPES, ids=[os.path.basename(p)[:-5] for p in RECIPES])
def test_recipe_exports_and_reloads_without_hf_lite(path, assets, tmp_path):
    from hf_lite import run_recipe

    raw = read_with_exponent_floats(path)
    out = str(tmp_path / "out")
    report, model = run_recipe(shrink(raw, assets, out), return_model=True)
    causal = raw["model"].get("task") in ("causal-lm", "chat")
    types = [m["type"] for m in raw.get("modifiers") or []]
    adapter = any(
        t in ("lora", "qlora") and not m.get("merge", t == "lora") for t, m in zip(types, raw.get("modifiers") or [])
    )
    kind = (
        "adapter"
        if adapter
        else "dynamic_int8"
        if "dynamic_int8" in json.dumps(raw)
        else "bnb"
        if "bnb" in types
        else "plain"
    )
    ids = torch.tensor(PROBE)
    model.eval()
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=(ids != 0).long()).logits
    got = run_fresh(RELOAD.format(folder=out, causal=causal, kind=kind, probe=PROBE))
    assert not got["hf_lite_imported"]
    logits = torch.tensor(got["logits"])
    assert logits.shape == expected.shape and torch.isfinite(logits).all()
    if kind == "adapter" and "qlora" in types:
        return  # 4-bit base in training, float base on reload: see the module docstring
    tol = 5e-2 if kind == "bnb" else 1e-5
    assert torch.allclose(logits, expected, atol=tol), float((logits - expected).abs().max())
    sparsity = report["compression"]["sparsity"]
    if kind == "plain" and sparsity > 0:
        total = report["compression"]["block_linear_parameters"]
        assert abs(got["zeros"] / total - sparsity) < 1e-6
    if "bits" in json.dumps(raw) and kind == "plain":
        assert report["compression"]["bits"] in (4.0, 8.0)
    if types == ["lora"] or ("lora" in types and raw["modifiers"][types.index("lora")].get("merge", True)):
        assert os.path.exists(os.path.join(out, "adapter", "adapter_config.json"))
