"""Causal-LM evaluation for one-shot runs: windowed perplexity and a short greedy generation.

Perplexity protocol (``../shared/BENCH-PROTOCOL.md``): the text with ``\\r`` removed is tokenized once
(no special tokens); the first ``windows * seq_len`` tokens are cut into non-overlapping windows of
``seq_len`` (stride = seq_len, no context carried across windows); every window predicts its
``seq_len - 1`` next tokens and ppl = exp(mean NLL over all predicted tokens). The defaults, 32
windows of 512 tokens (16,384 tokens), take about a minute for SmolLM2-135M on 2 CPU cores.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def text_windows(text: str, tokenizer, seq_len: int = 512, windows: int = 32) -> torch.Tensor:
    ids = tokenizer(text.replace("\r", ""), add_special_tokens=False)["input_ids"]
    n = min(windows, len(ids) // seq_len)
    if n == 0:
        raise ValueError(f"perplexity: the text has {len(ids)} tokens, fewer than one window of {seq_len}")
    return torch.tensor(ids[: n * seq_len]).reshape(n, seq_len)


@torch.no_grad()
def perplexity(model: nn.Module, windows: torch.Tensor, batch_size: int = 4) -> float:
    """exp(mean next-token NLL) over all windows (each window starts without context)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total_nll, total_tokens = 0.0, 0
    try:
        for i in range(0, len(windows), batch_size):
            ids = windows[i : i + batch_size].to(device)
            logits = model(input_ids=ids, use_cache=False).logits[:, :-1].float()
            nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="sum")
            total_nll += float(nll)
            total_tokens += ids[:, 1:].numel()
    finally:
        model.train(was_training)
    return math.exp(total_nll / total_tokens)


@torch.no_grad()
def generation_sample(model: nn.Module, tokenizer, prompt: str, max_new_tokens: int = 32) -> str:
    """Greedy continuation of ``prompt`` (deterministic), for a quick look at what compression did."""
    device = next(model.parameters()).device
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"].to(device)
    out = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
    )
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
