"""Structured pruning: unit counts per block, a smaller model with the same logits, reload, resume."""

from __future__ import annotations

import pytest
import torch
from conftest import lite, reload_causal_lm, tiny_bert, tiny_llama, token_dataset
from torch import nn

from hf_lite import RecipeError, load_recipe
from hf_lite.core.session import CompressionSession
from hf_lite.pruning.structured import StructuredPruningModifier


def session_on(model, **settings):
    session = CompressionSession(
        load_recipe({"modifiers": [{"type": "structured_pruning", **settings}]}).build_modifiers()
    )
    return session.initialize(model), session


@torch.no_grad()
def logits(model, seed: int = 0):
    x = torch.randint(5, 25, (2, 12), generator=torch.Generator().manual_seed(seed))
    return model(x).logits


def test_llama_finalize_shrinks_and_matches_the_masked_model(tmp_path):
    model, session = session_on(tiny_llama(layers=3), heads=0.5, ffn=0.25, importance="magnitude")
    mod: StructuredPruningModifier = session.modifiers[0]
    mod.update_masks({"heads": 0.5, "ffn": 0.25})
    masked = logits(model)
    before = sum(p.numel() for p in model.parameters())
    model = session.finalize(model)
    assert torch.allclose(logits(model), masked, atol=1e-5)
    c = model.config
    assert (c.num_key_value_heads, c.num_attention_heads, c.head_dim, c.intermediate_size) == (1, 2, 8, 48)
    for layer in model.model.layers:  # the same size in every block
        assert layer.self_attn.q_proj.out_features == 16 and layer.self_attn.k_proj.out_features == 8
        assert layer.mlp.down_proj.in_features == 48
    assert sum(p.numel() for p in model.parameters()) < before
    folder = str(tmp_path / "small")
    model.save_pretrained(folder)
    x = torch.randint(5, 25, (2, 12), generator=torch.Generator().manual_seed(0))
    got = reload_causal_lm(folder, x.tolist())
    assert not got["hf_lite_imported"]
    assert got["params"] == sum(p.numel() for p in model.parameters())
    assert torch.allclose(torch.tensor(got["logits"]), masked, atol=1e-5)


def test_bert_ffn_shrinks_heads_are_zeroed(tmp_path):
    model, session = session_on(tiny_bert(dropout=0.0), heads=0.25, ffn=0.5)
    session.modifiers[0].update_masks({"heads": 0.25, "ffn": 0.5})
    masked = logits(model)
    model = session.finalize(model)
    assert torch.allclose(logits(model), masked, atol=1e-6)
    assert model.config.intermediate_size == 32
    for layer in model.bert.encoder.layer:
        assert layer.intermediate.dense.out_features == 32 and layer.output.dense.in_features == 32
        zero_heads = (layer.attention.output.dense.weight.reshape(32, 4, 8) == 0).all(0).all(-1)
        assert int(zero_heads.sum()) == 1  # 25% of 4 heads, kept as zeros (transformers 5 BERT cannot drop heads)
    model.save_pretrained(tmp_path / "b")
    reloaded = type(model).from_pretrained(tmp_path / "b").eval()
    assert torch.allclose(logits(reloaded), masked, atol=1e-6)


@pytest.mark.parametrize("importance", ["magnitude", "taylor"])
def test_schedule_during_training_and_counts_per_block(tmp_path, importance):
    recipe = [{"type": "structured_pruning", "heads": 0.5, "ffn": 0.5, "importance": importance,
               "start": 1, "end": 5, "update_every": 2, "schedule": "linear"}]  # fmt: skip
    trainer = lite(tmp_path, token_dataset(), recipe, model=tiny_llama(), max_steps=8)
    mod = trainer.session.modifiers[0]
    assert [mod.fractions_at(s)["ffn"] for s in range(8)] == [0.0, 0.0, 0.0, 0.25, 0.25, 0.5, 0.5, 0.5]
    for key, keep in mod.keep.items():
        assert int((keep == 0).sum()) == keep.numel() // 2, key
    if importance == "taylor":
        assert mod.taylor and all(float(t.sum()) > 0 for t in mod.taylor.values())
    small = trainer.final_model
    assert small.config.intermediate_size == 32 and small.config.num_key_value_heads == 1
    assert all(layer.mlp.up_proj.out_features == 32 for layer in small.model.layers)


def test_resume_equals_uninterrupted(tmp_path):
    recipe = [{"type": "structured_pruning", "ffn": 0.5, "heads": 0.5, "importance": "taylor",
               "start": 1, "end": 6, "update_every": 1}]  # fmt: skip
    ds = token_dataset()
    full = lite(tmp_path / "a", ds, recipe, model=tiny_llama(), max_steps=8)
    args = dict(max_steps=8, save_strategy="steps", save_steps=3)
    lite(tmp_path / "b", ds, recipe, model=tiny_llama(), **args)
    resumed = lite(
        tmp_path / "b", ds, recipe, model=tiny_llama(), resume=str(tmp_path / "b" / "out" / "checkpoint-3"), **args
    )
    a, b = full.session.modifiers[0], resumed.session.modifiers[0]
    assert all(torch.equal(a.keep[k], b.keep[k]) for k in a.keep)
    for (n, p), (_, q) in zip(full.final_model.named_parameters(), resumed.final_model.named_parameters()):
        assert torch.allclose(p, q, atol=1e-5), n


def test_unsupported_architecture_and_bad_settings_fail_before_training():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([Block(), Block()])
            self.config = None

    with pytest.raises(RecipeError, match="not supported"):
        session_on(Odd(), ffn=0.5)
    with pytest.raises(RecipeError, match="heads"):
        load_recipe({"modifiers": [{"type": "structured_pruning", "heads": 1.0}]})
    with pytest.raises(RecipeError, match="nothing would be pruned"):
        load_recipe({"modifiers": [{"type": "structured_pruning"}]})
    with pytest.raises(RecipeError, match="rounds to 0"):
        session_on(tiny_llama(), heads=0.1)  # 2 KV groups: 10% prunes none
