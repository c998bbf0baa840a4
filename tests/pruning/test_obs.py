"""obs_pruning (oBERT): the Fisher inverse, the OBS update against the closed-form solution, and the
modifier inside the Trainer (schedule, exact sparsity, resume, export)."""

import pytest
import torch
from conftest import lite, tiny_bert

from hf_lite import RecipeError, load_recipe
from hf_lite.pruning.obs import (
    fisher_inverse,
    fisher_inverse_diagonal,
    obs_saliency,
    obs_update,
    obs_update_lowrank,
)


@pytest.mark.parametrize("m", [3, 6, 7])  # Woodbury below the block size, the direct inverse from it on
def test_fisher_inverse_matches_linalg_inv(m):
    torch.manual_seed(0)
    blocks, size, damp = 4, 6, 1e-2
    g = torch.randn(m, blocks, size)
    fisher = damp * torch.eye(size, dtype=torch.float64) + torch.einsum("mbi,mbj->bij", g.double(), g.double()) / m
    assert torch.allclose(fisher_inverse(g, damp), torch.linalg.inv(fisher), rtol=1e-9, atol=1e-9)
    diag = fisher_inverse_diagonal(g, damp, blocks, size)
    assert torch.allclose(diag, torch.diagonal(torch.linalg.inv(fisher), dim1=-2, dim2=-1), rtol=1e-9, atol=1e-9)
    assert torch.allclose(fisher_inverse(g[:0], damp), torch.eye(size, dtype=torch.float64) / damp)  # no gradients


def quadratic_optimum(h: torch.Tensor, w: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """argmin over w' of 1/2 (w' - w)^T H (w' - w) with w'_q = 0: the KKT system, solved directly."""
    n, k = len(w), len(q)
    kkt = torch.zeros(n + k, n + k, dtype=torch.float64)
    kkt[:n, :n] = h
    kkt[:n, n:] = torch.eye(n, dtype=torch.float64)[:, q]
    kkt[n:, :n] = torch.eye(n, dtype=torch.float64)[q]
    rhs = torch.cat([torch.zeros(n, dtype=torch.float64), -w[q]])
    return w + torch.linalg.solve(kkt, rhs)[:n]


@pytest.mark.parametrize("pruned", [[2], [0, 3, 4]])
def test_obs_update_is_the_closed_form_solution_with_an_exact_hessian(pruned):
    torch.manual_seed(1)
    size = 6
    a = torch.randn(size, size, dtype=torch.float64)
    h = a @ a.T + 0.5 * torch.eye(size, dtype=torch.float64)  # the exact Hessian of a quadratic loss
    # gradients whose empirical Fisher is exactly H (m = size): g_i = sqrt(m * e_i) v_i
    e, v = torch.linalg.eigh(h)
    grads = (torch.sqrt(size * e)[:, None] * v.T).unsqueeze(1)  # (m, 1 block, size)
    damp = 1e-6  # F = H + damp * I
    h = h + damp * torch.eye(size, dtype=torch.float64)
    finv = fisher_inverse(grads, damp)
    assert torch.allclose(finv[0], torch.linalg.inv(h), atol=1e-9)
    w = torch.randn(size, dtype=torch.float64)
    q = torch.tensor(pruned)
    prune = torch.zeros(1, size, dtype=torch.bool)
    prune[0, q] = True
    new = obs_update(w[None], finv, prune)[0]
    assert torch.allclose(new, quadratic_optimum(h, w, q), atol=1e-9)
    assert bool((new[q] == 0).all())
    if len(pruned) == 1:  # one weight: the textbook OBS formulas
        (j,) = pruned
        hinv = torch.linalg.inv(h)
        assert torch.allclose(new, w - w[j] / hinv[j, j] * hinv[:, j], atol=1e-9)
        loss = 0.5 * (new - w) @ h @ (new - w)
        diag = torch.diagonal(finv, dim1=-2, dim2=-1)
        assert float(obs_saliency(w[None], diag)[0, j]) == pytest.approx(float(loss), rel=1e-6)


def test_settings_are_checked():
    with pytest.raises(RecipeError, match="block_size"):
        load_recipe([{"type": "obs_pruning", "block_size": 0}])
    with pytest.raises(RecipeError, match="damp"):
        load_recipe([{"type": "obs_pruning", "damp": 0}])
    s = load_recipe([{"type": "obs_pruning"}]).build_modifiers()[0].settings
    assert (s.block_size, s.scope, s.damp) == (50, "global", 1e-7)  # the paper's defaults


RECIPE = [
    {"type": "obs_pruning", "final_sparsity": 0.75, "start": 2, "end": 6, "update_every": 2, "block_size": 8,
     "num_grads": 2, "damp": 1e-4}
]  # fmt: skip


def test_obs_pruning_in_the_trainer_reaches_the_target_and_updates_survivors(tmp_path, tiny_dataset, monkeypatch):
    import hf_lite.pruning.obs as obs

    seen = []
    real = obs.obs_update_lowrank

    def spy(w, grads, prune, damp):
        seen.append(grads.shape[0])
        return real(w, grads, prune, damp)

    monkeypatch.setattr(obs, "obs_update_lowrank", spy)
    trainer = lite(tmp_path, tiny_dataset, RECIPE, model=tiny_bert(dropout=0.0), max_steps=8)
    mod = trainer.session.modifiers[0]
    assert mod.stats()["sparsity"] == pytest.approx(0.75, abs=1e-3)
    total = sum(m.weight.numel() for m in mod.modules.values())
    zeros = sum(int((m.weight == 0).sum()) for m in mod.modules.values())
    assert zeros / total == pytest.approx(0.75, abs=1e-3)
    assert 2 in seen  # the Fisher used the last num_grads training gradients
    assert trainer.model.classifier.weight.ne(0).all()


def test_obs_update_moves_the_surviving_weights(tiny_dataset):
    """Against pruning the same coordinates without the update: the survivors change."""
    from hf_lite.core.modifier import Context

    model = tiny_bert(dropout=0.0)
    (mod,) = load_recipe(RECIPE).build_modifiers()
    mod.initialize(model, Context(max_steps=8))
    mod.on_train_begin(model, Context(max_steps=8))
    name, module = next(iter(mod.modules.items()))
    before = module.weight.detach().clone()
    torch.manual_seed(0)
    for _ in range(2):  # two "training" gradients
        module.weight.grad = torch.randn_like(module.weight)
        mod.before_optimizer_step(model, Context(step=0, max_steps=8))
    mod.prune(0.5)
    kept = mod.masks[name] == 1
    assert not torch.equal(module.weight[kept], before[kept])
    weights = [m.weight for m in mod.modules.values()]
    assert sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights) == pytest.approx(0.5, abs=1e-3)


