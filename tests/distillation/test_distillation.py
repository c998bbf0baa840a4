import math

import pytest
import torch
from conftest import lite, make_tokenizer, tiny_bert, tiny_llama

from hf_lite import RecipeError
from hf_lite.distillation import rank_contiguous_cuts, soft_loss, student_from_teacher
from hf_lite.distillation.modifier import PROJ_ATTR
from hf_lite.distillation.student import block_influence, labelled_loss, most_influential_blocks, searched_blocks


def test_kl_against_hand_computed():
    s, t = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    T = 2.0
    ps = [math.exp(0.5) / (math.exp(0.5) + 1), 1 / (math.exp(0.5) + 1)]
    pt = [ps[1], ps[0]]
    kl = sum(pt[i] * math.log(pt[i] / ps[i]) for i in range(2)) * T * T
    assert soft_loss(s, t, T, "kl").item() == pytest.approx(kl, rel=1e-6)
    assert soft_loss(s, t, T, "mse").item() == pytest.approx(1.0)
    assert soft_loss(t, t, T, "jsd").item() == pytest.approx(0.0, abs=1e-7)
    # temperature: T^2 scaling keeps gradients comparable; a larger T gives softer targets
    assert soft_loss(s, t, 1.0, "kl").item() != pytest.approx(kl)


def test_ignore_index_and_shift_for_causal_lm(tmp_path):
    student, teacher = tiny_llama(layers=1, seed=1), tiny_llama(layers=2)
    ids = torch.tensor([[3, 4, 5, 6, 7, 8]])
    labels = ids.clone()
    labels[0, :3] = -100  # prompt tokens are not distilled
    from hf_lite.core.modifier import Context, build_modifier

    mod = build_modifier({"type": "distillation", "alpha": 1.0, "temperature": 1.0})
    mod.initialize(student, Context(teacher=teacher))
    so, to = student(input_ids=ids), teacher(input_ids=ids)
    got = mod.loss(so, {"input_ids": ids, "labels": labels}, to, Context())["soft"]
    # by hand: positions 2..4 predict tokens 3..5 (labels[1:] != -100)
    ref = soft_loss(so.logits[0, 2:5], to.logits[0, 2:5], 1.0, "kl").mean()
    assert got.item() == pytest.approx(ref.item(), rel=1e-5)


def test_soft_tokens_all_distills_the_prompt_too_but_never_padding():
    from hf_lite.core.modifier import Context, build_modifier

    student, teacher = tiny_llama(layers=1, seed=1), tiny_llama(layers=2)
    ids = torch.tensor([[3, 4, 5, 6, 7, 8], [0, 0, 5, 6, 7, 8]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]])  # row 2 is left-padded
    labels = ids.clone()
    labels[:, :3] = -100
    mod = build_modifier({"type": "distillation", "alpha": 1.0, "temperature": 1.0, "soft_tokens": "all"})
    mod.initialize(student, Context(teacher=teacher))
    so, to = student(input_ids=ids, attention_mask=mask), teacher(input_ids=ids, attention_mask=mask)
    got = mod.loss(so, {"input_ids": ids, "attention_mask": mask, "labels": labels}, to, Context())["soft"]
    # by hand: row 1 every position 0..4; row 2 only positions 2..4 (position 1 is a pad predicting a token)
    rows = soft_loss(so.logits[0, :5], to.logits[0, :5], 1.0, "kl").tolist()
    rows += soft_loss(so.logits[1, 2:5], to.logits[1, 2:5], 1.0, "kl").tolist()
    assert got.item() == pytest.approx(sum(rows) / len(rows), rel=1e-5)
    # the default, labels, would have counted the answer positions only
    mod_l = build_modifier({"type": "distillation", "alpha": 1.0, "temperature": 1.0})
    mod_l.initialize(student, Context(teacher=teacher))
    only = mod_l.loss(so, {"input_ids": ids, "attention_mask": mask, "labels": labels}, to, Context())["soft"]
    assert only.item() != pytest.approx(got.item(), rel=1e-3)


