import json

import pytest
import torch
from conftest import lite, run_fresh, tiny_bert

from hf_lite import RecipeError
from hf_lite.core.targets import find_linear_targets
from hf_lite.quantization import int_fake_quant, int_qparams, nf4_fake_quant, quantize_dequantize
from hf_lite.quantization.qat import FakeQuantLinear


def explicit_qdq(w, bits, group, symmetric):
    """Quantize to integers, then dequantize, written out longhand."""
    rows, cols = w.shape
    g = w.reshape(rows, -1, group or cols)
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        s = g.abs().amax(-1, keepdim=True) / qmax
        q = torch.clamp(torch.round(g / s), -qmax, qmax)
        return (q * s).reshape(rows, cols)
    lo, hi = g.amin(-1, keepdim=True).clamp(max=0), g.amax(-1, keepdim=True).clamp(min=0)
    s = (hi - lo) / (2**bits - 1)
    z = torch.round(-lo / s)
    q = torch.clamp(torch.round(g / s) + z, 0, 2**bits - 1)
    return ((q - z) * s).reshape(rows, cols)


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("group", [None, 16])
@pytest.mark.parametrize("symmetric", [True, False])
def test_fake_quant_equals_explicit(bits, group, symmetric):
    torch.manual_seed(0)
    w = torch.randn(8, 64)
    got = quantize_dequantize(w, bits, group, symmetric)
    assert torch.allclose(got, explicit_qdq(w, bits, group, symmetric), atol=1e-6)
    assert torch.allclose(quantize_dequantize(got, bits, group, symmetric), got, atol=1e-6)  # idempotent
    levels = max(torch.unique(r).numel() for r in got.reshape(8, -1, group or 64).reshape(-1, group or 64))
    assert levels <= 2**bits


def test_ste_gradients():
    w = torch.randn(4, 32, requires_grad=True)
    scale, zero = int_qparams(w, 4, None, True)
    int_fake_quant(w, scale, zero, 4, None, True).sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))  # straight through
    s = scale.clone().requires_grad_(True)
    w2 = w.detach().clone().requires_grad_(True)
    int_fake_quant(w2, s, zero, 4, None, True).pow(2).sum().backward()
    assert s.grad is not None and s.grad.abs().sum() > 0  # LSQ: the scale learns
    w3 = torch.randn(2, 64, requires_grad=True)
    nf4_fake_quant(w3).sum().backward()
    assert torch.equal(w3.grad, torch.ones_like(w3))


def test_nf4_grid_matches_bitsandbytes():
    bnbf = pytest.importorskip("bitsandbytes.functional")
    torch.manual_seed(0)
    w = torch.randn(32, 64)
    snapped = quantize_dequantize(w, 4, None, True, grid="nf4")
    packed, state = bnbf.quantize_4bit(snapped, blocksize=64, quant_type="nf4")
    again = bnbf.dequantize_4bit(packed, state, blocksize=64, quant_type="nf4")
    assert torch.allclose(again, snapped, atol=1e-6)
    packed, state = bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4")
    assert torch.allclose(bnbf.dequantize_4bit(packed, state, blocksize=64, quant_type="nf4"), snapped, atol=1e-6)


@pytest.mark.parametrize(
    "qat",
    [
        {"bits": 8},
        {"bits": 4, "group_size": 16, "symmetric": False},
        {"bits": 4, "grid": "nf4"},
        {"bits": 8, "activations": 8, "observer": "ema", "freeze_observers_at": 3},
        {"bits": 4, "group_size": 16, "learnable_scales": True, "start": 2},
    ],
)
def test_qat_trains_and_converts_onto_grid(tmp_path, tiny_dataset, qat):
    recipe = [{"type": "qat", **qat}]
    trainer = lite(tmp_path, tiny_dataset, recipe, train=False, max_steps=5)
    before = trainer.model.bert.encoder.layer[0].attention.self.query.weight.detach().clone()
    trainer.train()
    model = trainer.final_model
    assert type(model.bert.encoder.layer[0].attention.self.query) is torch.nn.Linear
    assert not any("qscale" in k for k in model.state_dict())
    w = model.bert.encoder.layer[0].attention.self.query.weight
    assert not torch.equal(w, before)
    grid = qat.get("grid", "int")
    group = qat.get("group_size") or w.shape[1]
    for g in w.reshape(-1, group):
        assert torch.unique(g).numel() <= 2 ** qat["bits"]  # every group lies on a 2^bits-level grid
    if "freeze_observers_at" not in qat and not qat.get("learnable_scales"):  # scales = current min/max
        again = quantize_dequantize(w, qat["bits"], qat.get("group_size"), qat.get("symmetric", True), grid=grid)
        assert torch.allclose(again, w, atol=1e-6)  # re-quantizing with the same grid is lossless


