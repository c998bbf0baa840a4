"""The trainer family (plain Trainer + callback, LiteTrainer, LiteSeq2SeqTrainer, LiteSFTTrainer) x the
modifier families (pruning, QAT, one-shot with recovery, distillation, LoRA): each trains a tiny model for
a few steps, saves the way a user's script does, and the folder reloads with plain transformers in a
fresh process showing the compression. Plus the lifecycle's edge cases in users' scripts."""

from __future__ import annotations

import json
import logging
import os
import sys

import pytest
import torch
from conftest import WORDS, make_tokenizer, run_fresh, tiny_bert, tiny_llama, training_args

from hf_lite import RecipeError

PRUNE = [{"type": "magnitude_pruning", "final_sparsity": 0.5, "start": 0, "end": 1, "update_every": 1}]
QAT = [{"type": "qat", "bits": 8}]
ONESHOT = [
    {"type": "wanda", "sparsity": 0.5},
    {"type": "gptq", "bits": 4, "group_size": 16, "symmetric": False, "recovery": "scales"},
]
KD = {"modifiers": [{"type": "distillation", "alpha": 0.5}], "model": {"init_from_teacher": {"layers": [0]}}}
KD_T5 = [{"type": "distillation", "alpha": 0.5}]  # init_from_teacher knows BERT and Llama blocks
LORA = [{"type": "lora", "r": 4, "alpha": 8, "dropout": 0.0}]


# -- data and models -----------------------------------------------------------------------------
def bert_data(tokenizer):
    import datasets
    from conftest import sentiment_rows

    rows = sentiment_rows(32)
    enc = tokenizer([r[0] for r in rows], truncation=True, max_length=16, padding="max_length")
    return datasets.Dataset.from_dict({**enc, "labels": [r[1] for r in rows]})


def llama_data():
    import datasets

    ids = [[(i * 5 + j) % 25 + 1 for j in range(16)] for i in range(32)]
    return datasets.Dataset.from_dict({"input_ids": ids, "labels": ids})


def tiny_t5(seed: int = 0):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=len(WORDS) + 5, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=3, dropout_rate=0.0,
    )  # fmt: skip
    return T5ForConditionalGeneration(config)


def t5_data():
    import datasets

    src = [[(i * 3 + j) % 20 + 5 for j in range(10)] for i in range(32)]
    tgt = [[(i * 5 + j) % 20 + 5 for j in range(2 + i % 5)] + [3] for i in range(32)]
    return datasets.Dataset.from_dict({"input_ids": src, "attention_mask": [[1] * 10] * 32, "labels": tgt})


def chat_tokenizer(folder: str):
    tok = make_tokenizer(folder)
    tok.chat_template = (
        "{% for m in messages %}{{ m['role'] }} {{ m['content'] }} {% endfor %}"
        "{% if add_generation_prompt %}assistant {% endif %}"
    )
    tok.eos_token = "[SEP]"
    return tok


def chat_data():
    import datasets

    w = WORDS[:12]
    rows = [
        {
            "prompt": [{"role": "user", "content": " ".join(w[(i + j) % 12] for j in range(5))}],
            "completion": [{"role": "assistant", "content": " ".join(w[(i * 3 + j) % 12] for j in range(3))}],
        }
        for i in range(32)
    ]
    return datasets.Dataset.from_list(rows)


