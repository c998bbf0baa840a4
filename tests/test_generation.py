"""Generation metrics and batched generation on a tiny chat model; the chat task end to end."""

from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import CHAT_VOCAB, make_chat_tokenizer, tiny_llama

from hf_lite.cli import main
from hf_lite.core.recipe import GenerationSettings
from hf_lite.generation import exact_match, generate, prompt_ids, rouge


def test_rouge_matches_rouge_score_and_hand_counts():
    from rouge_score import rouge_scorer

    preds = ["the cat sat on the mat", "a dog ran"]
    refs = ["the cat was on the mat", "dogs were running fast"]
    ours = rouge(preds, refs)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for key in ours:
        expected = sum(scorer.score(r, p)[key].fmeasure for p, r in zip(preds, refs)) / 2
        assert ours[key] == pytest.approx(expected)
    # by hand: "the cat sat" vs "the cat ran" share 2 of 3 unigrams and 1 of 2 bigrams
    one = rouge(["the cat sat"], ["the cat ran"])
    assert one["rouge1"] == pytest.approx(2 / 3) and one["rouge2"] == pytest.approx(1 / 2)
    assert rouge(["Running dogs"], ["running dog"])["rouge1"] == 1.0  # stemmed


def test_exact_match_normalizes_case_punctuation_and_space():
    assert exact_match(["Paris.", " the  answer", "no"], ["paris", "The answer!", "yes"]) == pytest.approx(2 / 3)


@pytest.fixture
def chat_dir(tmp_path):
    folder = str(tmp_path / "tiny-chat")
    tiny_llama(vocab_size=CHAT_VOCAB).save_pretrained(folder)
    make_chat_tokenizer(folder)
    return folder


