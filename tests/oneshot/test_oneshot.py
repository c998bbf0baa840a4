"""One-shot LLM compression on tiny Llamas: exact sparsity, N:M, GPTQ vs RTN, determinism, reload."""

from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import WORDS, make_tokenizer, run_fresh, tiny_llama

from hf_lite import RecipeError, load_recipe
from hf_lite.core.targets import decoder_blocks
from hf_lite.oneshot import algorithms as alg
from hf_lite.oneshot import apply_recipe_
from hf_lite.oneshot.apply import calibration_token_chunks
from hf_lite.oneshot.sequential import capture_block_inputs, linear_stages, run_sequential
from hf_lite.pruning.masks import prune_lowest
from hf_lite.quantization.grids import GRID_FILE

BLOCK_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def calibration(n: int = 16, seq: int = 24, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(5, len(WORDS) + 5, (n, seq), generator=g)


def block_linears(model):
    return {n: m for n, m in model.named_modules() if n.split(".")[-1] in BLOCK_LINEARS}


def correlated_inputs(rows: int = 512, cols: int = 64, seed: int = 0) -> torch.Tensor:
    """Strongly correlated inputs with uneven scales (low rank plus noise), like real activations."""
    g = torch.Generator().manual_seed(seed)
    low_rank = torch.randn(rows, 8, generator=g) @ torch.randn(8, cols, generator=g)
    return (low_rank + 0.1 * torch.randn(rows, cols, generator=g)) * torch.logspace(-0.5, 0.5, cols)


def grid_codes(w: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, group: int = 16) -> torch.Tensor:
    """(rows, groups, group) codes of a saved weight on its grid: integers when the weight lies on it."""
    return w.reshape(w.shape[0], -1, group) / scales.unsqueeze(-1) + zeros.unsqueeze(-1)


def oneshot_reference(folder: str, text: str, modifiers: list) -> tuple:
    """(model, session): the one-shot step alone, with the calibration a test recipe below asks for."""
    from transformers import AutoModelForCausalLM

    from hf_lite.models import load_tokenizer

    model = AutoModelForCausalLM.from_pretrained(folder)
    cal = calibration_token_chunks(open(text).read(), load_tokenizer(folder), 8, 32)
    return model, apply_recipe_(model, {"modifiers": modifiers}, cal, progress=False)


# -- algorithms on one layer ---------------------------------------------------------------------------
def test_gptq_reconstructs_better_than_rtn_on_the_same_layer():
    x = correlated_inputs()
    w = torch.randn(48, 64, generator=torch.Generator().manual_seed(1))
    h = 2 * x.t() @ x / x.shape[0]
    for bits, group in ((4, 16), (4, None), (8, 32)):
        q_rtn, _, _ = alg.rtn(w, bits, group, symmetric=True)
        q_gptq, _, _ = alg.gptq_(w, h, bits, group, symmetric=True)
        err = lambda q: float(((x @ (w - q).t()) ** 2).mean())  # noqa: E731
        assert err(q_gptq) < 0.5 * err(q_rtn), (bits, group)


def test_gptq_weights_lie_on_the_returned_grid():
    x = correlated_inputs()
    w = torch.randn(16, 64)
    h = 2 * x.t() @ x / x.shape[0]
    for symmetric in (True, False):
        for act_order in (False, True):
            q, scales, zeros = alg.gptq_(w, h, 4, 16, symmetric, act_order=act_order)
            codes = q.reshape(16, 4, 16) / scales.unsqueeze(-1) + zeros.unsqueeze(-1)
            assert torch.allclose(codes, codes.round(), atol=1e-3)
            lo, hi = (-7, 7) if symmetric else (0, 15)
            assert codes.round().min() >= lo and codes.round().max() <= hi


def test_group_size_that_does_not_divide_leaves_a_shorter_last_group():
    # SmolLM2's 576 inputs with groups of 128: column c uses group c // 128, the last group is 64 wide
    x = correlated_inputs()[:, :56]
    w = torch.randn(16, 56)
    h = 2 * x.t() @ x / x.shape[0]
    for q, scales, zeros in (alg.rtn(w, 4, 24, False), alg.gptq_(w, h, 4, 24, False, act_order=True)):
        assert scales.shape == (16, 3)
        group = torch.arange(56) // 24
        codes = q / scales[:, group] + zeros[:, group]
        assert torch.allclose(codes, codes.round(), atol=1e-3)
        assert codes.round().min() >= 0 and codes.round().max() <= 15
    last = alg.rtn(w[:, 48:], 4, None, False)[0]  # the 8-wide tail is its own group
    assert torch.allclose(alg.rtn(w, 4, 24, False)[0][:, 48:], last)
    model = tiny_llama()  # in_features 32 and 64: groups of 24 leave tails of 8 and 16
    session = apply_recipe_(model, {"modifiers": [{"type": "gptq", "group_size": 24}]}, calibration(), progress=False)
    assert session.modifiers[0].scales["model.layers.0.mlp.down_proj"].shape == (32, 3)


def test_sparsegpt_beats_wanda_and_magnitude_on_the_same_layer():
    x = correlated_inputs()
    w = torch.randn(48, 64, generator=torch.Generator().manual_seed(2))
    h = 2 * x.t() @ x / x.shape[0]
    err = lambda q: float(((x @ (w - q).t()) ** 2).mean())  # noqa: E731
    for nm in (None, (2, 4)):
        sgpt, mask = alg.sparsegpt_(w, h, 0.5, nm)
        wanda = w * alg.wanda_mask(w, (x * x).sum(0), 0.5, nm)
        mag = w * alg.magnitude_mask(w, 0.5, nm)
        assert float((sgpt == 0).float().mean()) == 0.5
        assert torch.equal(sgpt == 0, mask == 0)
        assert err(sgpt) < err(wanda) < err(mag)


def test_sparsegpt_mask_selection_options():
    x = correlated_inputs()
    w = torch.randn(48, 64, generator=torch.Generator().manual_seed(3))
    h = 2 * x.t() @ x / x.shape[0]
    base, _ = alg.sparsegpt_(w, h, 0.5, block_size=32)
    same, _ = alg.sparsegpt_(w, h, 0.5, block_size=32, mask_block=32)
    assert torch.equal(base, same)  # mask_block = block_size is the paper's selection
    f64, _ = alg.sparsegpt_(w, h, 0.5, block_size=32, dtype=torch.float64)
    assert float((f64 - base).norm() / base.norm()) < 1e-3
    for kw in ({"mask_block": 8}, {"per_row": True}):
        q, mask = alg.sparsegpt_(w, h, 0.5, block_size=32, **kw)
        assert float((mask == 0).float().mean()) == 0.5
        assert torch.equal(q == 0, mask == 0)
    row, _ = alg.sparsegpt_(w, h, 0.5, block_size=32, per_row=True)
    assert bool(((row == 0).sum(1) == 32).all())  # every output row exactly half
    # llm-compressor's rule: everything <= the int(n * s)-th smallest score, one more per block than exact
    _, thr = alg.sparsegpt_(w, h, 0.5, block_size=32, rule="threshold")
    assert int((thr == 0).sum()) == 48 * 64 // 2 + 2


def test_prune_lowest_rules():
    scores = torch.tensor([[3.0, 1.5, 2.0, 2.5], [0.0, 5.0, 4.0, 1.0]])
    assert prune_lowest(scores, 0.5).tolist() == [[1, 0, 0, 1], [0, 1, 1, 0]]
    assert prune_lowest(scores, 0.5, per_row=True).tolist() == [[1, 0, 0, 1], [0, 1, 1, 0]]
    # threshold at the 2nd smallest of each row (2.0 and 1.0): ties at the threshold go too
    ties = torch.tensor([[3.0, 1.0, 2.0, 2.0], [0.0, 5.0, 4.0, 1.0]])
    assert prune_lowest(ties, 0.25, per_row=True, rule="threshold").tolist() == [[1, 0, 0, 0], [0, 1, 1, 0]]


def test_sparsegpt_mask_block_setting_is_checked():
    with pytest.raises(RecipeError, match="mask_block"):
        load_recipe({"modifiers": [{"type": "sparsegpt", "block_size": 64, "mask_block": 128}]})


def test_gptq_keeps_existing_zeros():
    x = correlated_inputs()
    w = torch.randn(16, 64) * alg.magnitude_mask(torch.randn(16, 64), 0.5)
    for float_zero in (False, True):
        q, _, _ = alg.gptq_(w, 2 * x.t() @ x / 512, 4, 16, symmetric=False, float_zero=float_zero)
        assert torch.all(q[w == 0] == 0)


def test_float_zero_point_recovers_a_q4_1_grid_exactly():
    # GGUF Q4_1 (SmolLM2's source format): per block of 32, w = d * q + m with q in 0..15
    g = torch.Generator().manual_seed(0)
    q = torch.randint(0, 16, (8, 64), generator=g).float()
    q[:, ::32], q[:, 1::32] = 0.0, 15.0  # every block uses its full range, as Q4_1's quantizer ensures
    d = torch.rand(8, 2, 1, generator=g) * 0.01 + 1e-3
    m = -torch.rand(8, 2, 1, generator=g) * 0.05
    w = (q.reshape(8, 2, 32) * d + m).reshape(8, 64)
    exact, scales, zeros = alg.rtn(w, 4, 32, symmetric=False, float_zero=True)
    assert torch.allclose(exact, w, atol=1e-7)
    integer, _, _ = alg.rtn(w, 4, 32, symmetric=False)
    assert float((integer - w).abs().max()) > 1e-4  # the rounded zero point shifts the grid
    x = correlated_inputs()
    gq, gs, gz = alg.gptq_(w, 2 * x.t() @ x / 512, 4, 32, symmetric=False, act_order=True, float_zero=True)
    codes = gq.reshape(8, 2, 32) / gs.unsqueeze(-1) + gz.unsqueeze(-1)
    assert torch.allclose(codes, codes.round(), atol=1e-3) and codes.round().min() >= 0 and codes.round().max() <= 15


# -- the block-by-block engine -----------------------------------------------------------------------------
def test_sequential_propagation_matches_the_full_forward():
    """With nothing compressed, the captured-and-propagated hidden states equal the model's own."""
    model = tiny_llama(layers=3)
    cal = calibration(4)
    inputs = capture_block_inputs(model, decoder_blocks(model)[1][0], [{"input_ids": cal}])
    args, kwargs = inputs[0]
    hidden = args[0] if args else kwargs["hidden_states"]
    expected = model(input_ids=cal, output_hidden_states=True).hidden_states
    assert torch.allclose(hidden, expected[0], atol=1e-6)
    seen = []
    run_sequential(
        model, [(block_linears(model), "sq_norms", lambda n, m, s: seen.append(n))], [{"input_ids": cal}], False
    )
    assert seen == list(block_linears(model))  # every Linear, block by block, in order


def test_true_sequential_collects_each_stage_with_the_earlier_ones_compressed():
    cal = [{"input_ids": calibration(4)}]
    model = tiny_llama(layers=2)
    block = decoder_blocks(model)[1][0]
    first = {n: m for n, m in block_linears(model).items() if n.startswith("model.layers.0.")}
    stages = linear_stages(block, first, *capture_block_inputs(model, block, cal)[0])
    assert [[n.split(".")[-1] for n in stage] for stage in stages] == [
        ["q_proj", "k_proj", "v_proj"],
        ["o_proj"],
        ["gate_proj", "up_proj"],
        ["down_proj"],
    ]

    def statistics_seen(true_sequential: bool) -> dict[str, torch.Tensor]:
        seen = {}

        def halve_v(name, module, stat):  # attention output is linear in v: o_proj's inputs halve too
            seen[name] = stat.clone()
            if name.endswith("v_proj"):
                module.weight.mul_(0.5)

        model = tiny_llama(layers=2)
        run_sequential(model, [(block_linears(model), "sq_norms", halve_v)], cal, False, true_sequential)
        return seen

    per_block, staged = statistics_seen(False), statistics_seen(True)
    o_proj = "model.layers.0.self_attn.o_proj"
    assert torch.equal(staged["model.layers.0.self_attn.q_proj"], per_block["model.layers.0.self_attn.q_proj"])
    assert torch.allclose(staged[o_proj], per_block[o_proj] / 4, rtol=1e-5)
    assert list(staged) == list(per_block)  # the same Linears, in the same order


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
@pytest.mark.parametrize("pattern", ["unstructured", "2:4"])
def test_exact_sparsity_and_nm_pattern(method, pattern):
    model = tiny_llama()
    session = apply_recipe_(
        model, {"modifiers": [{"type": method, "sparsity": 0.5, "pattern": pattern}]}, calibration(), progress=False
    )
    for name, m in block_linears(model).items():
        w = m.weight.detach()
        assert float((w == 0).float().mean()) == 0.5, name
        if pattern == "2:4":
            assert torch.all((w.reshape(w.shape[0], -1, 4) != 0).sum(-1) == 2), name
    dense = tiny_llama()
    assert torch.equal(model.lm_head.weight, dense.lm_head.weight)
    assert torch.equal(model.model.embed_tokens.weight, dense.model.embed_tokens.weight)
    assert session.modifiers[0].stats()["sparsity"] == 0.5


def test_pruning_with_calibration_hurts_less_than_magnitude():
    cal = calibration(32)
    ref = tiny_llama()(cal).logits.detach()
    errors = {}
    for method in ("magnitude", "wanda", "sparsegpt"):
        model = tiny_llama()
        apply_recipe_(model, {"modifiers": [{"type": method, "sparsity": 0.5}]}, cal, progress=False)
        errors[method] = float(((model(cal).logits - ref) ** 2).mean().detach())
    assert errors["sparsegpt"] < errors["magnitude"] and errors["wanda"] < errors["magnitude"]


@pytest.mark.parametrize(
    "spec", [{"type": "sparsegpt", "sparsity": 0.5}, {"type": "gptq", "bits": 4, "group_size": 16, "act_order": True}]
)
def test_deterministic(spec):
    weights = []
    for _ in range(2):
        model = tiny_llama()
        apply_recipe_(model, {"modifiers": [spec]}, calibration(), progress=False)
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_sparse_then_gptq_keeps_the_zeros():
    model = tiny_llama()
    recipe = {"modifiers": [{"type": "wanda", "sparsity": 0.5}, {"type": "gptq", "bits": 4, "group_size": 16}]}
    apply_recipe_(model, recipe, calibration(), progress=False)
    for name, m in block_linears(model).items():
        assert float((m.weight == 0).float().mean()) >= 0.5, name


# -- export and reload -------------------------------------------------------------------------------
RELOAD = """
import json, torch
from transformers import AutoModelForCausalLM
m = AutoModelForCausalLM.from_pretrained({folder!r}).eval()
ws = [mod.weight for n, mod in m.named_modules() if n.startswith("model.layers.") and isinstance(mod, torch.nn.Linear)]
with torch.no_grad():
    logits = m(torch.tensor({ids!r})).logits
print(json.dumps({{"logits": logits.tolist(), "sparsity": sum(int((w == 0).sum()) for w in ws) / sum(w.numel() for w in ws)}}))
"""


def reload_fresh(model, folder: str) -> tuple[dict, torch.Tensor]:
    """Logits and block-Linear sparsity from a fresh process without hf_lite, and the in-memory logits."""
    cal = calibration(2, 12, seed=5)
    with torch.no_grad():
        expected = model(cal).logits
    got = run_fresh(RELOAD.format(folder=folder, ids=cal.tolist()))
    assert not got["hf_lite_imported"]
    assert torch.allclose(torch.tensor(got["logits"]), expected, atol=1e-5)
    return got, expected


def test_gptq_export_reloads_without_hf_lite_and_the_grid_checks(tmp_path):
    model = tiny_llama()
    session = apply_recipe_(
        model,
        {"modifiers": [{"type": "gptq", "bits": 4, "group_size": 16, "symmetric": False}]},
        calibration(),
        progress=False,
    )
    folder = str(tmp_path / "gptq")
    session.export(model, folder)
    reload_fresh(model, folder)
    from safetensors import safe_open
    from safetensors.torch import load_file

    grid = load_file(os.path.join(folder, GRID_FILE))
    with safe_open(os.path.join(folder, GRID_FILE), "pt") as f:
        meta = f.metadata()
    assert meta["bits"] == "4" and json.loads(meta["group_size"]) == 16
    weights = load_file(os.path.join(folder, "model.safetensors"))
    w = weights["model.layers.1.mlp.down_proj.weight"]
    s, z = grid["model.layers.1.mlp.down_proj.scales"], grid["model.layers.1.mlp.down_proj.zeros"]
    codes = grid_codes(w, s, z)
    assert torch.allclose(codes, codes.round(), atol=1e-3) and codes.round().min() >= 0 and codes.round().max() <= 15


def test_sparse_export_reload_gives_same_logits_and_sparsity(tmp_path):
    model = tiny_llama()
    apply_recipe_(model, {"modifiers": [{"type": "sparsegpt", "pattern": "2:4"}]}, calibration(), progress=False)
    folder = str(tmp_path / "sparse")
    model.save_pretrained(folder)
    got, expected = reload_fresh(model, folder)
    assert got["sparsity"] == 0.5
    assert torch.allclose(torch.tensor(got["logits"]), expected, atol=1e-5)


# -- recipes, hf-lite run and bad input ------------------------------------------------------------------
@pytest.fixture
def llama_dir(tmp_path):
    folder = str(tmp_path / "tiny-llama")
    tiny_llama().save_pretrained(folder)
    make_tokenizer(folder)
    text = tmp_path / "text.txt"
    rng = torch.Generator().manual_seed(0)
    words = [WORDS[int(i)] for i in torch.randint(0, len(WORDS), (4000,), generator=rng)]
    text.write_text(" ".join(words))
    return folder, str(text)


@pytest.mark.parametrize(
    "modifiers",
    [
        [{"type": "wanda", "sparsity": 0.5}],
        # a float zero point has no 0.0 on its grid: the snap at finalize must still keep the pruned zeros
        [
            {"type": "wanda", "sparsity": 0.5},
            {"type": "gptq", "group_size": 16, "symmetric": False, "zero_point": "float"},
        ],
    ],
    ids=["wanda", "wanda+gptq_float_zero"],
)
def test_run_recipe_one_shot_then_recovery_keeps_the_mask(tmp_path, llama_dir, modifiers):
    from hf_lite import run_recipe

    folder, text = llama_dir
    recipe = {
        "model": {"name_or_path": folder, "task": "causal-lm"},
        "data": {"train": text, "eval": text, "max_length": 32, "max_train_samples": 32, "max_eval_samples": 4},
        "calibration": {"samples": 8, "seq_len": 32},
        "training": {"max_steps": 4, "learning_rate": 1e-2, "per_device_train_batch_size": 8},
        "modifiers": modifiers,
        "export": {"output_dir": str(tmp_path / "out")},
    }
    report = run_recipe(recipe)
    # exactly the pruned half; a quantizer may round a few more small weights onto a 0.0 grid point
    assert (
        report["compression"]["sparsity"] == 0.5
        if len(modifiers) == 1
        else 0.5 <= report["compression"]["sparsity"] < 0.51
    )
    assert "oneshot_perplexity" in report["metrics"]["after_oneshot"]
    assert report["metrics"]["train"]["train_loss"] > 0
    assert report["timings_s"]["oneshot_s"] > 0
    assert isinstance(report["generation_sample"]["greedy"], str)


def recovery_recipe(llama_dir: tuple, out, modifiers: list, steps: int = 4, lr: float = 1e-2) -> dict:
    """A one-shot + recovery recipe on the tiny Llama: calibration 8 x 32 tokens, then ``steps`` of 8 x 32."""
    folder, text = llama_dir
    return {
        "model": {"name_or_path": folder, "task": "causal-lm"},
        "data": {"train": text, "max_length": 32, "max_train_samples": 32},
        "calibration": {"samples": 8, "seq_len": 32},
        "training": {"max_steps": steps, "learning_rate": lr, "per_device_train_batch_size": 8},
        "modifiers": modifiers,
        "export": {"output_dir": str(out)},
    }


@pytest.mark.parametrize("zero_point", ["int", "float"])
def test_gptq_recovery_learns_scales_and_keeps_the_codes(tmp_path, llama_dir, zero_point):
    """``recovery: scales``: training moves only the per-group scales; the integer codes of every weight
    are those GPTQ chose, the export lies exactly on the trained grid and reloads as a plain Linear."""
    from safetensors.torch import load_file

    from hf_lite import run_recipe

    folder, text = llama_dir
    spec = {"type": "gptq", "group_size": 16, "symmetric": False, "zero_point": zero_point}
    recipe = recovery_recipe(llama_dir, tmp_path / "out", [{"type": "wanda", "sparsity": 0.5}, spec], steps=6)
    report, model = run_recipe(recipe, return_model=True)
    assert all(type(m) is torch.nn.Linear for m in block_linears(model).values())
    assert report["compression"]["sparsity"] == 0.5  # wanda's zeros survive learned scales on either grid

    # the same one-shot step without training: its codes are what the recovery must keep
    oneshot, session = oneshot_reference(folder, text, recipe["modifiers"])
    grid = load_file(os.path.join(tmp_path / "out", GRID_FILE))
    weights = load_file(os.path.join(tmp_path / "out", "model.safetensors"))
    name = "model.layers.1.mlp.down_proj"
    w, s, z = weights[f"{name}.weight"], grid[f"{name}.scales"], grid[f"{name}.zeros"]
    w0, s0 = dict(oneshot.named_modules())[name].weight.detach(), session.modifiers[1].scales[name]
    assert not torch.allclose(s, s0)  # the scales trained
    kept = w.reshape(w.shape[0], -1, 16) != 0
    codes, codes0 = grid_codes(w, s, z)[kept], grid_codes(w0, s0, z)[kept]
    assert torch.allclose(codes, codes.round(), atol=1e-3)  # on the trained grid
    assert torch.equal(codes.round(), codes0.round())  # with GPTQ's codes
    assert torch.equal(w == 0, w0 == 0)


@pytest.mark.parametrize("recovery", ["scales", "scales_only"])
def test_scales_recovery_trains_the_float_parameters_unless_scales_only(tmp_path, llama_dir, recovery):
    """``scales`` also trains what the quantizer leaves in float (embeddings, norms); ``scales_only``
    freezes all of it, so the scales are all that moves, and the report counts exactly them."""
    from safetensors.torch import load_file

    from hf_lite import run_recipe

    folder, text = llama_dir
    spec = {"type": "gptq", "group_size": 16, "symmetric": False, "recovery": recovery}
    recipe = recovery_recipe(llama_dir, tmp_path / "out", [spec])
    report, model = run_recipe(recipe, return_model=True)
    oneshot, session = oneshot_reference(folder, text, [spec])
    weights = load_file(os.path.join(tmp_path / "out", "model.safetensors"))
    grid = load_file(os.path.join(tmp_path / "out", GRID_FILE))
    floats = ("model.embed_tokens.weight", "model.layers.0.input_layernorm.weight", "model.norm.weight")
    moved = {n: not torch.equal(weights[n], oneshot.state_dict()[n]) for n in floats}
    assert moved == dict.fromkeys(floats, recovery == "scales")
    name = "model.layers.1.mlp.down_proj"
    assert not torch.allclose(grid[f"{name}.scales"], session.modifiers[0].scales[name])  # the scales trained
    n_scales = sum(grid[k].numel() for k in grid if k.endswith(".scales"))
    if recovery == "scales_only":
        assert report["trainable_parameters"] == n_scales
    else:
        assert report["trainable_parameters"] > n_scales
    assert all(p.requires_grad for p in model.parameters())  # frozen only while training


def test_scales_only_recovery_refuses_lora(tmp_path, llama_dir):
    from transformers import AutoModelForCausalLM, TrainingArguments

    from hf_lite import LiteTrainer

    folder, _ = llama_dir
    recipe = [{"type": "lora", "r": 4}, {"type": "gptq", "group_size": 16, "recovery": "scales_only"}]
    with pytest.raises(RecipeError, match="use recovery: scales with lora"):
        LiteTrainer(
            model=AutoModelForCausalLM.from_pretrained(folder),
            args=TrainingArguments(str(tmp_path / "t"), use_cpu=True, report_to=[]),
            recipe=recipe,
        )


def test_lora_merge_over_learned_scales_lands_on_the_trained_grid(tmp_path, llama_dir):
    """LoRA trained over a GPTQ base with learnable scales: the merge moves the weights, and the
    quantizer's finalize rounds the merged weights onto its trained grid (the merge is not dropped)."""
    from safetensors.torch import load_file

    from hf_lite import run_recipe

    folder, text = llama_dir
    modifiers = [{"type": "lora", "r": 4, "merge": True}, {"type": "gptq", "group_size": 16, "symmetric": False}]
    recipe = recovery_recipe(llama_dir, tmp_path / "out", modifiers, lr=5e-2)
    run_recipe(recipe)
    oneshot, session = oneshot_reference(folder, text, recipe["modifiers"][1:])  # LoRA's B = 0: same inputs
    weights = load_file(os.path.join(tmp_path / "out", "model.safetensors"))
    grid = load_file(os.path.join(tmp_path / "out", GRID_FILE))
    changed = 0
    for name, s0 in session.modifiers[0].scales.items():
        w, s, z = weights[f"{name}.weight"], grid[f"{name}.scales"], grid[f"{name}.zeros"]
        codes = grid_codes(w, s, z)
        assert torch.allclose(codes, codes.round(), atol=1e-3), name  # on the trained grid
        codes0 = grid_codes(dict(oneshot.named_modules())[name].weight.detach(), s0, z)
        changed += int((codes.round() != codes0.round()).sum())
    assert changed > 0  # the merged LoRA update moved weights to other codes


def test_calibration_chunks_are_sequential_or_seeded(tokenizer):
    text = " ".join(WORDS * 40)
    seq = calibration_token_chunks(text, tokenizer, 4, 16)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert seq.flatten().tolist() == ids[:64]
    a = calibration_token_chunks(text, tokenizer, 4, 16, "random", seed=3)
    assert torch.equal(a, calibration_token_chunks(text, tokenizer, 4, 16, "random", seed=3))
    with pytest.raises(RecipeError, match="calibration.samples"):
        calibration_token_chunks(text, tokenizer, 1000, 64)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"type": "wanda", "sparsity": 1.0}, "sparsity"),
        ({"type": "sparsegpt", "pattern": "4:2"}, "N:M"),
        ({"type": "gptq", "bits": 3}, "bits"),
        ({"type": "gptq", "damp": 0}, "damp"),
        ({"type": "rtn", "group_size": 1}, "group_size"),
        ({"type": "gptq", "zero_point": "float"}, "symmetric: false"),
        ({"type": "wanda", "sparsity": 0.5, "schedule": "cubic"}, "schedule"),
    ],
)
def test_bad_settings_fail_before_anything_runs(spec, match):
    with pytest.raises(RecipeError, match=match):
        load_recipe({"modifiers": [spec]})


