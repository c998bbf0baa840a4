"""Generation: answers from a (compressed) chat model, scored with ROUGE or exact match, and streamed
to a terminal by ``hf-lite chat``.

Works on any causal LM the Trainer holds (plain, peft-wrapped, with fake-quant or masked Linears):
prompts are rendered with the chat template when the tokenizer has one, left-padded, and decoded
greedily (or with beams) until the end-of-turn token.
"""

from __future__ import annotations

import re
import string
import time
from typing import Any

import torch

from .core.recipe import GenerationSettings


def prompt_ids(tokenizer, prompt: list[dict[str, str]] | str, encoder_decoder: bool = False) -> list[int]:
    """Token ids of a prompt: a conversation (rendered with the generation prompt) or plain text. An
    encoder-decoder reads the last user message as plain text."""
    from .chat import render

    if encoder_decoder:
        return tokenizer(prompt if isinstance(prompt, str) else prompt[-1]["content"])["input_ids"]
    if isinstance(prompt, str):
        if getattr(tokenizer, "chat_template", None):
            prompt = [{"role": "user", "content": prompt}]
        else:
            return tokenizer(prompt)["input_ids"]
    return tokenizer(render(tokenizer, prompt, generation_prompt=True), add_special_tokens=False)["input_ids"]


def _encoder_decoder(model: torch.nn.Module) -> bool:
    return bool(getattr(model.config, "is_encoder_decoder", False))


def _stop_ids(tokenizer, encoder_decoder: bool = False) -> list[int]:
    from .chat import end_of_turn_ids

    if getattr(tokenizer, "chat_template", None) and not encoder_decoder:
        return end_of_turn_ids(tokenizer)
    return [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    tokenizer,
    prompts: list[list[dict[str, str]] | str],
    settings: GenerationSettings | None = None,
) -> tuple[list[str], dict[str, float]]:
    """Answers to ``prompts`` (conversations or plain strings), and timing: seconds, new tokens and
    new tokens per second. The model is put in eval mode for the call and restored after."""
    settings = settings or GenerationSettings()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    enc_dec = _encoder_decoder(model)
    stop = _stop_ids(tokenizer, enc_dec)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    answers: list[str] = []
    new_tokens, start = 0, time.perf_counter()
    try:
        encoded = [prompt_ids(tokenizer, p, enc_dec) for p in prompts]
        for i in range(0, len(encoded), settings.batch_size):
            batch = encoded[i : i + settings.batch_size]
            width = max(len(b) for b in batch)
            ids = torch.tensor([[pad] * (width - len(b)) + b for b in batch], device=device)
            mask = torch.tensor([[0] * (width - len(b)) + [1] * len(b) for b in batch], device=device)
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=settings.max_new_tokens,
                num_beams=settings.num_beams,
                do_sample=False,
                eos_token_id=stop or None,
                pad_token_id=pad,
            )
            # a decoder-only model returns prompt + answer; an encoder-decoder the decoder start + answer
            for row in out[:, 1:] if enc_dec else out[:, width:]:
                row = row.tolist()
                ends = [j for j, t in enumerate(row) if t in stop]
                row = row[: ends[0]] if ends else row
                new_tokens += len(row) + (1 if ends else 0)
                answers.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    finally:
        model.train(was_training)
    seconds = time.perf_counter() - start
    return answers, {"seconds": seconds, "new_tokens": new_tokens, "tokens_per_s": new_tokens / max(seconds, 1e-9)}