def test_resume_equals_uninterrupted(tmp_path, tiny_dataset):
    straight = lite(tmp_path / "a", tiny_dataset, RECIPE, model=tiny_bert(dropout=0.0), max_steps=8)
    args = dict(max_steps=8, save_strategy="steps", save_steps=3)
    lite(tmp_path / "b", tiny_dataset, RECIPE, model=tiny_bert(dropout=0.0), **args)
    ckpt = tmp_path / "b" / "out" / "checkpoint-3"  # between two pruning steps: gradients are in the state
    resumed = lite(tmp_path / "b", tiny_dataset, RECIPE, model=tiny_bert(dropout=0.0), resume=str(ckpt), **args)
    for (n, a), (_, b) in zip(straight.model.named_parameters(), resumed.model.named_parameters()):
        assert torch.allclose(a, b, atol=1e-6), n
    ma, mb = straight.session.modifiers[0].masks, resumed.session.modifiers[0].masks
    assert all(torch.equal(ma[k], mb[k]) for k in ma)


def test_export_reloads_with_plain_transformers(tmp_path, tiny_dataset):
    from transformers import AutoModelForSequenceClassification

    trainer = lite(tmp_path, tiny_dataset, RECIPE, model=tiny_bert(dropout=0.0), max_steps=8)
    trainer.save_model(str(tmp_path / "export"))
    model = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "export"))
    weights = [m.weight for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".layer." in n]
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert zeros / sum(w.numel() for w in weights) == pytest.approx(0.75, abs=1e-3)


def test_num_grads_above_update_every_is_warned_by_name(tmp_path, tiny_dataset, caplog):
    import logging

    recipe = [{**RECIPE[0], "num_grads": 8}]  # update_every 2: at most 2 gradients per Fisher
    with caplog.at_level(logging.WARNING, logger="hf_lite"):
        lite(tmp_path, tiny_dataset, recipe, model=tiny_bert(dropout=0.0), max_steps=3)
    assert "num_grads 8 > update_every 2" in caplog.text


@pytest.mark.parametrize("m", [0, 3, 9])
def test_lowrank_obs_update_equals_the_full_one(m):
    torch.manual_seed(2)
    blocks, size, damp = 5, 8, 1e-3
    grads = torch.randn(m, blocks, size)
    w = torch.randn(blocks, size)
    prune = torch.rand(blocks, size) < 0.4
    prune[0] = False  # nothing pruned in a block: it stays as it is
    prune[1] = True  # everything pruned
    full = obs_update(w, fisher_inverse(grads, damp), prune)
    low = obs_update_lowrank(w, grads, prune, damp)
    assert torch.allclose(low, full, rtol=1e-7, atol=1e-9)
    assert torch.equal(low[0], w[0].double()) and bool((low[1] == 0).all())
