import pytest
import torch
from conftest import lite, run_fresh, tiny_bert, tiny_llama, token_dataset, training_args
from torch import nn

from hf_lite import LiteTrainer, RecipeError
from hf_lite.core.modifier import Context, build_modifier
from hf_lite.core.targets import find_linear_targets

pytest.importorskip("peft")


def test_head_only_counts(tmp_path, tiny_dataset):
    model = tiny_bert(layers=2)
    t = lite(tmp_path, tiny_dataset, [{"type": "head_only"}], model=model, train=False, max_steps=2)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"classifier.weight", "classifier.bias", "bert.pooler.dense.weight", "bert.pooler.dense.bias"}
    model3 = tiny_bert(layers=2)
    lite(tmp_path, tiny_dataset, [{"type": "head_only", "pooler": False}], model=model3, train=False)
    assert {n for n, p in model3.named_parameters() if p.requires_grad} == {"classifier.weight", "classifier.bias"}
    frozen = model.bert.encoder.layer[0].output.dense.weight.clone()
    t.train()
    assert torch.equal(frozen, model.bert.encoder.layer[0].output.dense.weight)
    model2 = tiny_bert(layers=2)
    lite(tmp_path, tiny_dataset, [{"type": "head_only", "unfreeze_last": 1}], model=model2, train=False)
    names = {n for n, p in model2.named_parameters() if p.requires_grad}
    assert any(n.startswith("bert.encoder.layer.1.") for n in names) and not any(
        n.startswith("bert.encoder.layer.0.") for n in names
    )


def test_lora_counts_merge_equals_unmerged(tmp_path, tiny_dataset):
    t = lite(
        tmp_path,
        tiny_dataset,
        [{"type": "lora", "r": 4, "merge": False}],
        model=tiny_bert(dropout=0.0),
        train=False,
        max_steps=4,
    )
    mod = t.session.modifiers[0]
    assert 0 < mod.trainable / mod.total < 0.25
    t.train()
    peft_model = t.final_model.eval()
    x = torch.tensor([tiny_dataset[0]["input_ids"]])
    with torch.no_grad():
        unmerged = peft_model(input_ids=x).logits
        merged_model = mod.merge(peft_model)
        merged = merged_model(input_ids=x).logits
    assert torch.allclose(unmerged, merged, atol=1e-5)
    assert type(merged_model).__name__ == "BertForSequenceClassification"


def test_lora_on_pruned_model_merge_keeps_sparsity(tmp_path, tiny_dataset):
    recipe = [
        {"type": "magnitude_pruning", "final_sparsity": 0.6, "start": 0, "end": 0},
        {"type": "lora", "r": 4},
    ]
    # prune first (one-shot), then LoRA + constant_pruning in a second stage
    t = lite(tmp_path, tiny_dataset, recipe[:1], max_steps=1)
    pruned = t.final_model
    zeros = {n: (m.weight == 0).clone() for n, m in find_linear_targets(pruned).items()}
    t2 = lite(
        tmp_path / "2",
        tiny_dataset,
        [{"type": "lora", "r": 4}, {"type": "constant_pruning"}],
        model=pruned,
        max_steps=4,
        learning_rate=1e-2,
    )
    final = t2.final_model
    for n, m in find_linear_targets(final).items():
        assert torch.equal(m.weight == 0, zeros[n]), n  # exactly the base's zeros, no more, no fewer
    # without preserve_sparsity the merge densifies (the bug peers have)
    t3 = lite(tmp_path / "3", tiny_dataset, recipe[:1], max_steps=1)
    t4 = lite(
        tmp_path / "4",
        tiny_dataset,
        [{"type": "lora", "r": 4, "preserve_sparsity": False}],
        model=t3.final_model,
        train=False,
        max_steps=4,
        learning_rate=1e-2,
    )
    t4.train()
    assert any((m.weight == 0).float().mean() < 0.5 for m in find_linear_targets(t4.final_model).values())


def test_lora_export_both_ways_reload_fresh_process(tmp_path, tiny_dataset):
    t = lite(
        tmp_path, tiny_dataset, [{"type": "lora", "r": 4, "merge": False}], model=tiny_bert(dropout=0.0), max_steps=3
    )
    peft_model = t.final_model.eval()
    x = torch.tensor([tiny_dataset[0]["input_ids"]])
    with torch.no_grad():
        ref = peft_model(input_ids=x).logits.flatten()
    base_dir, adapter_dir, merged_dir = tmp_path / "base", tmp_path / "adapter", tmp_path / "merged"
    tiny_bert(dropout=0.0).save_pretrained(base_dir)
    peft_model.save_pretrained(adapter_dir)
    t.session.modifiers[0].merge(peft_model).save_pretrained(merged_dir)
    code = (
        "import torch, json; from transformers import AutoModelForSequenceClassification as A; from peft import PeftModel;"
        f"x = torch.tensor([{x[0].tolist()!r}]);"
        f"a = PeftModel.from_pretrained(A.from_pretrained({str(base_dir)!r}), {str(adapter_dir)!r}).eval();"
        f"m = A.from_pretrained({str(merged_dir)!r}).eval();"
        "print(json.dumps({'adapter': a(input_ids=x).logits.flatten().tolist(), 'merged': m(input_ids=x).logits.flatten().tolist()}))"
    )
    got = run_fresh(code)
    assert not got["hf_lite_imported"]
    assert torch.allclose(torch.tensor(got["adapter"]), ref, atol=1e-5)
    assert torch.allclose(torch.tensor(got["merged"]), ref, atol=1e-5)


