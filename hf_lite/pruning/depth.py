"""``block_drop``: remove whole transformer blocks, faded out during training instead of cut at once.

A dropped block's output is blended towards its input, ``x + s * (block(x) - x)``, with ``s`` going
from 1 at ``start`` to 0 at ``end`` (a pure function of the step); from ``end`` on the block passes its
input through unchanged, and ``finalize`` takes it out of the model (config updated), so plain
``from_pretrained`` builds the shallower model. The rest of the network, usually with a distillation
term, adapts while the blocks fade, instead of starting from the loss jump of a one-shot cut
(``model.init_from_teacher``). The price: dropped blocks are still computed until ``finalize``.

Which blocks: ``drop: [...]`` by index, or ``keep: N`` — the N blocks that change their input most
(lowest cosine between a block's input and output on the real tokens of the training batches before
``start``; ShortGPT's block influence, as ``init_from_teacher: {keep: N, by: cosine}``).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Any, Literal

import torch
from torch import nn

from ..core.distributed import broadcast_, is_distributed
from ..core.modifier import Context, Modifier, register_modifier
from ..core.settings import RecipeError, Settings, StepOrFraction, check_step_or_fraction
from ..core.targets import decoder_blocks, keep_decoder_blocks
from .schedules import sparsity_at

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class BlockDropSettings(Settings):
    """Fade whole transformer blocks out during training, then remove them."""

    #: indices of the blocks to remove (0 = the first block); give this or ``keep``
    drop: list[int] | None = None
    #: number of blocks to keep; the others, those that change their input least on the training batches
    #: before ``start``, are removed (``start`` must then be at least one step in)
    keep: int | None = None
    #: step (int) or fraction of max_steps (float) where the fade begins (and ``keep`` chooses the blocks)
    start: StepOrFraction = 0.0
    #: step (int) or fraction (float) from which the dropped blocks pass their input through unchanged
    end: StepOrFraction = 0.3
    #: how the dropped blocks' share falls from 1 to 0: ``linear``, ``cubic`` (fast first, as GMP's
    #: sparsity rises) or ``constant`` (gone at ``start``)
    schedule: Literal["linear", "cubic", "constant"] = "linear"

    def validate(self) -> None:
        if (self.drop is None) == (self.keep is None):
            self.fail("drop", "give either drop: [block indices] or keep: N (how many blocks stay), not both")
        if self.drop is not None and (not self.drop or len(set(self.drop)) != len(self.drop) or min(self.drop) < 0):
            self.fail("drop", "must list distinct block indices >= 0, e.g. [3, 4, 5]")
        if self.keep is not None and self.keep < 1:
            self.fail("keep", "must be >= 1 (the number of blocks that stay)")
        check_step_or_fraction(self, "start")
        check_step_or_fraction(self, "end")
        if type(self.start) is type(self.end) and self.end < self.start:
            self.fail("end", f"must not come before start ({self.start})")


@register_modifier("block_drop")
class BlockDropModifier(Modifier):
    """Blends the dropped blocks out between ``start`` and ``end``; removes them at finalize."""

    settings_cls = BlockDropSettings

    def __init__(self, settings: BlockDropSettings):
        super().__init__(settings)
        self.dropped: list[int] | None = list(settings.drop) if settings.drop is not None else None
        self.scale = 1.0  # the dropped blocks' share of their own output at the current step
        self.num_blocks = 0
        self.influence: torch.Tensor | None = None  # keep: sum of 1 - cos per block, and the token count
        self.tokens = 0
        self._mask: torch.Tensor | None = None
        self._device = torch.device("cpu")
        self._hooks: list[tuple[nn.Module, int]] = []  # (module, hook id): ids survive a deepcopy, handles not

    # -- lifecycle ---------------------------------------------------------------------------------
    def initialize(self, model: nn.Module, ctx: Context) -> nn.Module:
        if getattr(getattr(model, "config", None), "is_encoder_decoder", False):
            # one layer count in the config would no longer describe both stacks
            raise RecipeError(
                "block_drop: encoder-decoder models are not supported; use it on decoder-only or encoder models"
            )
        _, blocks = decoder_blocks(model)
        n = self.num_blocks = len(blocks)
        s = self.settings
        if s.drop is not None and max(s.drop) >= n:
            raise RecipeError(f"block_drop.drop: the model has blocks 0-{n - 1}; {max(s.drop)} is not one of them")
        if (len(s.drop) if s.drop is not None else n - s.keep) not in range(1, n):
            raise RecipeError(f"block_drop: the model has {n} blocks; drop between 1 and {n - 1} of them")
        self.influence = torch.zeros(n, dtype=torch.float64)
        for i, block in enumerate(blocks):  # bound methods, so a deepcopy of model and modifier stays paired
            h = block.register_forward_hook(functools.partial(self._block_hook, i), with_kwargs=True)
            self._hooks.append((block, h.id))
        h = model.register_forward_pre_hook(self._model_hook, with_kwargs=True)
        self._hooks.append((model, h.id))
        return model

    def on_train_begin(self, model: nn.Module, ctx: Context) -> None:
        super().on_train_begin(model, ctx)
        if self.dropped is None and self.start_step < 1:
            raise RecipeError(
                "block_drop.keep chooses the blocks on the training steps before start, and start is step 0: "
                "set start to at least one step (e.g. start: 0.05), or list the blocks with drop: [...]"
            )
        if self.end_step > ctx.max_steps or self.start_step >= ctx.max_steps:
            raise RecipeError(
                f"block_drop: the fade runs from step {self.start_step} to {self.end_step} but training has "
                f"{ctx.max_steps} steps, so the blocks would be cut while still in use; move start/end earlier "
                "(fractions of the run, e.g. start: 0.0, end: 0.3)"
            )
        self.scale = self.scale_at(ctx.step)

    def on_step_begin(self, model: nn.Module, ctx: Context) -> None:
        if self.dropped is None and ctx.step >= self.start_step:
            self.choose()
        self.scale = self.scale_at(ctx.step)

    def scale_at(self, step: int) -> float:
        """The dropped blocks' share of their own output at ``step``: 1 before start, 0 from end."""
        gone = sparsity_at(step, self.start_step, self.end_step, 0.0, 1.0, self.settings.schedule)
        return 1.0 - gone

    def choose(self) -> None:
        """``keep``: drop the blocks that changed their input least on the batches measured so far (rank 0's
        measure, so every rank drops the same ones)."""
        if not self.tokens:
            raise RecipeError(
                "block_drop.keep: no training batch was measured before the blocks had to be chosen; "
                "list the blocks with drop: [...]"
            )
        # on the activations' device: NCCL broadcasts CUDA tensors only
        mean = broadcast_((self.influence / self.tokens).to(self._device)).cpu()
        order = sorted(range(self.num_blocks), key=lambda i: float(mean[i]))
        self.dropped = sorted(order[: self.num_blocks - self.settings.keep])
        logger.info(
            "hf_lite: block_drop: dropping blocks %s (lowest mean 1 - cos between input and output over %d tokens)",
            self.dropped,
            self.tokens,
        )

    def finalize(self, model: nn.Module, ctx: Context) -> nn.Module:
        if self.dropped is None:  # training ended before start
            self.choose()
        for module, hook_id in self._hooks:
            module._forward_hooks.pop(hook_id, None)
            module._forward_hooks_with_kwargs.pop(hook_id, None)
            module._forward_pre_hooks.pop(hook_id, None)
            module._forward_pre_hooks_with_kwargs.pop(hook_id, None)
        self._hooks = []
        kept = [i for i in range(self.num_blocks) if i not in self.dropped]
        keep_decoder_blocks(model, kept)
        # which blocks of the trained model stayed, saved with the config (as init_from_teacher's students)
        model.config.hf_lite_block_drop = {"kept": kept, "blocks_before": self.num_blocks}
        logger.info("hf_lite: block_drop: removed blocks %s; %d of %d stay", self.dropped, len(kept), self.num_blocks)
        return model

    # -- hooks -------------------------------------------------------------------------------------
    def _model_hook(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        mask = kwargs.get("attention_mask")
        self._mask = mask.bool() if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None

    def _block_hook(self, index: int, module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> Any:
        x = kwargs.get("hidden_states", args[0] if args else None)
        y = output[0] if isinstance(output, tuple) else output
        if self.dropped is None:
            if module.training and x is not None:
                self._measure(index, x, y)
            return None
        if index not in self.dropped or self.scale >= 1.0:
            return None
        # under DDP every parameter must reach backward (find_unused_parameters may be off): a zero share
        # keeps the faded block in the graph there; in one process its backward is skipped
        blended = x + self.scale * (y - x) if self.scale > 0 or is_distributed() else x
        return (blended, *output[1:]) if isinstance(output, tuple) else blended

    @torch.no_grad()
    def _measure(self, index: int, x: torch.Tensor, y: torch.Tensor) -> None:
        mask = self._mask if self._mask is not None and self._mask.shape == x.shape[:2] else None
        x, y = (x[mask], y[mask]) if mask is not None else (x.flatten(0, -2), y.flatten(0, -2))
        cos = nn.functional.cosine_similarity(x.double(), y.double(), dim=-1)
        self._device = x.device
        self.influence[index] += float((1 - cos).sum())
        if index == 0:
            self.tokens += len(cos)

    # -- reporting and state -----------------------------------------------------------------------
    def stats(self) -> dict[str, float]:
        return {"dropped_blocks": float(len(self.dropped or [])), "dropped_output_share": self.scale}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update({"dropped": list(self.dropped) if self.dropped is not None else None, "tokens": self.tokens})
        if self.influence is not None:
            state["influence"] = self.influence
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if state.get("dropped") is not None:
            self.dropped = [int(i) for i in state["dropped"]]
        self.tokens = int(state.get("tokens", 0))
        if "influence" in state:
            self.influence = state["influence"].to(torch.float64)