# -- one run per (trainer, family) ---------------------------------------------------------------
def run(kind: str, family: str, tmp_path, recipe) -> tuple[torch.nn.Module, str, list]:
    """Train ``kind`` on ``family``'s tiny model for 3 steps and save as a user's script would. Returns the
    final model, the folder and the log history."""
    from transformers import DataCollatorForSeq2Seq, Trainer

    from hf_lite import CompressionCallback, LiteSeq2SeqTrainer, LiteTrainer, prepare_model

    out = str(tmp_path / f"{kind}-{family}")
    causal = family == "oneshot" or kind == "sft"
    teacher = None
    if family == "kd":
        teacher = tiny_t5(seed=1) if kind == "seq2seq" else tiny_llama(seed=1) if causal else tiny_bert(seed=1)
    if kind == "seq2seq":
        from hf_lite import LiteSeq2SeqTrainingArguments

        tok = make_tokenizer(str(tmp_path / "tok"))
        model = tiny_t5()
        args = LiteSeq2SeqTrainingArguments(
            output_dir=out + "-ckpt", max_steps=3, per_device_train_batch_size=8, report_to="none", use_cpu=True,
            save_strategy="no", predict_with_generate=True, disable_tqdm=True, logging_steps=1, learning_rate=1e-3,
        )  # fmt: skip
        trainer = LiteSeq2SeqTrainer(
            model=model, args=args, train_dataset=t5_data(), data_collator=DataCollatorForSeq2Seq(tok, model=model),
            processing_class=tok, recipe=recipe, teacher_model=teacher,
        )  # fmt: skip
    elif kind == "sft":
        from hf_lite import LiteSFTConfig, LiteSFTTrainer

        tok = chat_tokenizer(str(tmp_path / "chat-tok"))
        args = LiteSFTConfig(
            output_dir=out + "-ckpt", max_steps=3, per_device_train_batch_size=4, report_to="none", use_cpu=True,
            save_strategy="no", disable_tqdm=True, logging_steps=1, learning_rate=1e-3,
            bf16=False,  # TRL turns bf16 autocast on where the CPU supports it; compare float32 with float32
        )  # fmt: skip
        trainer = LiteSFTTrainer(
            model=tiny_llama(), args=args, train_dataset=chat_data(), processing_class=tok, recipe=recipe, teacher_model=teacher,
        )  # fmt: skip
    else:
        tok = make_tokenizer(str(tmp_path / "tok"))
        model = tiny_llama() if causal else tiny_bert(dropout=0.0)
        data = llama_data() if causal else bert_data(tok)
        args = training_args(tmp_path, output_dir=out + "-ckpt", max_steps=3, logging_steps=1)
        if kind == "lite":
            trainer = LiteTrainer(model=model, args=args, train_dataset=data, recipe=recipe, teacher_model=teacher)
        else:  # the user's own Trainer plus the callback (prepare_model for modifiers that replace the model)
            model, session = prepare_model(model, recipe)
            cb = CompressionCallback(session=session)
            trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[cb])
    trainer.train()
    if kind == "callback":
        final = cb.final_model  # a plain Trainer keeps the peft wrapper; the callback holds the merged model
        final.save_pretrained(out)
    else:
        final = trainer.model
        trainer.save_model(out)
    return final, out, trainer.state.log_history


RELOAD = r"""
import json, torch, transformers
cls = getattr(transformers, {cls!r})
m = cls.from_pretrained({folder!r}).eval()
x = torch.tensor([[2, 7, 9, 11, 5, 6, 8, 10]])
kw = {{"decoder_input_ids": torch.tensor([[0, 5, 6]])}} if m.config.is_encoder_decoder else {{}}
with torch.no_grad():
    logits = m(input_ids=x, **kw).logits
lin = {{n: p for n, p in m.named_parameters() if p.dim() == 2 and any(f".{{b}}." in n for b in ("layer", "layers", "block"))
       and "embed" not in n and "relative_attention" not in n}}
print(json.dumps({{"logits": logits.tolist(), "layers": m.config.num_hidden_layers if hasattr(m.config, "num_hidden_layers") else m.config.num_layers,
                  "keys": [k for k in m.state_dict() if "lora" in k],
                  "sparsity": {{n: float((p == 0).float().mean()) for n, p in lin.items()}},
                  "levels8": {{n: float(((p / (p.abs().amax(1, keepdim=True) / 127)) - (p / (p.abs().amax(1, keepdim=True) / 127)).round()).abs().max()) for n, p in lin.items()}},
                  "groups16": {{n: max(int(torch.unique(g).numel()) for g in p.reshape(-1, 16)) for n, p in lin.items() if p.shape[1] % 16 == 0}}}}))
"""