def test_batched_left_padded_generation_equals_one_at_a_time(chat_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(chat_dir)
    model = AutoModelForCausalLM.from_pretrained(chat_dir)
    prompts = ["good movie", "the plot was very boring and dull", "fun"]
    settings = GenerationSettings(max_new_tokens=6, batch_size=3)
    batched, timing = generate(model, tok, prompts, settings)
    alone = [generate(model, tok, [p], GenerationSettings(max_new_tokens=6, batch_size=1))[0][0] for p in prompts]
    assert batched == alone and timing["new_tokens"] > 0
    # the prompt is the template's, ending with the generation prompt
    ids = prompt_ids(tok, "good movie")
    assert tok.convert_ids_to_tokens(ids)[-2:] == ["<|im_start|>", "assistant"]
    assert not model.training


def _rows(n):
    words = ["good", "bad", "fun", "dull", "great", "weak"]
    return [
        {"context": f"the movie was {words[i % 6]} and {words[(i + 1) % 6]}", "response": f"{words[i % 6]} movie"}
        for i in range(n)
    ]


def _chat_recipe(tmp_path, chat_dir, modifiers, **generation):
    train, eval_ = tmp_path / "train.jsonl", tmp_path / "eval.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in _rows(48)))
    eval_.write_text("".join(json.dumps(r) + "\n" for r in _rows(12)))
    recipe = {
        "model": {"name_or_path": chat_dir, "task": "chat"},
        "data": {
            "train": str(train),
            "eval": str(eval_),
            "prompt_column": "context",
            "prompt_template": "summarize: {prompt}",
            "max_length": 48,
        },
        "training": {"max_steps": 6, "per_device_train_batch_size": 8, "learning_rate": 5e-3, "report_to": "none"},
        "generation": {"max_new_tokens": 4, "max_samples": 6, "samples": 2, **generation},
        "modifiers": modifiers,
        "export": {"output_dir": str(tmp_path / "out")},
    }
    path = tmp_path / "recipe.yaml"
    import yaml

    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def test_chat_run_trains_compresses_scores_and_reloads(tmp_path, chat_dir, capsys):
    from transformers import AutoModelForCausalLM

    recipe = _chat_recipe(
        tmp_path,
        chat_dir,
        [{"type": "magnitude_pruning", "final_sparsity": 0.5, "end": 0.5}],
        metrics=["rouge", "exact_match"],
        prompts=["was the plot good"],
    )
    assert main(["run", recipe]) == 0
    out = tmp_path / "out"
    report = json.loads((out / "report.json").read_text())
    before, after = report["metrics"]["before"], report["metrics"]["after"]
    for tag, m in (("before", before), ("after", after)):
        for key in ("rouge1", "rouge2", "rougeL", "exact_match", "perplexity", "generate_tokens_per_s"):
            assert f"{tag}_{key}" in m
    assert report["task"] == "chat" and report["compression"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    gen = report["generation"]
    assert len(gen["samples"]) == 2 and set(gen["samples"][0]) == {"prompt", "reference", "before", "after"}
    assert gen["samples"][0]["prompt"].startswith("summarize: the movie")
    assert gen["prompts"][0]["prompt"] == "was the plot good" and "after" in gen["prompts"][0]
    card = (out / "README.md").read_text()
    assert "## Generated answers" in card and "| rougeL |" in card
    model = AutoModelForCausalLM.from_pretrained(out)  # plain transformers
    assert model.config.vocab_size == CHAT_VOCAB
    capsys.readouterr()
    assert main(["chat", str(out), "--prompt", "good movie", "--max-new-tokens", "3"]) == 0
    assert capsys.readouterr().out.endswith("\n")  # streamed, then the end of the answer


def test_chat_distillation_counts_only_the_assistant_tokens(tmp_path, chat_dir):
    """Logits KD over a chat batch: changing the teacher's logits on prompt tokens leaves the loss as it is."""
    from transformers import DataCollatorForSeq2Seq

    from hf_lite.chat import chat_dataset, row_messages
    from hf_lite.core.modifier import build_modifier
    from hf_lite.core.recipe import DataSettings
    from hf_lite.models import load_tokenizer

    tok = load_tokenizer(chat_dir)
    settings = DataSettings(prompt_column="context")
    ds = chat_dataset([row_messages(r, settings, "row") for r in _rows(4)], tok, 48)
    batch = DataCollatorForSeq2Seq(tok, label_pad_token_id=-100)([ds[i] for i in range(4)])
    kd = build_modifier({"type": "distillation", "alpha": 1.0}, 0)
    kd.causal = True
    student = torch.randn(*batch["input_ids"].shape, CHAT_VOCAB)
    teacher = torch.randn_like(student)
    base = kd.loss({"logits": student}, batch, {"logits": teacher}, None)["soft"]
    # positions whose next token is not an answer token: the teacher there must not matter
    prompt_pos = torch.zeros_like(batch["labels"], dtype=torch.bool)
    prompt_pos[:, :-1] = batch["labels"][:, 1:] == -100
    changed = teacher.clone()
    changed[prompt_pos] = torch.randn_like(changed[prompt_pos]) * 10
    assert kd.loss({"logits": student}, batch, {"logits": changed}, None)["soft"] == pytest.approx(float(base))
    answer_pos = ~prompt_pos
    answer_pos[:, -1] = False
    changed[answer_pos] += 5 * torch.randn_like(changed[answer_pos])
    assert kd.loss({"logits": student}, batch, {"logits": changed}, None)["soft"] != pytest.approx(float(base))


def test_chat_cli_reads_stdin_as_a_conversation(chat_dir, monkeypatch, capsys):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("good movie\n\nthe plot\n"))
    seen = []
    import hf_lite.generation as generation

    real = generation.stream_reply

    def spy(model, tok, messages, max_new_tokens):
        seen.append([m["content"] for m in messages])
        return real(model, tok, messages, max_new_tokens)

    monkeypatch.setattr(generation, "stream_reply", spy)
    assert main(["chat", chat_dir, "--max-new-tokens", "2", "--system", "be brief"]) == 0
    assert seen[0] == ["be brief", "good movie"]
    assert seen[1][:3] == ["be brief", "good movie", seen[1][2]] and seen[1][-1] == "the plot"
    assert len(seen) == 2  # the blank line is skipped


def test_chat_cli_refuses_a_folder_without_a_model(tmp_path, capsys):
    assert main(["chat", str(tmp_path)]) == 2
    assert "not a model folder" in capsys.readouterr().err


def test_chat_needs_the_rouge_package_named(monkeypatch):
    import builtins

    from hf_lite.generation import check_metrics

    real = builtins.__import__

    def no_rouge(name, *a, **k):
        if name.startswith("rouge_score"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_rouge)
    with pytest.raises(ImportError, match=r"hf-lite\[generation\]"):
        check_metrics(GenerationSettings())
    assert os.environ.get("HF_HUB_OFFLINE") == "1"


def _t5_dir(tmp_path):
    from conftest import WORDS, make_tokenizer
    from transformers import T5Config, T5ForConditionalGeneration

    folder = str(tmp_path / "tiny-t5")
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=len(WORDS) + 5, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=3, dropout_rate=0.0,
    )  # fmt: skip
    T5ForConditionalGeneration(config).save_pretrained(folder)
    tok = make_tokenizer(folder)
    tok.eos_token = "[SEP]"  # id 3, the config's eos
    tok.save_pretrained(folder)
    return folder