def test_soft_tokens_all_on_plain_text_warns_once_that_it_changes_nothing(caplog):
    from hf_lite.core.modifier import Context, build_modifier

    student, teacher = tiny_llama(layers=1, seed=1), tiny_llama(layers=2)
    ids = torch.tensor([[3, 4, 5, 6, 7, 8]])
    mod = build_modifier({"type": "distillation", "soft_tokens": "all"})
    mod.initialize(student, Context(teacher=teacher))
    so, to = student(input_ids=ids), teacher(input_ids=ids)
    with caplog.at_level("WARNING"):
        for _ in range(2):
            mod.loss(so, {"input_ids": ids, "labels": ids.clone()}, to, Context())
    assert [r.message for r in caplog.records if "soft_tokens" in r.message] == [
        "hf_lite: distillation.soft_tokens: all changes nothing here: the labels already count every "
        "non-padding token (plain text, no prompt); remove it, or use chat/prompt-masked data"
    ]
    caplog.clear()
    prompt = ids.clone()
    prompt[0, :3] = -100
    mod = build_modifier({"type": "distillation", "soft_tokens": "all"})
    mod.initialize(student, Context(teacher=teacher))
    with caplog.at_level("WARNING"):
        mod.loss(so, {"input_ids": ids, "labels": prompt}, to, Context())
    assert not [r for r in caplog.records if "soft_tokens" in r.message]


def test_soft_tokens_all_is_refused_where_there_is_no_prompt():
    from hf_lite.core.modifier import Context, build_modifier

    mod = build_modifier({"type": "distillation", "soft_tokens": "all"})
    with pytest.raises(RecipeError, match="soft_tokens: all.*remove it"):
        mod.initialize(tiny_bert(layers=1), Context(teacher=tiny_bert(layers=2)))
    with pytest.raises(RecipeError, match="soft_tokens"):
        build_modifier({"type": "distillation", "soft_tokens": "prompt"})


def test_teacher_frozen_out_of_optimizer_projection_dropped(tmp_path, tiny_dataset):
    from transformers import BertConfig, BertForSequenceClassification

    teacher = tiny_bert(layers=4)
    student = BertForSequenceClassification(
        BertConfig(**{**teacher.config.to_dict(), "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2})
    )
    recipe = [
        {"type": "distillation", "alpha": 0.7, "hidden_weight": 1.0, "attention_weight": 0.5, "layer_map": {0: 1, 1: 3}}
    ]
    t = lite(tmp_path, tiny_dataset, recipe, model=student, teacher=teacher, train=False, max_steps=4, logging_steps=2)
    assert hasattr(student, PROJ_ATTR)
    before = [p.clone() for p in teacher.parameters()]
    t.train()
    opt_params = {id(p) for g in t.optimizer.param_groups for p in g["params"]}
    assert not any(id(p) in opt_params for p in teacher.parameters())
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters()))
    assert any(id(p) in opt_params for p in t.session.modifiers[0].proj.parameters())
    assert not hasattr(t.final_model, PROJ_ATTR)
    assert not any(PROJ_ATTR in k for k in t.final_model.state_dict())
    logged = [log for log in t.state.log_history if "loss/distillation/soft" in log]
    assert logged and all("loss/distillation/hidden" in log and "loss/distillation/attention" in log for log in logged)
    out = tmp_path / "student"
    t.final_model.save_pretrained(out)
    BertForSequenceClassification.from_pretrained(out)  # plain reload, no projection keys


def test_student_from_teacher_layers(tmp_path):
    teacher = tiny_bert(layers=4)
    student = student_from_teacher(teacher, [0, 3])
    assert student.config.num_hidden_layers == 2
    assert torch.equal(
        student.bert.encoder.layer[1].output.dense.weight, teacher.bert.encoder.layer[3].output.dense.weight
    )
    llama = student_from_teacher(tiny_llama(layers=4), [1, 2])
    assert [block.self_attn.layer_idx for block in llama.model.layers] == [0, 1]
    llama.generate(torch.tensor([[3, 4]]), max_new_tokens=3, do_sample=False)  # KV cache indices line up
    with pytest.raises(RecipeError, match="distinct indices"):
        student_from_teacher(teacher, [0, 7])