def test_qat_with_pruning_keeps_zeros(tmp_path, tiny_dataset):
    recipe = [
        {"type": "magnitude_pruning", "final_sparsity": 0.5, "start": 0, "end": 2, "update_every": 1},
        {"type": "qat", "bits": 4, "group_size": 16, "symmetric": False},
    ]
    trainer = lite(tmp_path, tiny_dataset, recipe, train=False, max_steps=4)
    pruning, qat = trainer.session.modifiers
    # QAT swapped the layers pruning had found: pruning holds the fake-quant layers now, not stale ones
    assert all(type(m) is FakeQuantLinear for m in pruning.modules.values())
    assert all(pruning.modules[n] is m for n, m in qat.modules.items())
    trainer.train()
    masks = pruning.masks
    targets = find_linear_targets(trainer.final_model)
    assert all(type(m) is torch.nn.Linear and pruning.modules[n] is m for n, m in targets.items())
    for name, m in targets.items():
        assert torch.equal(m.weight[masks[name] == 0], torch.zeros_like(m.weight[masks[name] == 0]))


def test_fake_quant_linear_from_and_to_linear_share_the_parameters():
    from hf_lite.quantization.qat import QATSettings, _QATState

    torch.manual_seed(0)
    lin = torch.nn.Linear(16, 8).eval()
    fq = FakeQuantLinear.from_linear(lin, _QATState(QATSettings(bits=4, group_size=8)))
    assert fq.weight is lin.weight and fq.bias is lin.bias and not fq.training
    assert list(fq.state_dict()) == list(lin.state_dict())
    x = torch.randn(3, 16)
    assert torch.equal(fq(x), lin(x))  # fake-quant off until the modifier enables it
    fq.qat.enabled = True
    want = torch.nn.functional.linear(x, quantize_dequantize(lin.weight, 4, 8, True), lin.bias)
    assert torch.allclose(fq(x), want, atol=1e-6)
    back = fq.to_linear()
    assert type(back) is torch.nn.Linear and back.weight is lin.weight and back.bias is lin.bias


def test_bad_settings_fail_before_training(tmp_path, tiny_dataset):
    with pytest.raises(RecipeError, match="bits: got 3"):
        lite(tmp_path, tiny_dataset, [{"type": "qat", "bits": 3}], train=False)
    with pytest.raises(RecipeError, match="does not divide in_features 32"):
        lite(tmp_path, tiny_dataset, [{"type": "qat", "group_size": 24}], train=False)


def test_resume_equals_uninterrupted(tmp_path, tiny_dataset):
    recipe = [{"type": "qat", "bits": 4, "group_size": 16, "observer": "ema", "freeze_observers_at": 4}]

    def run(sub, resume=None, **kw):
        t = lite(tmp_path / sub, tiny_dataset, recipe, model=tiny_bert(dropout=0.0), max_steps=7, **kw, resume=resume)
        return t.final_model

    full = run("a")
    run("b", save_strategy="steps", save_steps=5)
    resumed = run("b", resume=str(tmp_path / "b" / "out" / "checkpoint-5"), save_strategy="steps", save_steps=5)
    for (n, a), (_, b) in zip(full.named_parameters(), resumed.named_parameters()):
        assert torch.allclose(a, b, atol=1e-6), n


