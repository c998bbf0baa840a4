"""Second-order gradual pruning (oBERT: Kurtic et al. 2022, "The Optimal BERT Surgeon").

The loss near the current weights is modelled by the empirical Fisher of recent gradients, per block
of ``block_size`` consecutive weights (row-major): ``F = damp * I + (1/m) sum_i g_i g_i^T``. Its inverse
is built with the Woodbury identity (m x m systems for m gradients) while m is below the block size,
and directly (B x B systems) from there on. A weight's saliency, the loss
increase from zeroing it alone, is ``w_q^2 / (2 [F^-1]_qq)``; the weights with the lowest saliency are
pruned on the usual schedules, and the survivors of each block get the OBS update that zeroes the
pruned set ``Q`` at the least loss increase: ``dw = -F^-1[:, Q] (F^-1[Q, Q])^-1 w_Q``. With m gradients
below the block size that update is computed in its low-rank form (:func:`obs_update_lowrank`), which
never forms a B x B matrix.

The gradients are the ones the Trainer computes anyway: the last ``num_grads`` optimizer steps since
the previous pruning step. Nothing extra runs over the data.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from typing import Literal

import torch
from torch import nn

from ..core.distributed import write_
from ..core.modifier import Context, register_modifier
from .base import base_weight
from .magnitude import MagnitudePruningModifier, MagnitudePruningSettings

logger = logging.getLogger(__name__)

#: blocks handled at once (bounds the float64 work memory to a few CHUNK * num_grads * block_size tensors)
CHUNK = 8192


def _woodbury_terms(grads: torch.Tensor, damp: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(G, K^-1 G) per block, with G the (blocks, m, B) gradients and K = m * damp * I + G G^T (m x m)."""
    g = grads.double().transpose(0, 1)
    m = g.shape[1]
    k = m * damp * torch.eye(m, dtype=torch.float64, device=g.device) + g @ g.transpose(1, 2)
    return g, torch.cholesky_solve(g, torch.linalg.cholesky(k))


def _direct_inverse(grads: torch.Tensor, damp: float) -> torch.Tensor:
    """(blocks, B, B) inverse of ``damp * I + (1/m) G^T G``, formed and inverted directly (B x B systems)."""
    g = grads.double().transpose(0, 1)  # (blocks, m, B)
    m, size = g.shape[1], g.shape[2]
    fisher = damp * torch.eye(size, dtype=torch.float64, device=g.device) + g.transpose(1, 2) @ g / m
    return torch.cholesky_inverse(torch.linalg.cholesky(fisher))


def fisher_inverse(grads: torch.Tensor, damp: float) -> torch.Tensor:
    """(blocks, B, B) inverse of ``damp * I + (1/m) sum_i g_i g_i^T`` for ``grads`` of shape (m, blocks, B),
    in float64. With m below the block size it uses the Woodbury identity,
    ``(I - G^T (m damp I + G G^T)^-1 G) / damp`` (m x m systems); from m = B on, B x B systems are the
    smaller ones and the Fisher is inverted directly."""
    m, blocks, size = grads.shape
    eye = torch.eye(size, dtype=torch.float64, device=grads.device).expand(blocks, size, size)
    if m == 0:
        return eye / damp
    if m >= size:
        return _direct_inverse(grads, damp)
    g, y = _woodbury_terms(grads, damp)
    return (eye - g.transpose(1, 2) @ y) / damp


def fisher_inverse_diagonal(grads: torch.Tensor, damp: float, blocks: int, size: int) -> torch.Tensor:
    """The diagonal of :func:`fisher_inverse` (blocks, B); below m = B without forming B x B matrices."""
    if grads.shape[0] == 0:
        return torch.full((blocks, size), 1.0 / damp, dtype=torch.float64, device=grads.device)
    if grads.shape[0] >= size:
        return torch.diagonal(_direct_inverse(grads, damp), dim1=-2, dim2=-1)
    g, y = _woodbury_terms(grads, damp)
    return (1.0 - (g * y).sum(1)) / damp


def obs_saliency(w: torch.Tensor, finv_diag: torch.Tensor) -> torch.Tensor:
    """Loss increase from zeroing each weight alone: ``w^2 / (2 [F^-1]_qq)``; both are (blocks, B)."""
    return w.double() ** 2 / (2 * finv_diag)