def test_lora_bad_targets_and_callback_needs_prepare(tmp_path, tiny_dataset):
    with pytest.raises(RecipeError, match="'q_proj' matches no"):
        lite(tmp_path, tiny_dataset, [{"type": "lora", "target_modules": ["q_proj"]}], train=False)
    from transformers import Trainer

    from hf_lite import CompressionCallback

    with pytest.raises(ValueError, match="prepare_model"):
        Trainer(
            model=tiny_bert(),
            args=training_args(tmp_path),
            train_dataset=tiny_dataset,
            callbacks=[CompressionCallback([{"type": "lora"}])],
        )


def test_qlora_gets_gradients_after_evaluate(tmp_path):
    """Regression: bitsandbytes repacks Linear4bit for CPU inference after an eval forward, and LoRA
    then silently gets no gradient. hf_lite's guard keeps training working after evaluate()."""
    pytest.importorskip("bitsandbytes")
    ds = token_dataset()
    t = LiteTrainer(
        model=tiny_llama(),
        args=training_args(tmp_path, max_steps=3),
        train_dataset=ds,
        eval_dataset=ds,
        recipe=[{"type": "qlora", "r": 4}],
    )
    assert any(type(m).__name__ == "Linear4bit" for m in t.model.modules())
    t.evaluate()
    # the guard: no Linear4bit may switch to the CPU inference layout (this CPU has no AVX512-BF16, so
    # bitsandbytes would not repack here anyway; on CPUs that have it, this flag is what keeps LoRA training)
    four_bit = [m for m in t.model.modules() if type(m).__name__ == "Linear4bit"]
    assert four_bit and all(m.support_avx512bf16_for_cpu is False for m in four_bit)
    grads = {}

    from transformers import TrainerCallback

    class Grab(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
            for n, p in model.named_parameters():
                if "lora_" in n:
                    grads[n] = p.grad is not None and bool(p.grad.abs().sum() > 0)

    t.add_callback(Grab())
    t.train()
    assert grads and all(grads.values()), [n for n, ok in grads.items() if not ok][:3]
    merging = build_modifier({"type": "qlora", "r": 4, "merge": True})
    with pytest.raises(RecipeError, match="merge over a 4-bit base"):
        merging.finalize(t.model, Context())


def test_lora_with_qat_merges_then_converts_onto_the_grid(tmp_path, tiny_dataset):
    """LoRA over a fake-quantized base: at finalize the adapters merge, then QAT snaps onto its grid."""
    from transformers import AutoModelForSequenceClassification

    from hf_lite.report import model_report

    trainer = lite(
        tmp_path, tiny_dataset, [{"type": "lora", "r": 4, "merge": True}, {"type": "qat", "bits": 8}], max_steps=4
    )
    final = trainer.final_model
    assert type(final).__name__ == "BertForSequenceClassification"
    assert all(type(m) is nn.Linear for n, m in final.named_modules() if n.endswith(("query", "value", "dense")))
    report = model_report(final)
    assert report["bits"] == 8.0
    final.save_pretrained(tmp_path / "merged")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged")
    assert model_report(reloaded)["bits"] == 8.0


def test_lora_student_with_distillation(tmp_path, tiny_dataset):
    """LoRA on the student and KD from a teacher in one recipe: only adapters (and the head) train,
    the KD term is logged, and the merged student reloads as a plain model."""
    from transformers import AutoModelForSequenceClassification

    teacher = tiny_bert(layers=2, seed=3, dropout=0.0)
    recipe = [{"type": "lora", "r": 4, "merge": True}, {"type": "distillation", "alpha": 0.7, "temperature": 2.0}]
    trainer = lite(tmp_path, tiny_dataset, recipe, model=tiny_bert(dropout=0.0), teacher=teacher, max_steps=4)
    assert any("loss/distillation/soft" in log for log in trainer.state.log_history)
    assert not any(p.requires_grad for p in teacher.parameters())
    final = trainer.final_model
    final.save_pretrained(tmp_path / "student")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "student").eval()
    x = torch.tensor(tiny_dataset[:4]["input_ids"])
    with torch.no_grad():
        assert torch.allclose(reloaded(x).logits, final.eval()(x).logits, atol=1e-5)


def test_lora_resume_equals_uninterrupted(tmp_path, tiny_dataset):
    """Adapter weights (and the head in modules_to_save) come back from peft's own checkpoint files."""
    recipe = [{"type": "lora", "r": 4, "merge": False}]
    full = lite(tmp_path / "a", tiny_dataset, recipe, model=tiny_bert(dropout=0.0), max_steps=6)
    args = dict(max_steps=6, save_strategy="steps", save_steps=3)
    lite(tmp_path / "b", tiny_dataset, recipe, model=tiny_bert(dropout=0.0), **args)
    resumed = lite(tmp_path / "b", tiny_dataset, recipe, model=tiny_bert(dropout=0.0),
                   resume=str(tmp_path / "b" / "out" / "checkpoint-3"), **args)  # fmt: skip
    a = {n: p for n, p in full.model.named_parameters() if p.requires_grad}
    b = {n: p for n, p in resumed.model.named_parameters() if p.requires_grad}
    assert a.keys() == b.keys() and any("lora_" in n for n in a)
    for n in a:
        assert torch.allclose(a[n], b[n], atol=1e-6), n