@pytest.mark.parametrize(
    "modifiers",
    [
        [{"type": "magnitude_pruning", "final_sparsity": 0.5, "end": 0.5}],
        [{"type": "qat", "bits": 8}],
        "kd",
    ],
    ids=["pruning", "qat", "kd"],
)
def test_seq2seq_run_compresses_scores_and_reloads(tmp_path, modifiers, capsys):
    import yaml
    from transformers import AutoModelForSeq2SeqLM

    t5 = _t5_dir(tmp_path)
    recipe = yaml.safe_load(open(_chat_recipe(tmp_path, t5, [])))
    recipe["model"] = {"name_or_path": t5, "task": "seq2seq"}
    recipe["generation"]["prompts"] = ["good movie"]
    if modifiers == "kd":
        recipe["teacher"] = {"name_or_path": t5}
        modifiers = [{"type": "distillation", "alpha": 0.5}]
    recipe["modifiers"] = modifiers
    assert main(["run", yaml.safe_dump(recipe)]) == 0
    out = tmp_path / "out"
    report = json.loads((out / "report.json").read_text())
    assert report["task"] == "seq2seq"
    assert {"after_rougeL", "after_perplexity", "before_rougeL"} <= set(report["metrics"]["after"]) | set(
        report["metrics"]["before"]
    )
    assert report["generation"]["samples"][0]["prompt"].startswith("summarize: the movie")
    model = AutoModelForSeq2SeqLM.from_pretrained(out)  # plain transformers
    if modifiers[0]["type"] == "magnitude_pruning":
        assert report["compression"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert "AutoModelForSeq2SeqLM" in (out / "README.md").read_text()
    assert model.config.is_encoder_decoder
    capsys.readouterr()
    assert main(["chat", str(out), "--prompt", "good movie", "--max-new-tokens", "3"]) == 0
    assert capsys.readouterr().out.endswith("\n")


def test_seq2seq_generation_equals_plain_generate(tmp_path):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    t5 = _t5_dir(tmp_path)
    tok, model = AutoTokenizer.from_pretrained(t5), AutoModelForSeq2SeqLM.from_pretrained(t5).eval()
    answers, _ = generate(model, tok, ["good movie", "the plot was very dull"], GenerationSettings(max_new_tokens=5))
    for prompt, answer in zip(["good movie", "the plot was very dull"], answers):
        ids = tok(prompt, return_tensors="pt")
        ref = model.generate(
            ids["input_ids"],
            attention_mask=ids["attention_mask"],
            max_new_tokens=5,
            do_sample=False,
            eos_token_id=[3],
            pad_token_id=0,
        )
        assert answer == tok.decode(ref[0, 1:], skip_special_tokens=True).strip()


def test_seq2seq_recipe_refuses_chat_only_keys():
    from hf_lite.core.recipe import load_recipe
    from hf_lite.core.settings import RecipeError

    with pytest.raises(RecipeError, match="need a chat template"):
        load_recipe({"model": {"task": "seq2seq"}, "data": {"system_prompt": "x"}})
    assert load_recipe({"model": {"task": "seq2seq"}}).generation is not None


def test_sequence_level_kd_trains_on_the_teachers_cached_answers(tmp_path, chat_dir, monkeypatch):
    import yaml

    import hf_lite.generation as generation

    monkeypatch.setenv("HF_LITE_CACHE", str(tmp_path / "cache"))
    recipe = yaml.safe_load(open(_chat_recipe(tmp_path, chat_dir, [])))
    recipe["teacher"] = {"name_or_path": chat_dir}
    recipe["data"]["response_source"] = "teacher"
    recipe["data"]["max_train_samples"] = 8
    recipe["training"]["max_steps"] = 1
    calls = []
    real = generation.generate
    monkeypatch.setattr(generation, "generate", lambda *a, **k: calls.append(len(a[2])) or real(*a, **k))
    assert main(["run", yaml.safe_dump(recipe)]) == 0
    cached = list((tmp_path / "cache" / "teacher_answers").glob("*.jsonl"))
    assert len(cached) == 1
    rows = [json.loads(line) for line in cached[0].read_text().splitlines()]
    assert len(rows) == 8 and rows[0]["prompt"][-1]["content"].startswith("summarize: ")
    assert calls[0] == 8  # the 8 training prompts, before the evaluation's generations
    calls.clear()
    recipe["export"]["overwrite"] = True
    assert main(["run", yaml.safe_dump(recipe)]) == 0
    assert 8 not in calls  # read from the cache
    # the answers are what the teacher (here the model itself) says greedily
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(chat_dir), AutoModelForCausalLM.from_pretrained(chat_dir)
    settings = GenerationSettings(max_new_tokens=4)
    assert real(model, tok, [rows[0]["prompt"]], settings)[0][0] == rows[0]["answer"]


def test_sequence_level_kd_needs_a_teacher():
    from hf_lite.core.recipe import load_recipe
    from hf_lite.core.settings import RecipeError

    with pytest.raises(RecipeError, match="response_source: teacher needs a teacher"):
        load_recipe({"model": {"task": "chat"}, "data": {"response_source": "teacher"}})


def test_a_script_trainer_names_the_generation_section_it_does_not_run(tmp_path, chat_dir, caplog):
    import logging

    from conftest import training_args
    from transformers import AutoModelForCausalLM

    from hf_lite import LiteTrainer

    recipe = {"model": {"task": "chat"}, "generation": {"max_new_tokens": 8}, "export": {"formats": ["safetensors"]}}
    with caplog.at_level(logging.WARNING):
        LiteTrainer(model=AutoModelForCausalLM.from_pretrained(chat_dir), args=training_args(tmp_path), recipe=recipe)
    assert "generation.{max_new_tokens}" in caplog.text and "export.{" not in caplog.text


@pytest.mark.parametrize("by", ["cut", "cosine", "search"])
def test_chat_student_keeps_the_best_blocks_ranked_on_assistant_tokens(tmp_path, chat_dir, caplog, by):
    import logging

    import yaml

    path = _chat_recipe(tmp_path, chat_dir, [])
    recipe = yaml.safe_load(open(path))
    recipe["model"]["init_from_teacher"] = {"keep": 1, "rank_rows": 8, "by": by}
    recipe["training"]["max_steps"] = 1
    with open(path, "w") as f:
        yaml.safe_dump(recipe, f)
    with caplog.at_level(logging.INFO, logger="hf_lite"):
        assert main(["run", path]) == 0
    assert json.loads((tmp_path / "out" / "config.json").read_text())["num_hidden_layers"] == 1
    if by == "cut":
        assert "init_from_teacher.keep=1: loss before training on 8 rows" in caplog.text
    else:
        assert f"init_from_teacher.keep=1 by {by}" in caplog.text and "before training on 8 rows" in caplog.text
