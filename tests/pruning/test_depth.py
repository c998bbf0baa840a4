"""block_drop: the fade schedule, the blend, the blocks chosen by influence, removal, reload and resume."""

from __future__ import annotations

import pytest
import torch
from conftest import lite, reload_causal_lm, tiny_llama, token_dataset

from hf_lite import RecipeError, load_recipe
from hf_lite.core.session import CompressionSession
from hf_lite.distillation.student import student_from_teacher
from hf_lite.pruning.depth import BlockDropModifier


def session_on(model, **settings):
    session = CompressionSession(load_recipe({"modifiers": [{"type": "block_drop", **settings}]}).build_modifiers())
    return session.initialize(model), session


@torch.no_grad()
def logits(model, seed: int = 0):
    x = torch.randint(5, 25, (2, 12), generator=torch.Generator().manual_seed(seed))
    return model(x).logits


@pytest.mark.parametrize("schedule", ["linear", "cubic", "constant"])
def test_the_dropped_share_is_one_before_start_zero_from_end_and_never_rises(schedule):
    model, session = session_on(tiny_llama(layers=3), drop=[1], start=4, end=12, schedule=schedule)
    session.on_train_begin(model, max_steps=20, step=0)
    mod: BlockDropModifier = session.modifiers[0]
    shares = [mod.scale_at(s) for s in range(21)]
    assert shares[:4] == [1.0] * 4 and shares[12:] == [0.0] * 9
    assert all(a >= b for a, b in zip(shares, shares[1:]))
    if schedule == "linear":
        assert shares[8] == pytest.approx(0.5)
    if schedule == "constant":
        assert shares[4] == 0.0


def test_the_blend_and_the_removal_match_the_student_without_those_blocks(tmp_path):
    teacher = tiny_llama(layers=4)
    full = logits(teacher)
    model, session = session_on(teacher, drop=[1, 2], start=0, end=4)
    session.on_train_begin(model, max_steps=8, step=0)
    assert torch.allclose(logits(model), full)  # share 1 at start: the model is unchanged
    session.on_step_begin(model, 2)  # halfway: x + 0.5 (block(x) - x) in blocks 1 and 2
    half = logits(model)
    assert not torch.allclose(half, full)
    session.on_step_begin(model, 4)
    gone = logits(model)
    shallow = student_from_teacher(teacher, [0, 3])
    assert torch.allclose(gone, logits(shallow), atol=1e-5)
    small = session.finalize(model)
    assert small.config.num_hidden_layers == 2 and len(small.model.layers) == 2
    assert small.config.hf_lite_block_drop == {"kept": [0, 3], "blocks_before": 4}
    assert [b.self_attn.layer_idx for b in small.model.layers] == [0, 1]
    assert not any(b._forward_hooks for b in small.model.layers) and not small._forward_pre_hooks
    assert torch.allclose(logits(small), gone, atol=1e-5)
    folder = str(tmp_path / "small")
    small.save_pretrained(folder)
    x = torch.randint(5, 25, (2, 12), generator=torch.Generator().manual_seed(0))
    got = reload_causal_lm(folder, x.tolist())
    assert not got["hf_lite_imported"] and got["layers"] == 2
    assert torch.allclose(torch.tensor(got["logits"]), gone, atol=1e-5)


def test_keep_drops_the_blocks_that_change_their_input_least_in_training(tmp_path):
    model = tiny_llama(layers=4)
    with torch.no_grad():  # block 2 adds almost nothing to its input: the one to drop
        for p in model.model.layers[2].parameters():
            if p.dim() == 2:
                p.mul_(1e-3)
    recipe = [{"type": "block_drop", "keep": 3, "start": 2, "end": 5}]
    trainer = lite(tmp_path, token_dataset(), recipe, model=model, max_steps=8, learning_rate=1e-4)
    mod = trainer.session.modifiers[0]
    assert mod.dropped == [2] and mod.tokens > 0
    small = trainer.final_model
    assert small.config.num_hidden_layers == 3 and small.config.hf_lite_block_drop["kept"] == [0, 1, 3]
    logs = [h for h in trainer.state.log_history if "hf_lite/block_drop/dropped_output_share" in h]
    assert logs and logs[-1]["hf_lite/block_drop/dropped_output_share"] == 0.0


def test_resume_equals_uninterrupted(tmp_path):
    recipe = [{"type": "block_drop", "keep": 2, "start": 2, "end": 6}]
    ds = token_dataset()
    full = lite(tmp_path / "a", ds, recipe, model=tiny_llama(layers=3), max_steps=8)
    args = dict(max_steps=8, save_strategy="steps", save_steps=3)
    lite(tmp_path / "b", ds, recipe, model=tiny_llama(layers=3), **args)
    resumed = lite(
        tmp_path / "b", ds, recipe, model=tiny_llama(layers=3), resume=str(tmp_path / "b" / "out" / "checkpoint-3"),
        **args,
    )  # fmt: skip
    assert full.session.modifiers[0].dropped == resumed.session.modifiers[0].dropped
    for (n, p), (_, q) in zip(full.final_model.named_parameters(), resumed.final_model.named_parameters()):
        assert torch.allclose(p, q, atol=1e-5), n


def test_bad_settings_fail_before_training(tmp_path):
    for spec, match in (
        ({}, "either drop"),
        ({"drop": [1], "keep": 2}, "not both"),
        ({"drop": [1, 1]}, "distinct"),
        ({"keep": 0}, "keep"),
        ({"drop": [1], "start": 0.5, "end": 0.2}, "must not come before start"),
    ):
        with pytest.raises(RecipeError, match=match):
            load_recipe({"modifiers": [{"type": "block_drop", **spec}]})
    with pytest.raises(RecipeError, match="blocks 0-2"):
        session_on(tiny_llama(layers=3), drop=[3])
    with pytest.raises(RecipeError, match="drop between 1 and 2"):
        session_on(tiny_llama(layers=3), keep=3)
    model, session = session_on(tiny_llama(layers=3), keep=2, start=0)
    with pytest.raises(RecipeError, match="start to at least one step"):
        session.on_train_begin(model, max_steps=8, step=0)
    model, session = session_on(tiny_llama(layers=3), drop=[1], start=0, end=20)
    with pytest.raises(RecipeError, match="cut while still in use"):
        session.on_train_begin(model, max_steps=8, step=0)
    from transformers import T5Config, T5ForConditionalGeneration

    t5 = T5ForConditionalGeneration(T5Config(vocab_size=32, d_model=16, d_kv=4, d_ff=32, num_layers=2, num_heads=2))
    with pytest.raises(RecipeError, match="encoder-decoder"):
        session_on(t5, drop=[1])