def check_reload(kind: str, family: str, final, folder: str, logs) -> None:
    cls = {"seq2seq": "AutoModelForSeq2SeqLM", "sft": "AutoModelForCausalLM"}.get(kind)
    cls = cls or ("AutoModelForCausalLM" if family == "oneshot" else "AutoModelForSequenceClassification")
    got = run_fresh(RELOAD.format(cls=cls, folder=folder))
    assert not got["hf_lite_imported"]
    x = torch.tensor([[2, 7, 9, 11, 5, 6, 8, 10]])
    kw = {"decoder_input_ids": torch.tensor([[0, 5, 6]])} if kind == "seq2seq" else {}
    with torch.no_grad():
        expected = final.eval()(input_ids=x, **kw).logits
    assert torch.allclose(torch.tensor(got["logits"]), expected, atol=1e-5), f"{kind}/{family}: reload differs"
    targets = {n: v for n, v in got["sparsity"].items() if "shared" not in n}
    if family == "prune":
        assert targets and all(v == pytest.approx(0.5, abs=0.02) for v in targets.values()), targets
    elif family == "qat":
        assert all(v < 1e-3 for v in got["levels8"].values()), got["levels8"]  # int8 per channel, on the grid
    elif family == "oneshot":
        assert all(v == pytest.approx(0.5, abs=0.02) for v in targets.values()), targets
        assert max(got["groups16"].values()) <= 16  # int4, group 16: at most 16 values per group
    elif family == "kd":
        soft = [log["loss/distillation/soft"] for log in logs if "loss/distillation/soft" in log]
        assert soft and all(v > 0 for v in soft)
        if kind != "seq2seq":
            assert got["layers"] == 1  # the student built by model.init_from_teacher
    elif family == "lora":
        assert got["keys"] == []  # merged: a plain model


FAMILIES = {"prune": PRUNE, "qat": QAT, "oneshot": ONESHOT, "kd": KD, "lora": LORA}
CASES = [
    (kind, fam)
    for kind in ("callback", "lite", "seq2seq", "sft")
    for fam in FAMILIES
    if not (kind == "callback" and fam == "kd") and not (kind == "seq2seq" and fam == "oneshot")
]


@pytest.mark.parametrize("kind,family", CASES, ids=[f"{k}-{f}" for k, f in CASES])
def test_trainer_family_matrix_reloads_compressed(tmp_path, kind, family):
    if kind == "sft":
        pytest.importorskip("trl")
    recipe = KD_T5 if (kind == "seq2seq" and family == "kd") else FAMILIES[family]
    final, folder, logs = run(kind, family, tmp_path, recipe)
    check_reload(kind, family, final, folder, logs)


def test_callback_refuses_distillation_naming_the_lite_trainers(tmp_path, tiny_dataset):
    from transformers import Trainer

    from hf_lite import CompressionCallback

    recipe = {"modifiers": [{"type": "distillation"}], "teacher": {"name_or_path": "some/teacher"}}
    with pytest.raises(RecipeError, match="LiteTrainer / LiteSeq2SeqTrainer / LiteSFTTrainer"):
        Trainer(model=tiny_bert(), args=training_args(tmp_path), train_dataset=tiny_dataset,
                callbacks=[CompressionCallback(recipe)])  # fmt: skip


def test_seq2seq_one_shot_is_refused_not_half_applied(tmp_path):
    from hf_lite import LiteSeq2SeqTrainer

    with pytest.raises(RecipeError, match="outside"):
        LiteSeq2SeqTrainer(model=tiny_t5(), args=training_args(tmp_path), train_dataset=t5_data(),
                           recipe=[{"type": "magnitude", "sparsity": 0.5}])  # fmt: skip


# -- one-shot in a user's script ------------------------------------------------------------------
def test_one_shot_modifiers_compress_in_lite_trainer_the_issue_repro(tmp_path):
    """The report: wanda/gptq passed to LiteTrainer were initialized and never applied."""
    from hf_lite import LiteTrainer

    model = tiny_llama()
    trainer = LiteTrainer(model=model, args=training_args(tmp_path, max_steps=2), train_dataset=llama_data(),
                          recipe=[{"type": "wanda", "sparsity": 0.5}])  # fmt: skip
    trainer.train()
    w = model.model.layers[0].mlp.up_proj.weight
    assert float((w == 0).float().mean()) == pytest.approx(0.5)
    model = tiny_llama()
    trainer = LiteTrainer(model=model, args=training_args(tmp_path, max_steps=2), train_dataset=llama_data(),
                          recipe=[{"type": "gptq", "bits": 4, "group_size": 16, "recovery": "snap"}])  # fmt: skip
    trainer.train()
    w = model.model.layers[0].mlp.up_proj.weight
    assert max(torch.unique(g).numel() for g in w.detach().reshape(-1, 16)) <= 16


