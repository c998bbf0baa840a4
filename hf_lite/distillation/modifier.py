"""Knowledge distillation as loss terms added by LiteTrainer."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..core.distributed import is_sharded
from ..core.modifier import Context, Modifier, register_modifier, teacher_inputs
from ..core.settings import RecipeError, Settings

logger = logging.getLogger(__name__)

PROJ_ATTR = "hf_lite_distill_proj"  # trained with the student, removed at finalize


@dataclasses.dataclass
class DistillationSettings(Settings):
    """Soft-target, hidden-state and attention-map distillation from a teacher."""

    #: softmax temperature for the soft loss (soft loss is multiplied by T^2)
    temperature: float = 2.0
    #: weight of the soft (logits) loss; the task loss gets 1 - alpha
    alpha: float = 0.5
    #: logits loss: ``kl`` = KL(teacher_T || student_T), ``mse`` on logits, ``jsd`` Jensen-Shannon,
    #: ``gjsd`` the generalized JSD of GKD (Agarwal et al. 2024, as TRL's GKDTrainer computes it) with ``beta``
    loss: Literal["kl", "mse", "jsd", "gjsd"] = "kl"
    #: ``gjsd`` only: 0 is forward KL(teacher || student), 1 reverse KL(student || teacher), between them
    #: the divergence to the beta-mixture
    beta: float = 0.5
    #: weight of the hidden-state loss (0 = off)
    hidden_weight: float = 0.0
    #: ``mse`` or ``cosine`` (1 - cos) on hidden states
    hidden_loss: Literal["mse", "cosine"] = "mse"
    #: which teacher layer each student layer's hidden states (and attention maps) learn from: a dict
    #: student layer -> teacher layer, e.g. {0: 1, 1: 3, 2: 5}; ``uniform`` spreads the student evenly
    #: (student layer i of n learns from the end of its share of the teacher); ``kept``, for a student built
    #: by ``model.init_from_teacher``: each block learns the teacher's hidden state where the next kept block
    #: takes over (the output of the teacher block before it; the last block: the teacher's last), so every
    #: kept block is fed what it was trained on; ``auto`` is ``kept`` for such a student of this teacher,
    #: else ``uniform``
    layer_map: dict | Literal["auto", "uniform", "kept"] = "auto"
    #: weight of the attention-map loss (KL on attention probabilities, MiniLM style; 0 = off)
    attention_weight: float = 0.0
    #: label value to ignore (padding, prompt tokens) in causal-LM distillation
    ignore_index: int = -100
    #: decoder-only LMs: which positions the soft loss covers. ``labels``: those the task loss counts (for
    #: ``chat``, the answer tokens); ``all``: every non-padding position, prompt included, so a student also
    #: learns the teacher's next-token distribution over the dialogue it reads (more signal per example at
    #: no extra forward pass; the task loss still counts the labels only)
    soft_tokens: Literal["labels", "all"] = "labels"
    #: compute the teacher's logits once per distinct example and reuse them in later epochs
    #: (sequence classification, logits-only KD, data without augmentation); kept in CPU memory
    cache_teacher: bool = False

    def validate(self) -> None:
        if self.temperature <= 0:
            self.fail("temperature", "must be > 0")
        if not 0.0 <= self.beta <= 1.0:
            self.fail("beta", "must be in [0, 1]")
        if self.beta != 0.5 and self.loss != "gjsd":
            self.fail("beta", f"is read by loss: gjsd only (the loss is {self.loss}); set loss: gjsd or remove beta")
        if not 0.0 <= self.alpha <= 1.0:
            self.fail("alpha", "must be in [0, 1]")
        for f in ("hidden_weight", "attention_weight"):
            if getattr(self, f) < 0:
                self.fail(f, "must be >= 0")
        if self.cache_teacher and (self.hidden_weight > 0 or self.attention_weight > 0):
            self.fail("cache_teacher", "caches logits only; set hidden_weight and attention_weight to 0 to use it")
        if self.hidden_weight == 0 and self.hidden_loss != "mse":
            self.fail("hidden_loss", "is read by the hidden-state loss only; set hidden_weight > 0 or remove it")
        if self.hidden_weight == 0 and self.attention_weight == 0 and self.layer_map != "auto":
            self.fail("layer_map", "pairs layers for the hidden-state and attention losses only; set hidden_weight "
                                   "or attention_weight > 0, or remove it")  # fmt: skip
        if isinstance(self.layer_map, dict) and not all(
            isinstance(k, int) and isinstance(v, int) and k >= 0 and v >= 0 for k, v in self.layer_map.items()
        ):
            self.fail("layer_map", "map student layer ints to teacher layer ints, e.g. {0: 1, 1: 3}")


def _num_layers(model: nn.Module) -> int:
    return int(model.config.num_hidden_layers)


def _hidden(model: nn.Module) -> int:
    return int(model.config.hidden_size)


def layer_pairs(layer_map: dict | str, model: nn.Module, ls: int, lt: int) -> list[tuple[int, int]]:
    """(student layer, teacher layer) pairs for the hidden-state and attention losses."""
    if isinstance(layer_map, dict):
        return sorted(layer_map.items())
    origin = getattr(model.config, "hf_lite_init_from_teacher", None) or {}
    kept = origin.get("layers") if isinstance(origin, dict) else None
    fits = (
        bool(kept)
        and len(kept) == ls
        and origin.get("teacher_layers") == lt
        and all(a < b for a, b in zip(kept, kept[1:]))
    )
    if layer_map == "kept" and not fits:
        raise RecipeError(
            "distillation.layer_map: kept pairs the blocks of a student built by model.init_from_teacher (in "
            f"order) from a teacher of this depth ({lt} layers); this student records {kept or 'none'}: "
            "use uniform or a dict"
        )
    if layer_map == "kept" or (layer_map == "auto" and fits):
        return list(enumerate([nxt - 1 for nxt in kept[1:]] + [lt - 1]))
    return [(i, round((i + 1) * lt / ls) - 1) for i in range(ls)]


def soft_loss(
    student: torch.Tensor, teacher: torch.Tensor, temperature: float, kind: str, beta: float = 0.5
) -> torch.Tensor:
    """Per-row soft loss (rows = examples or token positions), shape [N]."""
    if kind == "mse":
        return (student - teacher).pow(2).mean(-1)
    log_s = F.log_softmax(student / temperature, -1)
    log_t = F.log_softmax(teacher / temperature, -1)
    if kind == "kl":
        return (log_t.exp() * (log_t - log_s)).sum(-1) * temperature**2
    if kind == "gjsd":
        if beta == 0:
            return (log_t.exp() * (log_t - log_s)).sum(-1) * temperature**2
        if beta == 1:
            return (log_s.exp() * (log_s - log_t)).sum(-1) * temperature**2
        b = torch.tensor(beta, dtype=log_s.dtype, device=log_s.device)
        log_m = torch.logsumexp(torch.stack([log_s + torch.log1p(-b), log_t + torch.log(b)]), 0)
        to_t = (log_t.exp() * (log_t - log_m)).sum(-1)
        to_s = (log_s.exp() * (log_s - log_m)).sum(-1)
        return (beta * to_t + (1 - beta) * to_s) * temperature**2
    m = 0.5 * (log_s.exp() + log_t.exp())
    log_m = m.clamp(min=1e-12).log()
    js = 0.5 * (log_t.exp() * (log_t - log_m)).sum(-1) + 0.5 * (log_s.exp() * (log_s - log_m)).sum(-1)
    return js * temperature**2


@register_modifier("distillation")
class DistillationModifier(Modifier):
    """Adds ``alpha`` * soft loss (+ hidden and attention terms); the task loss is scaled by 1 - alpha."""

    settings_cls = DistillationSettings
    needs_teacher = True
    supports_sharded = True  # the loss reads outputs only; the teacher stays a full copy per rank

    def __init__(self, settings):
        super().__init__(settings)
        self.pairs: list[tuple[int, int]] = []
        self.causal = False  # decoder-only LM: logits at t predict the label at t + 1
        self.seq2seq = False  # encoder-decoder: decoder logits line up with the labels
        self.proj: nn.ModuleList | None = None  # registered on the student so the optimizer trains it
        self._hook: Any = None  # the forward hook that applies it
        self.n_hidden = 0  # the student's own hidden states (embeddings + one per block)
        self.cache: dict[bytes, torch.Tensor] = {}
        self.cache_hits = 0
        self._teacher_sharded: bool | None = None
        self._prompt_checked = False  # soft_tokens: all: the first batch shows whether there is a prompt
        self.cache_misses = 0

    @property
    def needs_outputs(self) -> tuple[str, ...]:  # type: ignore[override]
        out = []
        if self.settings.hidden_weight > 0:
            out.append("output_hidden_states")
        if self.settings.attention_weight > 0:
            out.append("output_attentions")
        return tuple(out)

    @property
    def task_loss_weight(self) -> float:
        return 1.0 - self.settings.alpha

    def initialize(self, model: nn.Module, ctx: Context) -> nn.Module:
        teacher = ctx.teacher
        if teacher is None:
            raise RecipeError(
                "distillation: no teacher; pass teacher_model= to the trainer or set `teacher:` in the recipe"
            )
        s = self.settings
        self.causal = type(model).__name__.endswith("ForCausalLM")
        self.seq2seq = bool(getattr(model.config, "is_encoder_decoder", False))
        vs, vt = getattr(model.config, "vocab_size", None), getattr(teacher.config, "vocab_size", None)
        if self.seq2seq and (s.hidden_weight > 0 or s.attention_weight > 0):
            raise RecipeError(
                "distillation: hidden_weight and attention_weight support encoder-only and decoder-only models; "
                "set both to 0 for an encoder-decoder (logits distillation works)"
            )
        if (self.causal or self.seq2seq) and vs != vt:
            raise RecipeError(
                f"distillation: student vocab_size {vs} != teacher vocab_size {vt}; the tokenizers must match"
            )
        if (self.causal or self.seq2seq) and s.cache_teacher:
            raise RecipeError(
                "distillation.cache_teacher: supported for sequence classification only (LM logits are too large)"
            )
        if s.soft_tokens == "all" and not self.causal:
            raise RecipeError(
                "distillation.soft_tokens: all widens the soft loss to the prompt tokens of a decoder-only LM; "
                f"{type(model).__name__} has no such tokens (its soft loss already covers every output): remove it"
            )
        if not (self.causal or self.seq2seq) and model.config.num_labels != teacher.config.num_labels:
            raise RecipeError(
                f"distillation: student has {model.config.num_labels} labels, teacher {teacher.config.num_labels}"
            )
        if self.seq2seq:
            return model  # logits only (checked above): no layer pairs
        ls, lt = _num_layers(model), _num_layers(teacher)
        self.pairs = layer_pairs(s.layer_map, model, ls, lt)
        for i, j in self.pairs:
            if i >= ls or j >= lt:
                raise RecipeError(f"distillation.layer_map: {i}->{j} out of range (student {ls} layers, teacher {lt})")
        if s.hidden_weight > 0 or s.attention_weight > 0:
            logger.info("hf_lite: distillation: student layer -> teacher layer %s", dict(self.pairs))
        if s.hidden_weight > 0 and _hidden(model) != _hidden(teacher):
            self.proj = nn.ModuleList(nn.Linear(_hidden(model), _hidden(teacher)) for _ in self.pairs)
            setattr(model, PROJ_ATTR, self.proj.to(next(model.parameters()).device))
            # projected inside the student's forward, so DDP/FSDP see the projection's parameters used there
            self.n_hidden = ls + 1
            self._hook = model.register_forward_hook(self._project)
        if s.attention_weight > 0:
            hs, ht = model.config.num_attention_heads, teacher.config.num_attention_heads
            if hs != ht:
                raise RecipeError(
                    f"distillation.attention_weight: student has {hs} heads, teacher {ht}; attention transfer needs equal counts"
                )
            for m in (model, teacher):  # attention probabilities need the eager kernel
                m.set_attn_implementation("eager")
        return model

    def _project(self, module: nn.Module, args: Any, output: Any) -> None:
        """Forward hook: while training, the projected student states are appended to ``hidden_states``
        (a longer tuple passes DDP's output flattening, a new output key does not)."""
        hidden = output.get("hidden_states") if isinstance(output, dict) else None
        if module.training and hidden is not None and len(hidden) == self.n_hidden:
            projected = tuple(self.proj[k](hidden[i + 1]) for k, (i, _) in enumerate(self.pairs))
            output["hidden_states"] = tuple(hidden) + projected

    @torch.no_grad()
    def teacher_forward(self, teacher: nn.Module, inputs: dict[str, Any], extra: dict[str, bool]) -> Any:
        """The teacher's outputs for a batch; with ``cache_teacher`` each distinct example runs once."""
        if not self.settings.cache_teacher:
            return super().teacher_forward(teacher, inputs, extra)
        t_inputs = teacher_inputs(teacher, inputs)
        ids, mask = inputs["input_ids"], inputs.get("attention_mask")
        keys = [
            (row[m.bool()] if m is not None else row).cpu().numpy().tobytes()
            for row, m in zip(ids, mask if mask is not None else [None] * len(ids))
        ]
        missing = [i for i, k in enumerate(keys) if k not in self.cache]
        # a sharded teacher's forward is a collective: every rank runs it, also with nothing to add
        if self._teacher_sharded is None:  # looked up once: the teacher is sharded at train begin, before this
            self._teacher_sharded = any(is_sharded(p) for p in teacher.parameters())
        rows = missing or ([0] if self._teacher_sharded else [])
        if rows:
            logits = teacher(**{k: v[rows] for k, v in t_inputs.items()}).logits.float().cpu()
            for i, row in zip(missing, logits):
                self.cache[keys[i]] = row
        self.cache_misses += len(missing)
        self.cache_hits += len(keys) - len(missing)
        return {"logits": torch.stack([self.cache[k] for k in keys]).to(ids.device)}

    def stats(self) -> dict[str, float]:
        seen = self.cache_hits + self.cache_misses
        return {"teacher_cache_hit_rate": self.cache_hits / seen} if self.settings.cache_teacher and seen else {}

    def loss(self, outputs: Any, inputs: dict[str, Any], teacher_outputs: Any, ctx: Context) -> dict[str, torch.Tensor]:
        s = self.settings
        terms: dict[str, torch.Tensor] = {}
        if s.soft_tokens == "all" and not self._prompt_checked:
            self._check_prompt(inputs)
        valid = self._valid(inputs, outputs["logits"])
        st, te = outputs["logits"], teacher_outputs["logits"].to(outputs["logits"].dtype)
        if self.causal:
            st, te = st[:, :-1], te[:, :-1]
        per_row = soft_loss(st.reshape(-1, st.shape[-1]), te.reshape(-1, te.shape[-1]), s.temperature, s.loss, s.beta)
        terms["soft"] = s.alpha * _masked_mean(per_row, valid)
        if s.hidden_weight > 0:
            terms["hidden"] = s.hidden_weight * self._hidden_loss(outputs, teacher_outputs, inputs)
        if s.attention_weight > 0:
            terms["attention"] = s.attention_weight * self._attention_loss(outputs, teacher_outputs, inputs)
        return terms

    def _check_prompt(self, inputs: dict[str, Any]) -> None:
        """``soft_tokens: all`` on data whose labels hide nothing but padding (plain text) changes nothing:
        say so once, by name."""
        self._prompt_checked = True
        labels, mask = inputs.get("labels"), inputs.get("attention_mask")
        if labels is None:
            return
        real = mask.bool() if mask is not None else torch.ones_like(labels, dtype=torch.bool)
        if not bool(((labels == self.settings.ignore_index) & real).any()):
            logger.warning(
                "hf_lite: distillation.soft_tokens: all changes nothing here: the labels already count every "
                "non-padding token (plain text, no prompt); remove it, or use chat/prompt-masked data"
            )

    def _valid(self, inputs: dict[str, Any], logits: torch.Tensor) -> torch.Tensor | None:
        """Boolean mask over the rows of the soft loss (None = all rows count): the positions whose label
        the task loss counts (padding and prompt tokens carry ``ignore_index``)."""
        if self.seq2seq:
            labels = inputs.get("labels")
            if labels is not None:
                return labels.reshape(-1) != self.settings.ignore_index
            mask = inputs.get("decoder_attention_mask")
            return None if mask is None else mask.reshape(-1).bool()
        if self.causal:
            labels = inputs.get("labels")
            if labels is not None and self.settings.soft_tokens == "labels":
                return labels[:, 1:].reshape(-1) != self.settings.ignore_index
            mask = inputs.get("attention_mask")
            # position t predicts token t + 1: both must be real tokens (left padding puts a pad before the first)
            return None if mask is None else (mask[:, :-1].bool() & mask[:, 1:].bool()).reshape(-1)
        return None

    def _token_mask(self, inputs: dict[str, Any], like: torch.Tensor) -> torch.Tensor:
        mask = inputs.get("attention_mask")
        return torch.ones(like.shape[:2], dtype=torch.bool, device=like.device) if mask is None else mask.bool()

    def _hidden_loss(self, outputs, teacher_outputs, inputs) -> torch.Tensor:
        hs, ht = outputs["hidden_states"], teacher_outputs["hidden_states"]
        mask = self._token_mask(inputs, hs[0])
        losses = []
        for k, (i, j) in enumerate(self.pairs):
            a, b = hs[i + 1], ht[j + 1].to(hs[i + 1].dtype)
            if self.proj is not None:
                a = hs[self.n_hidden + k]
            if self.settings.hidden_loss == "mse":
                per_tok = (a - b).pow(2).mean(-1)
            else:
                per_tok = 1 - F.cosine_similarity(a, b, dim=-1)
            losses.append(self._token_term(per_tok, mask))
        return torch.stack(losses).mean()

    def _token_term(self, per_tok: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B, T] -> the term, as a mean over the same items the Trainer's loss counts: tokens for a
        causal LM, sequences for classification (each sequence's token mean first). That keeps the
        loss identical under DDP however padding splits across ranks."""
        if self.causal:
            return _masked_mean(per_tok.reshape(-1), mask.reshape(-1))
        m = mask.to(per_tok.dtype)
        return ((per_tok * m).sum(1) / m.sum(1).clamp(min=1)).mean()

    def _attention_loss(self, outputs, teacher_outputs, inputs) -> torch.Tensor:
        att_s, att_t = outputs["attentions"], teacher_outputs["attentions"]
        mask = self._token_mask(inputs, att_s[0].transpose(1, 2))  # [B, T] over query positions
        losses = []
        for i, j in self.pairs:
            p_s, p_t = att_s[i].clamp(min=1e-12), att_t[j].to(att_s[i].dtype).clamp(min=1e-12)
            kl = (p_t * (p_t.log() - p_s.log())).sum(-1)  # [B, H, Tq]
            per_q = kl.mean(1)  # over heads
            losses.append(self._token_term(per_q, mask))
        return torch.stack(losses).mean()

    def finalize(self, model: nn.Module, ctx: Context) -> nn.Module:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if PROJ_ATTR in model._modules:
            delattr(model, PROJ_ATTR)  # projections only serve training; the export is the plain student
        return model


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return values.mean()
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1)