def test_rank_contiguous_cuts_scores_every_cut_by_its_loss():
    teacher = tiny_llama(layers=5)
    ids = torch.tensor([[3, 4, 5, 6, 7, 8], [8, 7, 6, 5, 4, 3]])
    batches = [{"input_ids": ids, "labels": ids}]
    ranked = rank_contiguous_cuts(teacher, batches, keep=3)
    assert sorted(layers for layers, _ in ranked) == sorted([[2, 3, 4], [0, 3, 4], [0, 1, 4], [0, 1, 2]])
    assert [loss for _, loss in ranked] == sorted(loss for _, loss in ranked)
    layers, loss = ranked[0]
    with torch.no_grad():
        assert loss == pytest.approx(float(student_from_teacher(teacher, layers)(**batches[0]).loss))
    with pytest.raises(RecipeError, match="keep=5"):
        rank_contiguous_cuts(teacher, batches, keep=5)
    with pytest.raises(RecipeError, match="needs batches with labels"):
        rank_contiguous_cuts(teacher, [{"input_ids": ids}], keep=3)


def test_init_from_teacher_keep_builds_the_best_cut_in_a_script(tmp_path, tiny_dataset, caplog):
    import logging

    teacher = tiny_bert(layers=4)
    recipe = {"model": {"init_from_teacher": {"keep": 2, "rank_rows": 8}}, "modifiers": []}
    with caplog.at_level(logging.INFO, logger="hf_lite"):
        trainer = lite(tmp_path, tiny_dataset, recipe, model=tiny_bert(layers=4), train=False, max_steps=1)
    rows = [dict(tiny_dataset[i]) for i in range(8)]
    batch = {k: torch.tensor([r[k] for r in rows]) for k in rows[0]}
    best = rank_contiguous_cuts(teacher, [batch], keep=2)[0][0]
    student = trainer.model
    assert student.config.num_hidden_layers == 2
    for new, old in enumerate(best):  # the kept blocks are the teacher's best-ranked ones, in order
        got = student.bert.encoder.layer[new].output.dense.weight
        assert torch.equal(got, teacher.bert.encoder.layer[old].output.dense.weight)
    assert "best cuts first" in caplog.text