def test_one_shot_calibration_sources_and_the_error_without_any(tmp_path):
    from hf_lite import LiteTrainer

    spec = [{"type": "wanda", "sparsity": 0.5}]
    with pytest.raises(RecipeError, match="calibration"):
        LiteTrainer(model=tiny_llama(), args=training_args(tmp_path), recipe=spec)
    # an explicit calibration set, no train_dataset: compress without training
    model = tiny_llama()
    trainer = LiteTrainer(model=model, args=training_args(tmp_path), recipe=spec,
                          calibration_dataset=torch.randint(1, 25, (4, 16)))  # fmt: skip
    trainer.calibrate()
    assert float((model.model.layers[1].self_attn.q_proj.weight == 0).float().mean()) == pytest.approx(0.5)
    assert trainer.session.pending_one_shot == []
    # text in the recipe, tokenized with processing_class
    txt = tmp_path / "cal.txt"
    txt.write_text(" ".join(WORDS * 40))
    recipe = {"modifiers": spec, "calibration": {"source": str(txt), "samples": 4, "seq_len": 16}}
    with pytest.raises(RecipeError, match="processing_class"):
        LiteTrainer(model=tiny_llama(), args=training_args(tmp_path), recipe=recipe, train_dataset=llama_data())
    tok = make_tokenizer(str(tmp_path / "tok"))
    model = tiny_llama()
    trainer = LiteTrainer(model=model, args=training_args(tmp_path, max_steps=1), recipe=recipe,
                          train_dataset=llama_data(), processing_class=tok)  # fmt: skip
    trainer.train()
    assert float((model.model.layers[1].mlp.down_proj.weight == 0).float().mean()) == pytest.approx(0.5)


def test_finalize_without_calibration_is_an_error_not_a_dense_model():
    from hf_lite import CompressionSession
    from hf_lite.core.recipe import load_recipe

    session = CompressionSession(load_recipe([{"type": "wanda"}]).build_modifiers())
    model = session.initialize(tiny_llama())
    with pytest.raises(RuntimeError, match="never compressed"):
        session.finalize(model)


# -- recipes in scripts ---------------------------------------------------------------------------
def test_full_recipe_in_a_script_applies_init_from_teacher_and_warns_about_the_rest(tmp_path, caplog, tiny_dataset):
    from hf_lite import LiteTrainer

    recipe = {
        "model": {"name_or_path": "minilm-l6", "init_from_teacher": {"layers": [1]}},
        "data": {"train": "x.tsv", "max_length": 32},
        "training": {"learning_rate": 1e-4},
        "modifiers": PRUNE,
    }
    with caplog.at_level(logging.WARNING, logger="hf_lite"):
        trainer = LiteTrainer(model=tiny_bert(layers=2), args=training_args(tmp_path, max_steps=1),
                              train_dataset=tiny_dataset, recipe=recipe)  # fmt: skip
    assert trainer.model.config.num_hidden_layers == 1
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "model.{name_or_path}" in text and "data.{train, max_length}" in text and "training.{learning_rate}" in text


def test_teacher_follows_the_students_head_and_resolves_from_the_recipe_folder(tmp_path):
    from hf_lite import LiteTrainer

    recipes = tmp_path / "recipes"
    recipes.mkdir()
    tiny_llama(seed=1).save_pretrained(str(recipes / "teacher"))
    path = recipes / "kd.yaml"
    path.write_text("teacher: {name_or_path: teacher}\nmodifiers:\n  - {type: distillation}\n")
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the relative path is read from the recipe's folder, not the working directory
    try:
        trainer = LiteTrainer(model=tiny_llama(), args=training_args(tmp_path, max_steps=1),
                              train_dataset=llama_data(), recipe=str(path))  # fmt: skip
    finally:
        os.chdir(cwd)
    assert type(trainer.teacher).__name__ == "LlamaForCausalLM"  # no model.task needed
    trainer.train()