def obs_update(w: torch.Tensor, finv: torch.Tensor, prune: torch.Tensor) -> torch.Tensor:
    """The weights after zeroing ``prune`` (bool, (blocks, B)) at the least loss increase under ``F``:
    ``w - F^-1[:, Q] (F^-1[Q, Q])^-1 w_Q`` per block. The system is kept square for every block by
    putting the identity on the kept coordinates: ``(P F^-1 P + I - P) z = P w`` gives ``z_Q``; that
    matrix is symmetric positive definite, so a Cholesky solve does."""
    p = prune.double()
    w64 = w.double()
    a = p.unsqueeze(-1) * finv * p.unsqueeze(-2) + torch.diag_embed(1.0 - p)
    z = torch.cholesky_solve((p * w64).unsqueeze(-1), torch.linalg.cholesky(a))
    new = w64 - torch.bmm(finv, z).squeeze(-1)
    return torch.where(prune, torch.zeros_like(new), new)


def obs_update_lowrank(w: torch.Tensor, grads: torch.Tensor, prune: torch.Tensor, damp: float) -> torch.Tensor:
    """:func:`obs_update` for ``F = damp * I + (1/m) G^T G`` (``grads``: (m, blocks, B)) in m x m systems.
    Minimizing ``1/2 dw^T F dw`` with ``(w + dw)_Q = 0`` gives, on the kept set R,
    ``dw_R = F_RR^-1 F_RQ w_Q = G_R^T (m damp I + G_R G_R^T)^-1 G_Q w_Q`` (the push-through identity):
    one m x m Cholesky solve per block instead of a B x B one."""
    w64 = w.double()
    if grads.shape[0] == 0:  # F = damp * I: no correction, plain zeroing
        return torch.where(prune, torch.zeros_like(w64), w64)
    g = grads.double().transpose(0, 1)  # (blocks, m, B)
    m = g.shape[1]
    keep = (~prune).double().unsqueeze(1)
    kept = g * keep
    system = m * damp * torch.eye(m, dtype=torch.float64, device=g.device) + kept @ kept.transpose(1, 2)
    rhs = (g * (1.0 - keep)) @ w64.unsqueeze(-1)  # G_Q w_Q, (blocks, m, 1)
    dw = kept.transpose(1, 2) @ torch.cholesky_solve(rhs, torch.linalg.cholesky(system))
    return torch.where(prune, torch.zeros_like(w64), w64 + dw.squeeze(-1))


@dataclasses.dataclass
class ObsPruningSettings(MagnitudePruningSettings):
    """oBERT: gradual pruning with saliencies and weight updates from a block-wise empirical Fisher."""

    #: ``global`` (the paper's choice): one saliency threshold over all targets; ``layer``: per layer
    scope: Literal["layer", "global"] = "global"
    #: consecutive weights (row-major) that share one Fisher block; work memory at a pruning step is
    #: ``8 * num_grads * block_size`` bytes per block (``8 * block_size^2`` once num_grads >= block_size),
    #: 8192 blocks at a time
    block_size: int = 50
    #: gradients in the Fisher: the last ``num_grads`` optimizer steps since the previous pruning step
    #: (so at most ``update_every``); they are kept in memory and in checkpoints, 4 bytes per weight each
    num_grads: int = 10
    #: ``damp`` in ``F = damp * I + (1/m) sum g g^T`` (the paper's lambda)
    damp: float = 1e-7

    def validate(self) -> None:
        super().validate()
        if self.block_size < 1:
            self.fail("block_size", "must be >= 1 (the paper uses 50)")
        if self.num_grads < 1:
            self.fail("num_grads", "must be >= 1")
        if not self.damp > 0:
            self.fail("damp", "must be > 0 (the paper uses 1e-7)")


