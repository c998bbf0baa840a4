import os

import pytest
import torch
from conftest import lite, run_fresh, tiny_bert, tiny_llama, token_dataset

from hf_lite import RecipeError
from hf_lite.core.targets import find_linear_targets
from hf_lite.pruning.masks import global_masks, nm_mask, sparsity_of, topk_mask


def test_mask_helpers_exact():
    torch.manual_seed(0)
    s = torch.rand(16, 32)
    assert sparsity_of(topk_mask(s, 0.8)) == pytest.approx(round(0.8 * 512) / 512)
    m = nm_mask(s, 2, 4)
    assert (m.reshape(16, 8, 4).sum(-1) == 2).all()
    g = global_masks({"a": s, "b": s * 10}, 0.5)
    assert float(g["a"].sum() + g["b"].sum()) == 512  # one threshold: most of "a" goes
    assert g["a"].sum() < g["b"].sum()
    with pytest.raises(ValueError, match="divisible by 4"):
        nm_mask(torch.rand(4, 6), 2, 4)


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_gmp_exact_sparsity_at_end_and_stays(tmp_path, tiny_dataset, scope):
    recipe = [
        {"type": "magnitude_pruning", "final_sparsity": 0.75, "start": 1, "end": 5, "update_every": 2, "scope": scope}
    ]
    trainer = lite(tmp_path, tiny_dataset, recipe, max_steps=8)
    mod = trainer.session.modifiers[0]
    total = sum(m.weight.numel() for m in mod.modules.values())
    zeros = sum(int((m.weight == 0).sum()) for m in mod.modules.values())
    assert zeros / total == pytest.approx(0.75, abs=1e-3)
    if scope == "layer":
        for m in mod.modules.values():
            assert sparsity_of(m.weight) == pytest.approx(0.75, abs=2e-3)
    assert trainer.model.classifier.weight.ne(0).all()  # head untouched


def test_nm_pattern_every_group(tmp_path, tiny_dataset):
    trainer = lite(
        tmp_path, tiny_dataset, [{"type": "magnitude_pruning", "pattern": "2:4", "start": 0, "end": 2}], max_steps=5
    )
    for m in trainer.session.modifiers[0].modules.values():
        groups = (m.weight != 0).reshape(m.weight.shape[0], -1, 4).sum(-1)
        assert (groups <= 2).all()


def test_movement_pruning_reaches_target(tmp_path, tiny_dataset):
    trainer = lite(
        tmp_path,
        tiny_dataset,
        [{"type": "movement_pruning", "final_sparsity": 0.5, "start": 1, "end": 4, "update_every": 1}],
        max_steps=6,
    )
    assert trainer.session.modifiers[0].stats()["sparsity"] == pytest.approx(0.5, abs=1e-3)


def test_constant_pruning_keeps_zeros(tmp_path, tiny_dataset):
    model = tiny_bert()
    with torch.no_grad():
        for m in find_linear_targets(model).values():
            m.weight.mul_((torch.rand_like(m.weight) > 0.6).float())
    zeros_before = {n: m.weight == 0 for n, m in find_linear_targets(model).items()}
    lite(tmp_path, tiny_dataset, [{"type": "constant_pruning"}], model=model, max_steps=4)
    for n, m in find_linear_targets(model).items():
        assert torch.equal(m.weight == 0, zeros_before[n])


def test_resume_equals_uninterrupted(tmp_path, tiny_dataset):
    recipe = [{"type": "magnitude_pruning", "final_sparsity": 0.7, "start": 1, "end": 6, "update_every": 1}]
    full = lite(tmp_path / "a", tiny_dataset, recipe, model=tiny_bert(dropout=0.0), max_steps=8)
    args = dict(max_steps=8, save_strategy="steps", save_steps=3)
    lite(tmp_path / "b", tiny_dataset, recipe, model=tiny_bert(dropout=0.0), **args)
    resumed = lite(
        tmp_path / "b",
        tiny_dataset,
        recipe,
        model=tiny_bert(dropout=0.0),
        resume=str(tmp_path / "b" / "out" / "checkpoint-3"),
        **args,
    )
    for (n, a), (_, b) in zip(full.model.named_parameters(), resumed.model.named_parameters()):
        assert torch.allclose(a, b, atol=1e-6), n
    ma, mb = full.session.modifiers[0].masks, resumed.session.modifiers[0].masks
    assert all(torch.equal(ma[k], mb[k]) for k in ma)


def test_targets_that_match_nothing_fail_before_training(tmp_path, tiny_dataset):
    with pytest.raises(RecipeError, match="match no nn.Linear"):
        lite(tmp_path, tiny_dataset, [{"type": "magnitude_pruning", "targets": ["q_proj"]}], train=False)


def test_llama_gmp_reload_in_fresh_process(tmp_path):
    ds = token_dataset()
    recipe = [{"type": "magnitude_pruning", "final_sparsity": 0.6, "start": 0, "end": 3, "update_every": 1}]
    trainer = lite(tmp_path, ds, recipe, model=tiny_llama(), max_steps=4)
    out = tmp_path / "export"
    trainer.final_model.save_pretrained(out)
    ids = ds[0]["input_ids"]
    with torch.no_grad():
        expected = trainer.final_model.eval()(torch.tensor([ids])).logits
    res = run_fresh(
        "import torch, json; from transformers import AutoModelForCausalLM as A\n"
        f"m = A.from_pretrained({str(out)!r}).eval(); x = torch.tensor([{ids!r}])\n"
        "w = [layer.mlp.up_proj.weight for layer in m.model.layers]\n"
        "print(json.dumps({'logits': m(x).logits.flatten().tolist(), 'sp': [float((t == 0).float().mean()) for t in w]}))"
    )
    assert not res["hf_lite_imported"]
    assert torch.allclose(torch.tensor(res["logits"]), expected.flatten(), atol=1e-5)
    assert res["sp"] == pytest.approx([0.6, 0.6], abs=1e-3)
    assert sorted(os.listdir(out)) == ["config.json", "generation_config.json", "model.safetensors"]