def test_missing_teacher_path_is_one_line_naming_the_key(tmp_path):
    from hf_lite import LiteTrainer

    recipe = {"teacher": {"name_or_path": "./no/such/teacher"}, "modifiers": [{"type": "distillation"}]}
    with pytest.raises(RecipeError, match=r"teacher.name_or_path: cannot load './no/such/teacher'"):
        LiteTrainer(model=tiny_llama(), args=training_args(tmp_path), train_dataset=llama_data(), recipe=recipe)


# -- small defects ------------------------------------------------------------------------------
def test_qat_int8_reports_8_bits_after_training(tmp_path, tiny_dataset):
    from hf_lite import LiteTrainer

    trainer = LiteTrainer(model=tiny_bert(), args=training_args(tmp_path, max_steps=2), train_dataset=tiny_dataset,
                          eval_dataset=tiny_dataset, recipe=QAT)  # fmt: skip
    trainer.train()
    assert trainer.evaluate()["hf_lite/qat/bits"] == 8.0
    assert trainer.state.log_history[-1]["hf_lite/qat/bits"] == 8.0


def test_lora_default_targets_leave_the_pooler_alone(tmp_path, tiny_dataset):
    from hf_lite import LiteTrainer

    trainer = LiteTrainer(model=tiny_bert(), args=training_args(tmp_path), train_dataset=tiny_dataset, recipe=LORA)
    names = [n for n, _ in trainer.model.named_modules() if n.endswith("lora_A")]
    assert names and not any("pooler" in n for n in names)
    assert any("attention.output.dense" in n for n in names)


def test_qlora_quantizes_exactly_the_lora_targets(tmp_path, tiny_dataset):
    pytest.importorskip("bitsandbytes")
    from hf_lite import LiteTrainer

    recipe = [{"type": "qlora", "r": 4, "target_modules": ["re:attention\\.self\\.(query|value)"]}]
    trainer = LiteTrainer(model=tiny_bert(hidden=64), args=training_args(tmp_path), train_dataset=tiny_dataset,
                          recipe=recipe)  # fmt: skip
    quantized = {n for n, m in trainer.model.named_modules() if type(m).__name__ == "Linear4bit"}
    assert quantized and all(n.endswith(("query.base_layer", "value.base_layer")) for n in quantized)


# -- distillation masks -------------------------------------------------------------------------
def test_seq2seq_kd_soft_loss_ignores_padded_label_positions():
    from hf_lite.core.modifier import Context
    from hf_lite.core.recipe import load_recipe

    (mod,) = load_recipe([{"type": "distillation", "alpha": 1.0}]).build_modifiers()
    student, teacher = tiny_t5(), tiny_t5(seed=1)
    ctx = Context(teacher=teacher)
    mod.initialize(student, ctx)
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])
    short = torch.tensor([[5, 6, 3], [7, 8, 3]])
    padded = torch.cat([short, torch.full((2, 2), -100)], dim=1)

    def soft(labels):
        inputs = {"input_ids": ids, "labels": labels}
        out = student(**inputs)
        t = mod.teacher_forward(teacher, inputs, {})
        return mod.loss(out, inputs, t, ctx)["soft"]

    assert torch.allclose(soft(short), soft(padded), atol=1e-6)


def test_sft_kd_trains_only_completion_tokens(tmp_path, monkeypatch):
    pytest.importorskip("trl")
    from hf_lite.distillation.modifier import DistillationModifier

    seen = []
    original = DistillationModifier._valid

    def spy(self, inputs, logits):
        valid = original(self, inputs, logits)
        seen.append((inputs["labels"].clone(), valid.clone()))
        return valid

    monkeypatch.setattr(DistillationModifier, "_valid", spy)
    run("sft", "kd", tmp_path, KD)
    labels, valid = seen[0]
    assert (labels == -100).any(), "the prompt carries ignore_index"
    assert torch.equal(valid, labels[:, 1:].reshape(-1) != -100)  # the soft loss counts completion tokens only


