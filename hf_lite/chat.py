"""Chat data: prompt/response rows or whole conversations rendered with the tokenizer's chat template,
labelled on the assistant tokens only (everything else is -100).

The assistant tokens are found from the template itself: for assistant turn ``i`` the text the
template renders for the turns before it plus the generation prompt is a prefix of the text rendered
through turn ``i``; the characters in between (the answer and the template's end-of-turn marker) are
the ones trained, mapped to tokens with the fast tokenizer's offsets. Templates that rewrite earlier
turns (so that rendering is not prefix-stable) are refused with an error.
"""

from __future__ import annotations

import logging
from typing import Any

from .core.recipe import DataSettings
from .core.settings import DataError

logger = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant")
IGNORE = -100


def check_chat_tokenizer(tokenizer, key: str = "model.name_or_path") -> None:
    """The tokenizer can render conversations and map characters to tokens."""
    if not getattr(tokenizer, "chat_template", None):
        raise DataError(
            f"{key}: the tokenizer has no chat template, which model.task: chat renders conversations with; "
            "use an instruct/chat model, set tokenizer.chat_template, or train with model.task: causal-lm"
        )
    if not getattr(tokenizer, "is_fast", False):
        raise DataError(f"{key}: model.task: chat needs a fast tokenizer (character offsets); this one is slow")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def row_messages(row: dict[str, Any], settings: DataSettings, at: str) -> list[dict[str, str]]:
    """The conversation of one data row (with its answer), checked; ``at`` names the row in errors."""
    if settings.messages_column:
        messages = row[settings.messages_column]
        if not isinstance(messages, list) or not messages:
            raise DataError(f"{at}: column {settings.messages_column!r} is not a list of {{role, content}} messages")
        out = []
        for i, m in enumerate(messages):
            role = m.get("role") if isinstance(m, dict) else None
            if role not in ROLES or _text(m.get("content")) is None:
                raise DataError(
                    f"{at}: message {i} needs a role in {list(ROLES)} and non-empty content, got {str(m)[:80]!r}"
                )
            out.append({"role": role, "content": m["content"]})
        if not any(m["role"] == "assistant" for m in out):
            raise DataError(f"{at}: the conversation has no assistant message to learn from")
    else:
        prompt, response = _text(row[settings.prompt_column]), _text(row[settings.response_column])
        if prompt is None:
            raise DataError(f"{at} has no text in column {settings.prompt_column!r}")
        if response is None:
            raise DataError(f"{at} has no text in column {settings.response_column!r}")
        out = [
            {"role": "user", "content": settings.prompt_template.format(prompt=prompt)},
            {"role": "assistant", "content": response},
        ]
    if settings.system_prompt and out[0]["role"] != "system":
        out.insert(0, {"role": "system", "content": settings.system_prompt})
    return out


def prompt_and_reference(messages: list[dict[str, str]]) -> tuple[list[dict[str, str]], str]:
    """The conversation up to its last assistant turn, and that turn's text (what generation is scored on)."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return messages[:last], messages[last]["content"]


def render(tokenizer, messages: list[dict[str, str]], generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def assistant_spans(tokenizer, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of its assistant turns (answer + end marker)."""
    text = render(tokenizer, messages)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:i], generation_prompt=True) if i else ""
        through = render(tokenizer, messages[: i + 1])
        if not (through.startswith(before) and text.startswith(through)):
            raise DataError(
                "model.task: chat: the tokenizer's chat template renders earlier turns differently once later "
                "ones follow, so the assistant tokens cannot be located; use a template without that rewrite"
            )
        spans.append((len(before), len(through.rstrip())))  # trailing newlines belong to the template
    return text, spans


def tokenize_conversation(tokenizer, messages: list[dict[str, str]]) -> dict[str, list[int]]:
    """input_ids, attention_mask and labels (-100 everywhere but the assistant turns)."""
    text, spans = assistant_spans(tokenizer, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    labels = []
    for tok, (start, end) in zip(enc["input_ids"], enc["offset_mapping"]):
        inside = end > start and any(a <= start < b for a, b in spans)
        labels.append(tok if inside else IGNORE)
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels}