@register_modifier("obs_pruning")
class ObsPruningModifier(MagnitudePruningModifier):
    """oBERT: prune the lowest OBS saliencies on a schedule and update the surviving weights."""

    settings_cls = ObsPruningSettings
    supports_sharded = False  # the Fisher blocks follow the whole weight's layout

    def __init__(self, settings: ObsPruningSettings):
        super().__init__(settings)
        self.grads: dict[str, collections.deque] = {}

    def on_train_begin(self, model: nn.Module, ctx: Context) -> None:
        super().on_train_begin(model, ctx)
        s = self.settings
        if s.num_grads > s.update_every:  # the buffer is emptied at every pruning step
            logger.warning(
                "obs_pruning: num_grads %d > update_every %d: the Fisher holds at most the %d gradients between "
                "two pruning steps; raise update_every or lower num_grads",
                s.num_grads,
                s.update_every,
                s.update_every,
            )

    # -- gradients ---------------------------------------------------------------------------------
    @torch.no_grad()
    def before_optimizer_step(self, model: nn.Module, ctx: Context) -> None:
        if ctx.step < self.end_step:  # read before the masks zero the pruned coordinates' gradients
            for name, module in self.modules.items():
                g = base_weight(module).grad
                if g is not None:
                    buf = self.grads.setdefault(name, collections.deque(maxlen=self.settings.num_grads))
                    buf.append(g.detach().reshape(-1).float().clone())
        super().before_optimizer_step(model, ctx)

    def _blocks(self, t: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """(..., numel) -> (..., blocks, B), padded at the end with ``fill``."""
        b = self.settings.block_size
        pad = (-t.shape[-1]) % b
        if pad:
            t = torch.cat([t, t.new_full((*t.shape[:-1], pad), fill)], dim=-1)
        return t.reshape(*t.shape[:-1], -1, b)

    def _chunks(self, name: str):
        """(first block, weight blocks, gradient blocks) for each chunk of blocks of target ``name``."""
        w = self._blocks(base_weight(self.modules[name]).detach().reshape(-1).float())
        buf = self.grads.get(name)
        grads = self._blocks(torch.stack(list(buf))) if buf else w.new_zeros((0, *w.shape))
        for a in range(0, w.shape[0], CHUNK):
            yield a, w[a : a + CHUNK], grads[:, a : a + CHUNK]

    # -- pruning -----------------------------------------------------------------------------------
    def scores(self) -> dict[str, torch.Tensor]:
        damp, size = self.settings.damp, self.settings.block_size
        out = {}
        for name, module in self.modules.items():
            weight = base_weight(module)
            sal = torch.cat(
                [
                    obs_saliency(w, fisher_inverse_diagonal(g, damp, len(w), size)).reshape(-1)
                    for _, w, g in self._chunks(name)
                ]
            )
            out[name] = sal[: weight.numel()].reshape(weight.shape).float()
        return out

    @torch.no_grad()
    def prune(self, sparsity: float) -> None:
        masks = self.compute_masks(sparsity)
        for name, mask in masks.items():
            weight = base_weight(self.modules[name])
            prune = self._blocks((mask == 0).reshape(-1), fill=True)  # padding: zeros that stay zero
            new = torch.cat([self._update(w, g, prune[a : a + len(w)]) for a, w, g in self._chunks(name)])
            write_(weight, new.reshape(-1)[: weight.numel()].reshape(weight.shape))
        self.set_masks(masks)
        self.grads = {}  # gradients of the weights before this step no longer describe the loss

    def _update(self, w: torch.Tensor, grads: torch.Tensor, prune: torch.Tensor) -> torch.Tensor:
        damp, size = self.settings.damp, self.settings.block_size
        if grads.shape[0] < size:  # the low-rank form is cheaper (and exact) while m < B
            return obs_update_lowrank(w, grads, prune, damp)
        return obs_update(w, fisher_inverse(grads, damp), prune)

    def on_step_begin(self, model: nn.Module, ctx: Context) -> None:
        from .schedules import is_update_step

        step = ctx.step
        if step > self.end_step or not is_update_step(step, self.start_step, self.end_step, self.settings.update_every):
            return
        self.prune(self.target_sparsity(step))

    def finalize(self, model: nn.Module, ctx: Context) -> nn.Module:
        if not self.masks:  # training ended before start (or no training): prune to the final target now
            self._ensure_modules(model)
            self.prune(self.settings.final_sparsity)
        return super().finalize(model, ctx)

    # -- state -------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = super().state_dict()
        state.update({f"grads.{n}": torch.stack(list(buf)).cpu() for n, buf in self.grads.items() if buf})
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.grads = {}
        for k, v in state.items():
            if k.startswith("grads."):
                name = k[len("grads.") :]
                device = base_weight(self.modules[name]).device
                self.grads[name] = collections.deque((g.to(device) for g in v.float()), maxlen=self.settings.num_grads)


__all__ = [
    "ObsPruningModifier",
    "ObsPruningSettings",
    "fisher_inverse",
    "fisher_inverse_diagonal",
    "obs_saliency",
    "obs_update",
    "obs_update_lowrank",
]