def test_block_influence_is_one_minus_cosine_of_each_blocks_input_and_output_on_real_tokens():
    model = tiny_llama(layers=4).eval()
    ids = torch.tensor([[3, 4, 5, 6, 7, 8], [9, 10, 11, 0, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    influence = block_influence(model, [{"input_ids": ids, "attention_mask": mask}])
    with torch.no_grad():
        hidden = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    real = mask.bool()
    for i in range(3):  # the last entry of hidden_states is after the final norm, not block 3's output
        cos = torch.nn.functional.cosine_similarity(hidden[i][real], hidden[i + 1][real], dim=-1)
        assert influence[i] == pytest.approx(float((1 - cos).mean()), rel=1e-4)
    assert len(influence) == 4 and all(v > 0 for v in influence)
    top = most_influential_blocks(model, [{"input_ids": ids, "attention_mask": mask}], keep=2)
    assert top == sorted(sorted(range(4), key=lambda i: -influence[i])[:2])
    with pytest.raises(RecipeError, match="keep=4"):
        most_influential_blocks(model, [{"input_ids": ids}], keep=4)


def test_searched_blocks_end_where_no_swap_lowers_the_loss():
    model = tiny_llama(layers=6, seed=3).eval()
    ids = torch.tensor([[3, 4, 5, 6, 7, 8, 9, 10], [9, 10, 11, 12, 13, 0, 0, 0]])
    mask = (ids != 0).long()
    batches = [{"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}]

    def loss(layers):
        return labelled_loss(student_from_teacher(model, sorted(layers)).eval(), batches)

    layers, value = searched_blocks(model, batches, keep=3)  # width 6 covers every swap of 6 blocks
    assert value == pytest.approx(loss(layers)) and layers == sorted(layers) and len(layers) == 3
    cosine = most_influential_blocks(model, batches, keep=3)
    assert layers != cosine and value < loss(cosine)  # this teacher's cosine choice is improved by swaps
    for out in layers:
        for new in set(range(6)) - set(layers):
            assert loss([k for k in layers if k != out] + [new]) >= value - 1e-6
    with pytest.raises(RecipeError, match="need labels"):
        searched_blocks(model, [{"input_ids": ids}], keep=3)


def test_init_from_teacher_by_cosine_keeps_the_most_influential_blocks(tmp_path, tiny_dataset, caplog):
    import logging

    teacher = tiny_bert(layers=4)
    recipe = {"model": {"init_from_teacher": {"keep": 2, "rank_rows": 8, "by": "cosine"}}, "modifiers": []}
    with caplog.at_level(logging.INFO, logger="hf_lite"):
        trainer = lite(tmp_path, tiny_dataset, recipe, model=tiny_bert(layers=4), train=False, max_steps=1)
    rows = [dict(tiny_dataset[i]) for i in range(8)]
    batch = {k: torch.tensor([r[k] for r in rows]) for k in rows[0]}
    chosen = most_influential_blocks(teacher.eval(), [batch], keep=2)
    student = trainer.model
    assert student.config.hf_lite_init_from_teacher["layers"] == chosen
    for new, old in enumerate(chosen):
        got = student.bert.encoder.layer[new].output.dense.weight
        assert torch.equal(got, teacher.bert.encoder.layer[old].output.dense.weight)
    assert "keep=2 by cosine" in caplog.text and "best cuts first" not in caplog.text


def test_init_from_teacher_keep_needs_tokenized_rows_and_valid_settings(tmp_path):
    from hf_lite import load_recipe

    recipe = {"model": {"init_from_teacher": {"keep": 1}}, "modifiers": []}
    with pytest.raises(RecipeError, match="tokenized training rows"):
        lite(tmp_path, [{"text": "good movie", "label": 1}], recipe, train=False, max_steps=1)
    with pytest.raises(RecipeError, match="pass a train_dataset"):
        lite(tmp_path, None, recipe, train=False, max_steps=1)
    bad_specs = (
        {"keep": 0}, {"keep": True}, {"keep": 2, "layers": [0]}, {"keep": 2, "rank_rows": 0}, {"rows": 2},
        {"keep": 2, "by": "loss"}, {"layers": [0], "by": "search"},
    )  # fmt: skip
    for bad in bad_specs:
        with pytest.raises(RecipeError, match="init_from_teacher"):
            load_recipe({"model": {"init_from_teacher": bad}, "modifiers": []})


def test_init_from_teacher_keep_through_hf_lite_run(tmp_path, tiny_tsv, caplog):
    import json
    import logging

    from hf_lite.cli import main

    folder = str(tmp_path / "teacher")
    tiny_bert(layers=3).save_pretrained(folder)
    make_tokenizer(folder)
    path = tmp_path / "recipe.yaml"
    path.write_text(
        f"model: {{name_or_path: {folder}, init_from_teacher: {{keep: 2}}}}\n"
        f"data: {{train: {tiny_tsv}, eval: {tiny_tsv}, text_column: text, label_column: target, max_length: 16}}\n"
        "training: {max_steps: 2, per_device_train_batch_size: 8}\n"
        f"modifiers: []\nexport: {{output_dir: {tmp_path / 'out'}}}\n"
    )
    with caplog.at_level(logging.INFO, logger="hf_lite"):
        assert main(["run", str(path)]) == 0
    assert json.loads((tmp_path / "out" / "config.json").read_text())["num_hidden_layers"] == 2
    layers = json.loads((tmp_path / "out" / "report.json").read_text())["student_layers"]
    assert len(layers) == 2 and layers in ([0, 1], [0, 2], [1, 2])
    assert "init_from_teacher.keep=2" in caplog.text


def test_missing_teacher_and_mismatched_vocab(tmp_path, tiny_dataset):
    with pytest.raises(RecipeError, match="no teacher"):
        lite(tmp_path, tiny_dataset, [{"type": "distillation"}], train=False)
    from transformers import LlamaConfig, LlamaForCausalLM

    other = LlamaForCausalLM(LlamaConfig(**{**tiny_llama().config.to_dict(), "vocab_size": 99}))
    with pytest.raises(RecipeError, match="tokenizers must match"):
        lite(tmp_path, tiny_dataset, [{"type": "distillation"}], model=tiny_llama(), teacher=other, train=False)


def test_kd_beats_nothing_sanity(tmp_path, tiny_dataset):
    """With alpha=1 the student's logits move toward the teacher's."""
    teacher, student = tiny_bert(layers=2, seed=3), tiny_bert(layers=1, seed=4)
    batch = {k: torch.tensor(v) for k, v in tiny_dataset[:16].items() if k != "labels"}
    with torch.no_grad():
        gap0 = (student(**batch).logits - teacher(**batch).logits).pow(2).mean()
    lite(
        tmp_path,
        tiny_dataset,
        [{"type": "distillation", "alpha": 1.0, "loss": "mse"}],
        model=student,
        teacher=teacher,
        train=False,
        max_steps=20,
        learning_rate=3e-3,
    ).train()
    student.eval()
    with torch.no_grad():
        gap1 = (student(**batch).logits - teacher(**batch).logits).pow(2).mean()
    assert gap1 < gap0 * 0.5


def test_cache_teacher_runs_each_example_once_and_trains_the_same(tmp_path, tiny_dataset):
    recipe = [{"type": "distillation", "alpha": 0.7, "temperature": 2.0}]
    runs = {}
    for cache in (False, True):
        teacher, rows = tiny_bert(seed=3, dropout=0.0), []
        teacher.bert.embeddings.register_forward_hook(lambda m, i, o, rows=rows: rows.append(o.shape[0]))
        trainer = lite(
            tmp_path / str(cache),
            tiny_dataset,
            [{**recipe[0], "cache_teacher": cache}],
            model=tiny_bert(dropout=0.0),
            teacher=teacher,
            max_steps=16,  # 64 rows, batch 8: two epochs
        )
        runs[cache] = (sum(rows), trainer.model)
    assert runs[False][0] == 128 and runs[True][0] == 64  # the second epoch never calls the teacher
    for (n, a), (_, b) in zip(runs[False][1].named_parameters(), runs[True][1].named_parameters()):
        assert torch.allclose(a, b, atol=1e-5), n
    with pytest.raises(RecipeError, match="logits only"):
        lite(tmp_path / "bad", tiny_dataset, [{**recipe[0], "cache_teacher": True, "hidden_weight": 1.0}], train=False)


@pytest.mark.parametrize("beta", [0.0, 0.3, 0.5, 1.0])
def test_gjsd_equals_trls_generalized_jsd(beta):
    pytest.importorskip("trl")
    import os

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.gkd import GKDTrainer

    from hf_lite.distillation.modifier import soft_loss

    torch.manual_seed(0)
    student, teacher = torch.randn(2, 5, 11), torch.randn(2, 5, 11)
    labels = torch.tensor([[-100, 3, 4, -100, 2], [1, 2, -100, -100, -100]])
    theirs = GKDTrainer.generalized_jsd_loss(student, teacher, labels=labels, beta=beta)
    per_row = soft_loss(student.reshape(-1, 11), teacher.reshape(-1, 11), 1.0, "gjsd", beta)
    mask = labels.reshape(-1) != -100
    assert float(per_row[mask].mean()) == pytest.approx(float(theirs), rel=1e-5)
    if beta == 0.0:  # forward KL: the kl loss
        assert torch.allclose(per_row, soft_loss(student.reshape(-1, 11), teacher.reshape(-1, 11), 1.0, "kl"))


def test_beta_is_refused_without_gjsd():
    from hf_lite.core.modifier import build_modifier
    from hf_lite.core.settings import RecipeError

    with pytest.raises(RecipeError, match="beta: .*read by loss: gjsd only"):
        build_modifier({"type": "distillation", "beta": 0.9}, 0)
    build_modifier({"type": "distillation", "loss": "gjsd", "beta": 0.9}, 0)


def test_on_policy_kd_is_trls_gkd_trainer_with_the_compression_callback(tmp_path):
    """The student samples answers, the teacher scores them (TRL's GKDTrainer, lmbda 1); the recipe's
    pruning runs through CompressionCallback and its mask survives the on-policy steps."""
    pytest.importorskip("trl")
    import os

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    import datasets
    from conftest import CHAT_VOCAB, make_chat_tokenizer, tiny_llama
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    from hf_lite import CompressionCallback

    tok = make_chat_tokenizer(str(tmp_path / "tok"))
    student, teacher = tiny_llama(vocab_size=CHAT_VOCAB), tiny_llama(vocab_size=CHAT_VOCAB, seed=1)
    chat = [{"role": "user", "content": "the movie was good"}, {"role": "assistant", "content": "great fun"}]
    args = GKDConfig(
        output_dir=str(tmp_path / "out"), max_steps=4, per_device_train_batch_size=4, lmbda=1.0, beta=0.5,
        max_new_tokens=4, use_cpu=True, report_to="none", save_strategy="no", bf16=False, learning_rate=1e-3,
        max_length=32, disable_tqdm=True,
    )  # fmt: skip
    recipe = [{"type": "magnitude_pruning", "final_sparsity": 0.5, "start": 0, "end": 2, "update_every": 1}]
    trainer = GKDTrainer(
        model=student, teacher_model=teacher, args=args, processing_class=tok,
        train_dataset=datasets.Dataset.from_list([{"messages": chat}] * 16), callbacks=[CompressionCallback(recipe)],
    )  # fmt: skip
    before = [p.detach().clone() for n, p in student.named_parameters() if "layers" in n and p.dim() == 2]
    trainer.train()
    weights = [p for n, p in trainer.model.named_parameters() if "layers" in n and p.dim() == 2]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert zeros == pytest.approx(0.5, abs=0.01)
    assert any(not torch.equal(a[b != 0], b[b != 0]) for a, b in zip(before, weights))  # it trained


def test_layer_map_kept_matches_each_block_where_the_next_kept_teacher_block_takes_over():
    from hf_lite.core.modifier import Context, build_modifier

    teacher = tiny_llama(layers=6)
    student = student_from_teacher(teacher, [0, 1, 4, 5])  # a contiguous cut: blocks 2 and 3 left out
    assert student.config.hf_lite_init_from_teacher == {"layers": [0, 1, 4, 5], "teacher_layers": 6}

    def pairs(layer_map, model=student, t=teacher):
        settings = {"type": "distillation", "hidden_weight": 1.0, **({"layer_map": layer_map} if layer_map else {})}
        mod = build_modifier(settings)
        mod.initialize(model, Context(teacher=t))
        return mod.pairs

    # block 1 (teacher block 1) also does the work of the left-out 2 and 3: it learns teacher block 3's output
    assert pairs("kept") == pairs(None) == [(0, 0), (1, 3), (2, 4), (3, 5)]
    # every other block: the same pairs as uniform (each block learns the output of the block it replaces)
    skip = student_from_teacher(teacher, [0, 2, 4])
    assert pairs("kept", model=skip) == pairs("uniform", model=skip) == [(0, 1), (1, 3), (2, 5)]
    assert pairs("uniform") == [(0, 1), (1, 2), (2, 3), (3, 5)]
    assert pairs({0: 0, 3: 5}) == [(0, 0), (3, 5)]
    # auto falls back to uniform when the student did not come from a teacher of this depth
    other = tiny_llama(layers=8)
    assert pairs(None, t=other) == pairs("uniform", t=other) == [(0, 1), (1, 3), (2, 5), (3, 7)]
    with pytest.raises(RecipeError, match="layer_map: kept"):
        pairs("kept", t=other)
    with pytest.raises(RecipeError, match="layer_map: kept"):
        pairs("kept", model=tiny_llama(layers=2), t=tiny_llama(layers=4))
    # the record survives save_pretrained / from_pretrained, so a saved student is paired the same way
    import tempfile

    from transformers import AutoModelForCausalLM

    with tempfile.TemporaryDirectory() as d:
        student.save_pretrained(d)
        assert pairs(None, model=AutoModelForCausalLM.from_pretrained(d)) == [(0, 0), (1, 3), (2, 4), (3, 5)]


@pytest.mark.parametrize("key, value", [("layer_map", "kept"), ("layer_map", {0: 1}), ("hidden_loss", "cosine")])
def test_layer_settings_without_a_layer_loss_are_refused(key, value):
    from hf_lite.core.modifier import build_modifier

    with pytest.raises(RecipeError, match=f"{key}.*set hidden_weight"):
        build_modifier({"type": "distillation", key: value})