def end_of_turn_ids(tokenizer) -> list[int]:
    """Token ids that end an assistant answer: the first token the template puts after the answer's
    text (``<|im_end|>``, ``<|eot_id|>``, ...), and the tokenizer's eos."""
    probe = "hf_lite probe answer"
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": probe}]
    ids: list[int] = []
    text = render(tokenizer, messages)
    if probe in text:
        tail = text[text.rindex(probe) + len(probe) :].strip()
        if tail:
            ids += tokenizer(tail, add_special_tokens=False)["input_ids"][:1]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def read_chat_rows(settings: DataSettings) -> tuple[list | None, list | None]:
    """(train, eval) conversations read and checked before any model loads; either may be None."""
    from .data import _line, load_split, split_sources

    out = []
    for where, source, limit in split_sources(settings):
        if source is None:
            out.append(None)
            continue
        ds = load_split(source, "train" if where == "train" else "validation", settings.fallback, f"data.{where}")
        wanted = [settings.messages_column] if settings.messages_column else [settings.prompt_column]
        wanted += [] if settings.messages_column else [settings.response_column]
        missing = [c for c in wanted if c not in ds.column_names]
        if missing:
            keys = "data.messages_column" if settings.messages_column else "data.prompt_column / data.response_column"
            raise DataError(
                f"data.{where}: column(s) {missing} not found; the file has {ds.column_names}. Set {keys} "
                "to the right names"
            )
        if limit is not None:
            ds = ds.select(range(min(limit, len(ds))))
        out.append([row_messages(row, settings, f"data.{where}: {_line(source, i)}") for i, row in enumerate(ds)])
    return out[0], out[1]


def chat_dataset(conversations: list[list[dict[str, str]]] | None, tokenizer, max_length: int, where: str = "train"):
    """A ``datasets.Dataset`` of tokenized conversations (labels on the assistant tokens) for any
    Trainer; pad it with ``DataCollatorForSeq2Seq`` (labels padded with -100). Conversations longer
    than ``max_length`` tokens are left out with a warning saying how many."""
    import datasets

    if conversations is None:
        return None
    check_chat_tokenizer(tokenizer)
    rows = [tokenize_conversation(tokenizer, m) for m in conversations]
    kept = [r for r in rows if len(r["input_ids"]) <= max_length]
    if not kept:
        longest = min(len(r["input_ids"]) for r in rows)
        raise DataError(
            f"data.{where}: every conversation is longer than data.max_length={max_length} tokens (the shortest "
            f"has {longest}); raise data.max_length"
        )
    if len(kept) < len(rows):
        logger.warning(
            "hf_lite: data.%s: %d of %d conversations are longer than data.max_length=%d tokens and are left out; "
            "raise data.max_length to keep them",
            where,
            len(rows) - len(kept),
            len(rows),
            max_length,
        )
    return datasets.Dataset.from_list(kept)


def seq2seq_dataset(conversations: list[list[dict[str, str]]] | None, tokenizer, max_length: int, where: str = "train"):
    """Encoder inputs (the user message) and labels (the answer) for an encoder-decoder, both cut at
    ``max_length`` tokens (with a warning saying how many were cut); pad with ``DataCollatorForSeq2Seq``."""
    import datasets

    if conversations is None:
        return None
    sources = [prompt_and_reference(c)[0][-1]["content"] for c in conversations]
    targets = [prompt_and_reference(c)[1] for c in conversations]
    full_src = tokenizer(sources)["input_ids"]
    full_tgt = tokenizer(text_target=targets)["input_ids"]
    cut = sum(len(a) > max_length or len(b) > max_length for a, b in zip(full_src, full_tgt))
    if cut:
        logger.warning(
            "hf_lite: data.%s: %d of %d rows have an input or answer longer than data.max_length=%d tokens and "
            "are cut; raise data.max_length to keep them whole",
            where,
            cut,
            len(sources),
            max_length,
        )
    enc = tokenizer(sources, truncation=True, max_length=max_length)
    labels = tokenizer(text_target=targets, truncation=True, max_length=max_length)["input_ids"]
    return datasets.Dataset.from_dict(
        {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels}
    )


def chat_text(conversations: list[list[dict[str, str]]], tokenizer) -> str:
    """The conversations rendered as one text (calibration data for one-shot methods)."""
    return "\n".join(render(tokenizer, m) for m in conversations)