def rouge(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F1 (Porter-stemmed, as in transformers' summarization examples), with the
    ``rouge-score`` package."""
    try:
        from rouge_score import rouge_scorer
    except ImportError as e:
        raise ImportError("ROUGE needs the rouge-score package: pip install 'hf-lite[generation]'") from e
    keys = ("rouge1", "rouge2", "rougeL")
    scorer = rouge_scorer.RougeScorer(list(keys), use_stemmer=True)
    totals = dict.fromkeys(keys, 0.0)
    for p, r in zip(predictions, references, strict=True):
        scores = scorer.score(r, p)
        for k in keys:
            totals[k] += scores[k].fmeasure
    return {k: v / max(len(predictions), 1) for k, v in totals.items()}


def _normalize(text: str) -> str:
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    return re.sub(r"\s+", " ", text).strip()


def exact_match(predictions: list[str], references: list[str]) -> float:
    """Share of answers equal to their reference after lower-casing, dropping punctuation and
    collapsing whitespace."""
    pairs = list(zip(predictions, references, strict=True))
    return sum(_normalize(p) == _normalize(r) for p, r in pairs) / max(len(pairs), 1)


def check_metrics(settings: GenerationSettings) -> None:
    """Fail before training when a metric's package is missing."""
    if "rouge" in settings.metrics:
        try:
            import rouge_score  # noqa: F401
        except ImportError as e:
            raise ImportError("generation.metrics: rouge needs rouge-score: pip install 'hf-lite[generation]'") from e


def evaluate_generation(
    model: torch.nn.Module,
    tokenizer,
    conversations: list[list[dict[str, str]]],
    settings: GenerationSettings | None = None,
    prefix: str = "eval",
) -> tuple[dict[str, float], list[str]]:
    """Answer the last assistant turn of each conversation (the first ``settings.max_samples``) and
    score it against the reference: ``{prefix}_rouge1/2/L``, ``{prefix}_exact_match``,
    ``{prefix}_generate_tokens_per_s``. Returns (metrics, answers)."""
    from .chat import prompt_and_reference

    settings = settings or GenerationSettings()
    rows = conversations[: settings.max_samples] if settings.max_samples else conversations
    prompts, references = zip(*(prompt_and_reference(c) for c in rows)) if rows else ((), ())
    answers, timing = generate(model, tokenizer, list(prompts), settings)
    metrics: dict[str, float] = {}
    if "rouge" in settings.metrics:
        metrics.update({f"{prefix}_{k}": v for k, v in rouge(answers, list(references)).items()})
    if "exact_match" in settings.metrics:
        metrics[f"{prefix}_exact_match"] = exact_match(answers, list(references))
    metrics[f"{prefix}_generate_tokens_per_s"] = timing["tokens_per_s"]
    metrics[f"{prefix}_generated_tokens"] = float(timing["new_tokens"])
    return metrics, answers


def stream_reply(model, tokenizer, messages: list[dict[str, str]] | str, max_new_tokens: int = 256) -> str:
    """Generate one answer, printing it as it is produced; returns the answer."""
    from transformers import TextStreamer

    enc_dec = _encoder_decoder(model)
    ids = torch.tensor([prompt_ids(tokenizer, messages, enc_dec)], device=next(model.parameters()).device)
    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=_stop_ids(tokenizer, enc_dec) or None,
            pad_token_id=pad,
            streamer=streamer,
        )
    return tokenizer.decode(out[0, 1 if enc_dec else ids.shape[1] :], skip_special_tokens=True).strip()


def report_samples(
    conversations: list[list[dict[str, str]]], answers: dict[str, list[str]], count: int
) -> list[dict[str, Any]]:
    """The first ``count`` evaluation rows with their reference and each tag's answer (for report.json)."""
    from .chat import prompt_and_reference

    out = []
    for i, conv in enumerate(conversations[:count]):
        prompt, reference = prompt_and_reference(conv)
        row = {"prompt": prompt[-1]["content"], "reference": reference}
        row.update({tag: a[i] for tag, a in answers.items() if i < len(a)})
        out.append(row)
    return out


def teacher_answers(
    teacher: torch.nn.Module,
    tokenizer,
    conversations: list[list[dict[str, str]]],
    settings: GenerationSettings | None = None,
    cache_file: str | None = None,
) -> list[list[dict[str, str]]]:
    """Sequence-level distillation data: each conversation with its last answer replaced by the
    teacher's greedy answer to the same prompt. With ``cache_file`` the answers are read from it when it
    holds exactly these prompts, else generated and written there (JSON lines). Conversations whose
    teacher answer is empty are left out, with a warning."""
    import json
    import logging
    import os

    from .chat import prompt_and_reference

    prompts = [prompt_and_reference(c)[0] for c in conversations]
    answers = None
    if cache_file and os.path.isfile(cache_file):
        with open(cache_file, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f]
        if [r["prompt"] for r in rows] == prompts:
            answers = [r["answer"] for r in rows]
    if answers is None:
        answers = generate(teacher, tokenizer, prompts, settings)[0]
        if cache_file:
            os.makedirs(os.path.dirname(os.path.abspath(cache_file)), exist_ok=True)
            tmp = cache_file + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                for p, a in zip(prompts, answers):
                    f.write(json.dumps({"prompt": p, "answer": a}, ensure_ascii=False) + "\n")
            os.replace(tmp, cache_file)
    out = [p + [{"role": "assistant", "content": a}] for p, a in zip(prompts, answers) if a.strip()]
    if len(out) < len(prompts):
        logging.getLogger(__name__).warning(
            "hf_lite: the teacher gave an empty answer to %d of %d training prompts; those rows are left out",
            len(prompts) - len(out),
            len(prompts),
        )
    return out


def teacher_cache_file(teacher_path: str, conversations: list, settings: GenerationSettings) -> str:
    """Where :func:`teacher_answers` keeps the answers of one teacher (path and weights' mtime) to one set
    of prompts with one generation setting."""
    import hashlib
    import json
    import os

    from .models import cache_dir, resolve_model_path

    folder = resolve_model_path(teacher_path)
    weights = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors")) if os.path.isdir(folder) else []
    stamp = [(f, os.path.getmtime(os.path.join(folder, f))) for f in weights]
    key = json.dumps(
        [teacher_path, stamp, conversations, settings.max_new_tokens, settings.num_beams], sort_keys=True, default=str
    )
    return os.path.join(cache_dir(), "teacher_answers", hashlib.sha256(key.encode()).hexdigest()[:24] + ".jsonl")
