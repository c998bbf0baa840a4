"""GGUF export of Llama-architecture causal LMs: metadata, exact int4/int8 codes from an hf_lite grid,
the tokenizer, and (with llama-cpp-python installed) llama.cpp's logits against transformers'."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from conftest import sentiment_rows

from hf_lite.cli import main
from hf_lite.core.recipe import load_recipe
from hf_lite.core.settings import RecipeError

gguf = pytest.importorskip("gguf")


def llama_cpp_module():
    """llama-cpp-python, or a skip; under `make test-gguf` (HF_LITE_REQUIRE_LLAMA_CPP=1) a missing build fails."""
    if os.environ.get("HF_LITE_REQUIRE_LLAMA_CPP"):
        import llama_cpp

        return llama_cpp
    return pytest.importorskip("llama_cpp")


@pytest.fixture(scope="module")
def bpe_llama(tmp_path_factory):
    """A tiny Llama (hidden 64, 2 blocks) with a byte-level BPE tokenizer and a ChatML template."""
    from conftest import CHAT_TEMPLATE
    from tokenizers import ByteLevelBPETokenizer
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = str(tmp_path_factory.mktemp("gguf") / "llama")
    os.makedirs(folder)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([t for t, _ in sentiment_rows(200)], vocab_size=300, min_frequency=1,
                            special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])  # fmt: skip
    bpe.save(os.path.join(folder, "tokenizer.json"))
    tok = PreTrainedTokenizerFast(
        tokenizer_file=os.path.join(folder, "tokenizer.json"),
        bos_token="<|endoftext|>", eos_token="<|im_end|>", pad_token="<|endoftext|>",
    )  # fmt: skip
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=True, pad_token_id=0,
        bos_token_id=0, eos_token_id=2,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(folder)
    text = folder + ".txt"
    with open(text, "w") as f:
        f.write(" ".join(t for t, _ in sentiment_rows(400)))
    return folder, text


def _export(tmp_path, bpe_llama, modifiers, gguf_type="auto"):
    folder, text = bpe_llama
    out = str(tmp_path / "out")
    recipe = {
        "model": {"name_or_path": folder, "task": "causal-lm"},
        "calibration": {"source": text, "samples": 4, "seq_len": 32},
        "training": {"max_steps": 0},
        "modifiers": modifiers,
        "export": {"output_dir": out, "formats": ["safetensors", "gguf"], "gguf_type": gguf_type},
    }
    assert main(["run", json.dumps(recipe)]) == 0
    return out, json.loads(open(os.path.join(out, "report.json")).read())["formats"]["gguf"]


def _tensors(path):
    reader = gguf.GGUFReader(path)
    return reader, {t.name: t for t in reader.tensors}


def _field(reader, key):
    f = reader.fields[key]
    return f.contents() if hasattr(f, "contents") else f.parts[f.data[0]]


@pytest.mark.parametrize("symmetric, qtype", [(True, "q4_0"), (False, "q4_1")])
def test_int4_g32_grid_is_written_as_its_gguf_codes(tmp_path, bpe_llama, symmetric, qtype):
    from safetensors.torch import load_file

    from hf_lite.quantization.grids import load_grid

    out, info = _export(tmp_path, bpe_llama, [{"type": "rtn", "bits": 4, "group_size": 32, "symmetric": symmetric}])
    assert info["type"] == qtype and info["exact_from_grid"] and info["path"] == f"gguf/model-{qtype}.gguf"
    reader, tensors = _tensors(os.path.join(out, info["path"]))
    assert _field(reader, "general.architecture") == "llama"
    assert _field(reader, "llama.block_count") == 2
    assert _field(reader, "tokenizer.ggml.model") == "gpt2"
    assert "<|im_start|>" in _field(reader, "tokenizer.chat_template")
    assert tensors["blk.0.attn_v.weight"].tensor_type.name == qtype.upper()
    assert "output.weight" not in tensors  # tied to token_embd, as llama.cpp reads it
    weights = load_file(os.path.join(out, "model.safetensors"))
    scales, zeros, _ = load_grid(out)
    name = "model.layers.0.self_attn.v_proj"  # not permuted: rows as in the export
    t = tensors["blk.0.attn_v.weight"]
    back = gguf.quants.dequantize(t.data, t.tensor_type).reshape(weights[name + ".weight"].shape)
    # our codes with the scales rounded to float16, as GGUF stores them
    s = scales[name].half().float().repeat_interleave(32, 1)
    z = zeros[name].repeat_interleave(32, 1)
    codes = torch.round(weights[name + ".weight"] / scales[name].repeat_interleave(32, 1) + z)
    want = (codes - z) * s if symmetric else codes * s - (z * scales[name].repeat_interleave(32, 1)).half().float()
    assert np.allclose(back, want.numpy(), atol=1e-6)


def test_unquantized_model_gets_q8_0_and_f32_on_request(tmp_path, bpe_llama):
    out, info = _export(tmp_path, bpe_llama, [])
    assert info["type"] == "q8_0" and not info["exact_from_grid"] and info["max_block_weight_diff"] < 1e-2
    out2, info2 = _export(tmp_path / "f32", bpe_llama, [], gguf_type="f32")
    assert info2["max_block_weight_diff"] == 0.0
    _, tensors = _tensors(os.path.join(out2, info2["path"]))
    assert tensors["token_embd.weight"].tensor_type.name == "F32"


def test_gguf_is_refused_before_training_where_it_cannot_be_written(tmp_path):
    with pytest.raises(RecipeError, match="gguf is written for Llama-architecture causal LMs"):
        load_recipe({"model": {"task": "sequence-classification"}, "export": {"formats": ["safetensors", "gguf"]}})
    with pytest.raises(RecipeError, match="gguf_type: got .q4_0.; is read only when formats lists gguf"):
        load_recipe({"model": {"task": "causal-lm"}, "export": {"gguf_type": "q4_0"}})
    # gguf_exact: the grid must be one the chosen type holds, checked when the recipe is loaded
    exact = {"formats": ["safetensors", "gguf"], "gguf_exact": True}
    gptq = {"type": "gptq", "bits": 4, "group_size": 64, "symmetric": True}
    with pytest.raises(RecipeError, match="gguf_type auto cannot hold the recipe's grid .int4 group_size 64"):
        load_recipe({"model": {"task": "causal-lm"}, "modifiers": [gptq], "export": exact})
    with pytest.raises(RecipeError, match="gguf_type q4_1 cannot hold"):
        load_recipe({"model": {"task": "causal-lm"}, "modifiers": [{**gptq, "group_size": 32}],
                     "export": {**exact, "gguf_type": "q4_1"}})  # fmt: skip
    with pytest.raises(RecipeError, match="needs exactly one int-grid quantizer"):
        load_recipe({"model": {"task": "causal-lm"}, "export": exact})
    ok = load_recipe({"model": {"task": "causal-lm"}, "modifiers": [{**gptq, "group_size": 32}], "export": exact})
    assert ok.export.gguf_exact
    from transformers import GPT2Config, GPT2LMHeadModel

    from hf_lite import LiteTrainer

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50))
    recipe = {"model": {"task": "causal-lm"}, "export": {"formats": ["safetensors", "gguf"]}}
    from conftest import training_args

    with pytest.raises(RecipeError, match="gguf supports the llama architecture"):
        LiteTrainer(model=model, args=training_args(tmp_path), recipe=recipe)


def test_llama_cpp_runs_the_gguf_like_transformers(tmp_path, bpe_llama):
    llama_cpp = llama_cpp_module()
    from transformers import AutoModelForCausalLM

    ids = [5, 17, 42, 9, 100, 61, 7, 33]
    for modifiers, gguf_type, tol in (
        ([], "f32", 1e-3),
        ([{"type": "rtn", "bits": 4, "group_size": 32}], "auto", 2e-2),
    ):
        out, info = _export(tmp_path / gguf_type, bpe_llama, modifiers, gguf_type)
        llm = llama_cpp.Llama(os.path.join(out, info["path"]), n_ctx=64, logits_all=True, verbose=False)
        llm.eval(ids)
        got = np.array(llm.scores[: len(ids)])
        model = AutoModelForCausalLM.from_pretrained(out).eval()
        with torch.no_grad():
            want = model(torch.tensor([ids])).logits[0].numpy()
        assert np.abs(got - want).max() < tol, (gguf_type, float(np.abs(got - want).max()))
        assert (got.argmax(-1) == want.argmax(-1)).all()


def test_hf_lite_chat_talks_to_a_gguf_file(tmp_path, bpe_llama, capsys):
    llama_cpp_module()
    out, info = _export(tmp_path, bpe_llama, [], gguf_type="f32")
    capsys.readouterr()
    assert main(["chat", os.path.join(out, info["path"]), "--prompt", "good movie", "--max-new-tokens", "4"]) == 0
    assert capsys.readouterr().out.endswith("\n")