def test_bad_model_fit_fails_before_compressing():
    model = tiny_llama()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RecipeError, match="group_size 96 is larger than in_features 32"):
        apply_recipe_(model, {"modifiers": [{"type": "gptq", "group_size": 96}]}, calibration(), progress=False)
    with pytest.raises(RecipeError, match="need training"):
        apply_recipe_(model, {"modifiers": [{"type": "magnitude_pruning"}]}, calibration(), progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_mse_observer_rounds_heavy_tailed_weights_better():
    torch.manual_seed(0)
    w = torch.distributions.StudentT(3.0).sample((64, 128))  # outliers, as in LLM weights
    for symmetric in (True, False):
        plain, _, _ = alg.rtn(w, 4, 64, symmetric)
        mse, _, _ = alg.rtn(w, 4, 64, symmetric, observer="mse")
        assert float(((mse - w) ** 2).sum()) < 0.95 * float(((plain - w) ** 2).sum())


@pytest.mark.parametrize(
    "recipe",
    [
        [{"type": "wanda", "sparsity": 0.5}],
        [{"type": "gptq", "bits": 4, "group_size": 16, "symmetric": False, "recovery": "scales"}],
    ],
    ids=["wanda", "gptq_scales"],
)
def test_one_shot_then_recovery_resumes_to_the_uninterrupted_weights(tmp_path, recipe):
    """The one-shot step runs at train begin in LiteTrainer; a resumed run does not redo it: the
    checkpoint holds the compressed weights, the trained scales and the modifier state."""
    from conftest import token_dataset, training_args

    from hf_lite import LiteTrainer

    def run(sub, resume=None, **kw):
        args = training_args(tmp_path / sub, max_steps=6, per_device_train_batch_size=4, **kw)
        t = LiteTrainer(model=tiny_llama(), args=args, train_dataset=token_dataset(), recipe=recipe)
        t.train(resume_from_checkpoint=resume)
        return t.final_model

    full = run("a")
    run("b", save_strategy="steps", save_steps=3)
    resumed = run("b", resume=str(tmp_path / "b" / "out" / "checkpoint-3"), save_strategy="steps", save_steps=3)
    for (n, a), (_, b) in zip(full.named_parameters(), resumed.named_parameters()):
        assert torch.allclose(a, b, atol=1e-6), n
    w = resumed.model.layers[0].mlp.up_proj.weight
    if recipe[0]["type"] == "wanda":
        assert float((w == 0).float().mean()) == pytest.approx(0.5)
    else:
        assert max(torch.unique(g).numel() for g in w.detach().reshape(-1, 16)) <= 16


def test_grid_linear_from_linear_computes_as_before_and_to_linear_restores_it():
    from hf_lite.oneshot.base import GridLinear

    torch.manual_seed(0)
    lin = torch.nn.Linear(20, 6)
    grid = GridLinear.from_linear(lin, group=8)  # ragged: 3 groups of 8, 8 and 4 columns
    assert grid.weight is lin.weight and not lin.weight.requires_grad and grid.weight_qscale.shape == (6, 3)
    x = torch.randn(2, 20)
    assert torch.equal(grid(x), torch.nn.functional.linear(x, lin.weight, lin.bias))  # scales start at 1
    with torch.no_grad():
        grid.weight_qscale[:, 2] = 2.0  # the last (4-column) group's scale doubles: its weights double
    want = lin.weight.detach().clone()
    want[:, 16:] *= 2
    assert torch.allclose(grid.grid_weight(), want)
    back = grid.to_linear()
    assert type(back) is torch.nn.Linear and back.weight is lin.weight and back.weight.requires_grad
    assert "weight_qscale" not in back.state_dict()