def test_lite_sft_trainer_names_the_extra_when_trl_is_absent(monkeypatch):
    import hf_lite

    monkeypatch.setitem(sys.modules, "trl", None)
    monkeypatch.delitem(sys.modules, "hf_lite.sft", raising=False)
    monkeypatch.delattr(hf_lite, "sft", raising=False)
    with pytest.raises(ImportError, match=r"hf-lite\[trl\]"):
        hf_lite.LiteSFTTrainer  # noqa: B018


def test_save_model_after_training_writes_what_hf_lite_run_exports(tmp_path):
    from hf_lite import LiteTrainer
    from hf_lite.quantization.grids import GRID_FILE

    trainer = LiteTrainer(model=tiny_llama(), args=training_args(tmp_path, max_steps=1), train_dataset=llama_data(),
                          recipe=[{"type": "rtn", "bits": 4, "group_size": 16}])  # fmt: skip
    trainer.train()
    trainer.save_model(str(tmp_path / "out"))
    assert os.path.isfile(tmp_path / "out" / GRID_FILE)
    assert json.loads((tmp_path / "out" / "config.json").read_text())["model_type"] == "llama"


# -- checkpoints that deploy ------------------------------------------------------------------------
@pytest.mark.parametrize("recipe", [QAT, LORA], ids=["qat", "lora"])
def test_checkpoints_hold_the_exported_model_and_load_best_picks_it(tmp_path, tiny_dataset, recipe):
    from hf_lite import LiteTrainer

    args = training_args(
        tmp_path, max_steps=4, eval_strategy="steps", eval_steps=1, save_strategy="steps", save_steps=1,
        load_best_model_at_end=True, metric_for_best_model="loss", greater_is_better=False, save_total_limit=5,
    )  # fmt: skip
    trainer = LiteTrainer(model=tiny_bert(dropout=0.0), args=args, train_dataset=tiny_dataset,
                          eval_dataset=tiny_dataset, recipe=recipe, export_checkpoints=True)  # fmt: skip
    trainer.train()
    best = trainer.state.best_model_checkpoint
    folder = os.path.join(best, "export")
    got = run_fresh(RELOAD.format(cls="AutoModelForSequenceClassification", folder=folder))
    assert got["keys"] == []  # a plain model: LoRA merged, QAT converted
    if recipe is QAT:
        assert all(v < 1e-3 for v in got["levels8"].values())
    # the run ends on the best checkpoint's weights: its export is the model the run exports
    x = torch.tensor([[2, 7, 9, 11, 5, 6, 8, 10]])
    with torch.no_grad():
        expected = trainer.final_model.eval()(input_ids=x).logits
    assert torch.allclose(torch.tensor(got["logits"]), expected, atol=1e-5)


# -- options that would do nothing ----------------------------------------------------------------
def test_unused_options_are_named(tmp_path, tiny_dataset, caplog):
    from hf_lite import LiteTrainer

    recipe = {"modifiers": PRUNE, "export": {"checkpoints": True, "save_adapter": False, "output_dir": "x"}}
    with caplog.at_level(logging.WARNING, logger="hf_lite"):
        trainer = LiteTrainer(model=tiny_bert(), args=training_args(tmp_path, max_steps=1), train_dataset=tiny_dataset,
                              recipe=recipe, calibration_dataset=torch.randint(1, 20, (4, 8)))  # fmt: skip
        trainer.train()
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "calibration_dataset is set but no one-shot modifier" in text
    assert "export_checkpoints is set but save_strategy is 'no'" in text
    assert "export.{output_dir}" in text  # checkpoints and save_adapter act in a script: not named as ignored


def test_export_checkpoints_are_refused_on_a_sharded_model(monkeypatch):
    import hf_lite.core.distributed as dist
    from hf_lite import CompressionCallback

    monkeypatch.setattr(dist, "is_sharded", lambda t: True)  # as if FSDP2 had sharded every parameter
    cb = CompressionCallback(PRUNE, export_checkpoints=True)
    with pytest.raises(RecipeError, match="export_checkpoints"):
        cb._check_sharding(tiny_bert())
