"""Block-by-block one-shot compression.

1. Run the calibration batches through the model up to the first transformer block and keep that
   block's inputs (hidden states plus whatever else the model passes it: masks, rotary embeddings).
2. For each block: run it with hooks on its target Linears to collect input statistics, compress
   those Linears, then run the *compressed* block to produce the next block's inputs.

With ``true_sequential`` (GPTQ's option of that name) step 2 goes stage by stage inside the block:
Linears that read the same input tensor (q/k/v, then o, then gate/up, then down in a Llama block) form
a stage, and each stage's statistics are collected with the earlier stages already compressed. One
extra pass over the block per stage.

Only one block's activations are alive at a time (samples x seq_len x hidden), so memory stays near
the model's own size. Calibration runs in ``torch.no_grad`` with the model in eval mode.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from ..core.targets import decoder_blocks


class _Captured(Exception):
    pass


@torch.no_grad()
def capture_block_inputs(
    model: nn.Module, block: nn.Module, batches: Iterable[dict[str, torch.Tensor]]
) -> list[tuple[tuple, dict[str, Any]]]:
    """(args, kwargs) of ``block``'s forward for every calibration batch; the rest of the model is skipped."""
    captured: list[tuple[tuple, dict[str, Any]]] = []

    def hook(_module, args, kwargs):
        captured.append((args, dict(kwargs)))
        raise _Captured

    handle = block.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for batch in batches:
            try:
                model(**batch, use_cache=False)
            except _Captured:
                pass
    finally:
        handle.remove()
    return captured


def _hidden(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


def _with_hidden(args: tuple, kwargs: dict, hidden: torch.Tensor) -> tuple[tuple, dict]:
    if args:
        return (hidden, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": hidden}


def _block_output(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


class InputStats:
    """Forward hooks on Linears that accumulate what the algorithms need from their inputs:
    ``hessian`` (X^T X, scaled to 2/n as in the GPTQ/SparseGPT papers) or ``sq_norms`` (sum of x_j^2)."""

    def __init__(self, modules: dict[str, nn.Linear], kind: str):
        self.kind = kind
        self.sums: dict[str, torch.Tensor] = {}
        self.rows: dict[str, int] = {}
        self.handles = [m.register_forward_hook(self._hook(n)) for n, m in modules.items()]

    def _hook(self, name: str) -> Callable:
        def hook(_module, inputs, _output):
            x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).float()
            s = x.t() @ x if self.kind == "hessian" else (x * x).sum(0)
            self.sums[name] = self.sums[name] + s if name in self.sums else s
            self.rows[name] = self.rows.get(name, 0) + x.shape[0]

        return hook

    def get(self, name: str) -> torch.Tensor:
        if name not in self.sums:
            raise RuntimeError(f"{name} saw no calibration input (is it used in the forward pass?)")
        s = self.sums[name]
        return s * (2.0 / self.rows[name]) if self.kind == "hessian" else s

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


@torch.no_grad()
def linear_stages(
    block: nn.Module, modules: dict[str, nn.Linear], args: tuple, kwargs: dict
) -> list[dict[str, nn.Linear]]:
    """``modules`` split into stages in the order ``block`` calls them; Linears fed the same input tensor
    share a stage (the same tensor object: a model that copies its input per projection gets one stage per
    Linear, slower but still right). Found from one forward of ``block`` on one calibration batch."""
    calls: list[tuple[str, torch.Tensor]] = []

    def recorder(name: str) -> Callable:
        def hook(_module, inputs):
            calls.append((name, inputs[0]))

        return hook

    handles = [m.register_forward_pre_hook(recorder(n)) for n, m in modules.items()]
    try:
        block(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    stages: list[dict[str, nn.Linear]] = []
    seen: set[str] = set()
    previous = None
    for name, x in calls:
        if name in seen:
            continue  # called twice in one forward: stays in its first stage
        seen.add(name)
        if previous is None or x is not previous:
            stages.append({})
        stages[-1][name] = modules[name]
        previous = x
    unused = {n: m for n, m in modules.items() if n not in seen}
    return stages + [unused] if unused else stages  # InputStats.get then says they saw no input


@torch.no_grad()
def run_sequential(
    model: nn.Module,
    steps: list[tuple[dict[str, nn.Linear], str | None, Callable[[str, nn.Linear, torch.Tensor | None], None]]],
    batches: list[dict[str, torch.Tensor]],
    progress: bool = True,
    true_sequential: bool = False,
) -> dict[str, float]:
    """Compress block by block. ``steps`` are (modules, statistic kind or None, compress(name, module, stat)),
    applied in order inside every block; with ``true_sequential`` each step also goes stage by stage
    (:func:`linear_stages`). Returns wall times per phase."""
    was_training = model.training
    model.eval()
    blocks_name, blocks = decoder_blocks(model)
    timings = {"capture_s": 0.0, "statistics_s": 0.0, "compress_s": 0.0, "propagate_s": 0.0}
    t = time.perf_counter()
    inputs = capture_block_inputs(model, blocks[0], batches)
    timings["capture_s"] = time.perf_counter() - t
    # blocks after the last one holding a target need no pass at all
    last = max(
        i
        for i in range(len(blocks))
        for modules, _, _ in steps
        if any(n.startswith(f"{blocks_name}.{i}.") for n in modules)
    )
    bar = _progress(last + 1, progress)
    try:
        for index, block in enumerate(blocks[: last + 1]):
            prefix = f"{blocks_name}.{index}."
            for modules, kind, compress in steps:
                mine = {n: m for n, m in modules.items() if n.startswith(prefix)}
                if not mine:
                    continue
                stages = [mine]
                if kind is not None and true_sequential:
                    stages = linear_stages(block, mine, *inputs[0])
                for stage in stages:
                    stats = None
                    if kind is not None:
                        t = time.perf_counter()
                        stats = InputStats(stage, kind)
                        try:
                            for args, kwargs in inputs:
                                block(*args, **kwargs)
                        finally:
                            stats.remove()
                        timings["statistics_s"] += time.perf_counter() - t
                    t = time.perf_counter()
                    for name, module in stage.items():
                        compress(name, module, stats.get(name) if stats is not None else None)
                    timings["compress_s"] += time.perf_counter() - t
            t = time.perf_counter()
            inputs = [_with_hidden(a, k, _block_output(block(*a, **k))) for a, k in inputs]
            timings["propagate_s"] += time.perf_counter() - t
            bar.update(1)
    finally:
        bar.close()
        model.train(was_training)
    return {k: round(v, 2) for k, v in timings.items()}


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="one-shot blocks", unit="block", disable=not enabled)
