"""Chat data: assistant-only labels checked against the template, row checks, task-key checks."""

from __future__ import annotations

import json
import logging

import pytest
from conftest import make_chat_tokenizer, make_tokenizer

from hf_lite.chat import (
    chat_dataset,
    end_of_turn_ids,
    prompt_and_reference,
    read_chat_rows,
    row_messages,
    tokenize_conversation,
)
from hf_lite.core.recipe import DataSettings, load_recipe
from hf_lite.core.settings import DataError, RecipeError

CONVERSATION = [
    {"role": "system", "content": "be good"},
    {"role": "user", "content": "the movie was good"},
    {"role": "assistant", "content": "great fun"},
    {"role": "user", "content": "and the plot"},
    {"role": "assistant", "content": "boring"},
]


@pytest.fixture
def chat_tok(tmp_path):
    return make_chat_tokenizer(str(tmp_path / "chat-tok"))


def _runs(tok, row):
    """Contiguous labelled runs as token strings."""
    runs, cur = [], []
    for label in row["labels"]:
        if label == -100:
            if cur:
                runs.append(cur)
            cur = []
        else:
            cur.append(tok.convert_ids_to_tokens(label))
    return runs + ([cur] if cur else [])


def test_labels_are_exactly_the_assistant_turns_of_every_turn(chat_tok):
    row = tokenize_conversation(chat_tok, CONVERSATION)
    # the template renders each assistant turn as its text then <|im_end|>: those tokens, nothing else
    assert _runs(chat_tok, row) == [["great", "fun", "<|im_end|>"], ["boring", "<|im_end|>"]]
    for token, label in zip(row["input_ids"], row["labels"]):
        assert label in (-100, token)  # a label is the token itself (the model shifts)
    # the full text is what the template renders, tokenized once
    text = chat_tok.apply_chat_template(CONVERSATION, tokenize=False)
    assert row["input_ids"] == chat_tok(text, add_special_tokens=False)["input_ids"]


def test_prompt_response_rows_use_the_template_and_system_prompt():
    s = DataSettings(prompt_column="context", prompt_template="Summarize:\n{prompt}", system_prompt="be brief")
    messages = row_messages({"context": "A: hi", "response": "A greets."}, s, "row 1")
    assert messages == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "Summarize:\nA: hi"},
        {"role": "assistant", "content": "A greets."},
    ]
    assert prompt_and_reference(messages) == (messages[:2], "A greets.")


def test_end_of_turn_comes_from_the_template(chat_tok):
    assert end_of_turn_ids(chat_tok)[0] == chat_tok.convert_tokens_to_ids("<|im_end|>")


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_bad_rows_are_named_before_training(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [{"prompt": "a", "response": "b"}, {"prompt": "c", "response": " "}])
    with pytest.raises(DataError, match=r"d.jsonl, line 2 has no text in column 'response'"):
        read_chat_rows(DataSettings(train=path))
    with pytest.raises(DataError, match=r"column\(s\) \['dialogue'\] not found.*data.prompt_column"):
        read_chat_rows(DataSettings(train=path, prompt_column="dialogue"))
    convs = _jsonl(tmp_path / "m.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}])
    with pytest.raises(DataError, match="line 1: the conversation has no assistant message"):
        read_chat_rows(DataSettings(train=convs, messages_column="messages"))
    bad_role = _jsonl(tmp_path / "r.jsonl", [{"messages": [{"role": "bot", "content": "hi"}]}])
    with pytest.raises(DataError, match="message 0 needs a role"):
        read_chat_rows(DataSettings(train=bad_role, messages_column="messages"))


def test_messages_column_reads_whole_conversations(tmp_path, chat_tok):
    path = _jsonl(tmp_path / "m.jsonl", [{"messages": CONVERSATION}])
    train, _ = read_chat_rows(DataSettings(train=path, messages_column="messages"))
    assert train == [CONVERSATION]
    ds = chat_dataset(train, chat_tok, 64)
    assert ds[0] == tokenize_conversation(chat_tok, CONVERSATION)


def test_long_conversations_are_left_out_with_a_warning(chat_tok, caplog):
    short = [{"role": "user", "content": "good"}, {"role": "assistant", "content": "fun"}]
    with caplog.at_level(logging.WARNING):
        ds = chat_dataset([short, CONVERSATION], chat_tok, 12)
    assert len(ds) == 1 and "1 of 2 conversations are longer than data.max_length=12" in caplog.text
    with pytest.raises(DataError, match="every conversation is longer than data.max_length=4"):
        chat_dataset([short], chat_tok, 4)


def test_a_tokenizer_without_chat_template_is_refused(tmp_path):
    tok = make_tokenizer(str(tmp_path / "plain"))
    with pytest.raises(DataError, match="no chat template"):
        chat_dataset([CONVERSATION], tok, 64)


@pytest.mark.parametrize(
    "recipe, message",
    [
        ({"data": {"prompt_column": "x"}}, r"\[.prompt_column.\] are read by model.task: chat / seq2seq only"),
        ({"generation": {"max_new_tokens": 8}}, "generation: read by model.task: chat / seq2seq only"),
        ({"model": {"task": "chat"}, "data": {"text_column": "x"}}, r"\['text_column'\] are not read by"),
        ({"model": {"task": "chat"}, "data": {"prompt_template": "no field"}}, "must contain {prompt}"),
        (
            {"model": {"task": "chat"}, "data": {"messages_column": "m", "prompt_column": "p"}},
            "whole conversations replace",
        ),
        ({"model": {"task": "chat"}, "generation": {"metrics": ["bleu"]}}, "generation.metrics"),
        ({"model": {"task": "chat"}, "generation": {"prompts": [" "]}}, "empty prompt"),
    ],
)
def test_task_keys_are_checked(recipe, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe(recipe)


def test_chat_recipe_defaults():
    r = load_recipe({"model": {"task": "chat"}})
    assert r.model.head == "causal-lm" and r.generation.metrics == ["rouge"]
    assert load_recipe({}).generation is None