def test_ptq_rtn_and_dynamic_int8(tmp_path, tiny_dataset):
    t = lite(tmp_path, tiny_dataset, [{"type": "ptq", "method": "rtn", "bits": 4, "group_size": 16}], max_steps=1)
    w = t.final_model.bert.encoder.layer[1].output.dense.weight
    assert torch.allclose(quantize_dequantize(w, 4, 16, True), w, atol=1e-6)
    t = lite(tmp_path, tiny_dataset, [{"type": "ptq", "method": "dynamic_int8"}], max_steps=1)
    assert "quantized.dynamic" in type(t.final_model.bert.encoder.layer[0].attention.self.query).__module__


BNB_LOGIT_TOL = 5e-3  # bitsandbytes' CPU 4/8-bit matmuls are not bit-exact with float matmuls


@pytest.mark.parametrize("bits", [4, 8])
def test_bnb_export_reloads_in_fresh_process(tmp_path, tiny_dataset, bits):
    """NF4-aware QAT then bnb 4-bit export: the reloaded 4-bit weights equal the trained grid exactly."""
    pytest.importorskip("bitsandbytes")
    recipe = [{"type": "qat", "bits": 4, "grid": "nf4"}] if bits == 4 else []
    recipe.append({"type": "bnb", "bits": bits})
    # hidden 64: bitsandbytes' CPU 4-bit kernels dequantize rows narrower than a 64-block wrongly on
    # AVX-512 CPUs (the bnb modifier warns about such layers); real models are multiples of 64 wide
    t = lite(tmp_path, tiny_dataset, recipe, model=tiny_bert(dropout=0.0, hidden=64), max_steps=3)
    model = t.final_model.eval()
    x = torch.tensor([tiny_dataset[0]["input_ids"]])
    with torch.no_grad():
        expected = model(input_ids=x).logits
    out = tmp_path / "bnb"
    t.session.modifiers[-1].export(model, str(out))
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["quantization_config"]["quant_method"] == "bitsandbytes"
    code = (
        "import torch, json, sys; import bitsandbytes.functional as F;"
        "from transformers import AutoModelForSequenceClassification as A;"
        f"m = A.from_pretrained({str(out)!r}).eval(); x = torch.tensor([{x[0].tolist()!r}]);"
        "q = m.bert.encoder.layer[0].attention.self.query;"
        "w = F.dequantize_4bit(q.weight.data, q.weight.quant_state) if hasattr(q.weight, 'quant_state') else None;"
        "print(json.dumps({'logits': m(input_ids=x).logits.flatten().tolist(), 'cls': type(q).__name__,"
        " 'w': None if w is None else w.flatten().tolist(), 'head': type(m.classifier).__name__}))"
    )
    got = run_fresh(code)
    assert not got["hf_lite_imported"]
    assert got["cls"] == ("Linear4bit" if bits == 4 else "Linear8bitLt")
    assert got["head"] == "Linear"  # the task head stays in full precision
    assert torch.allclose(torch.tensor(got["logits"]), expected.flatten(), atol=BNB_LOGIT_TOL if bits == 4 else 0.05)
    if bits == 4:
        ref = model.bert.encoder.layer[0].attention.self.query.weight.flatten()
        assert torch.equal(torch.tensor(got["w"]), ref)


def test_bnb_4bit_warns_about_layers_narrower_than_a_block(tiny_dataset, tmp_path, caplog):
    """hidden 32: every encoder Linear is narrower than bitsandbytes' 64-block, which its CPU kernels get
    wrong; the warning names one and how to keep them in float. The task head is skipped anyway."""
    import logging

    with caplog.at_level(logging.WARNING, logger="hf_lite.quantization.modifiers"):
        lite(tmp_path, tiny_dataset, [{"type": "bnb", "bits": 4}], train=False)
    assert "not a multiple of 64" in caplog.text and "add them to ignore" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hf_lite.quantization.modifiers"):
        lite(tmp_path, tiny_dataset, [{"type": "bnb", "bits": 4}], model=tiny_bert(hidden=64), train=False)
    assert "not a multiple" not in caplog.text
