"""Event order, checkpoints and resume, with a recorder modifier under a real Trainer."""

import dataclasses
import os

import pytest
import torch
from conftest import lite, tiny_bert, training_args
from transformers import Trainer

from hf_lite import CompressionCallback, LiteTrainer, Modifier, Settings, register_modifier
from hf_lite.core.session import STATE_FILE


@dataclasses.dataclass
class RecorderSettings(Settings):
    start: int = 2
    end: int = 5


@register_modifier("test_recorder")
class Recorder(Modifier):
    settings_cls = RecorderSettings
    events: list = []

    def __init__(self, settings):
        super().__init__(settings)
        self.counter = torch.zeros(1)
        Recorder.events = []

    def initialize(self, model, ctx):
        Recorder.events.append("initialize")
        return model

    def on_train_begin(self, model, ctx):
        super().on_train_begin(model, ctx)
        Recorder.events.append(f"train_begin@{ctx.step}/{ctx.max_steps}")

    def on_step_begin(self, model, ctx):
        Recorder.events.append(f"step_begin@{ctx.step}")
        if ctx.step == self.start_step:
            Recorder.events.append("start")
        if ctx.step == self.end_step:
            Recorder.events.append("end")

    def before_optimizer_step(self, model, ctx):
        Recorder.events.append("before_opt")
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)

    def after_optimizer_step(self, model, ctx):
        Recorder.events.append("after_opt")
        self.counter += 1

    def finalize(self, model, ctx):
        Recorder.events.append("finalize")
        return model

    def state_dict(self):
        return {**super().state_dict(), "counter": self.counter.clone(), "note": "hello"}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        assert state["note"] == "hello"
        self.counter = state["counter"].clone()


def test_event_order_plain_trainer(tmp_path, tiny_dataset):
    cb = CompressionCallback([{"type": "test_recorder"}])
    trainer = Trainer(
        model=tiny_bert(), args=training_args(tmp_path, max_steps=6), train_dataset=tiny_dataset, callbacks=[cb]
    )
    assert Recorder.events == ["initialize"]  # before any optimizer exists
    trainer.train()
    ev = Recorder.events
    assert ev[:3] == ["initialize", "train_begin@0/6", "step_begin@0"]
    assert ev.count("before_opt") == ev.count("after_opt") == 6
    assert ev.index("start") == ev.index("step_begin@2") + 1 and ev.index("end") == ev.index("step_begin@5") + 1
    assert ev[-1] == "finalize"
    for i in range(6):  # per step: begin, before optimizer, after optimizer
        j = ev.index(f"step_begin@{i}")
        k = ev.index("before_opt", j)
        assert ev[k + 1] == "after_opt"


def test_fractional_start_end(tmp_path, tiny_dataset):
    trainer = lite(
        tmp_path,
        tiny_dataset,
        [{"type": "magnitude_pruning", "start": 0.2, "end": 0.5, "final_sparsity": 0.5}],
        max_steps=10,
    )
    m = trainer.session.modifiers[0]
    assert (m.start_step, m.end_step) == (2, 5)


def test_state_saved_in_checkpoint_and_restored(tmp_path, tiny_dataset):
    args = training_args(tmp_path, max_steps=6, save_strategy="steps", save_steps=3)
    trainer = LiteTrainer(model=tiny_bert(), args=args, train_dataset=tiny_dataset, recipe=[{"type": "test_recorder"}])
    trainer.train()
    ckpt = os.path.join(args.output_dir, "checkpoint-3")
    assert os.path.isfile(os.path.join(ckpt, STATE_FILE))
    resumed = LiteTrainer(model=tiny_bert(), args=args, train_dataset=tiny_dataset, recipe=[{"type": "test_recorder"}])
    resumed.train(resume_from_checkpoint=ckpt)
    assert "train_begin@3/6" in Recorder.events
    assert float(resumed.session.modifiers[0].counter) == 6.0  # 3 restored + 3 new steps


def test_resume_without_state_fails_clearly(tmp_path, tiny_dataset):
    args = training_args(tmp_path, max_steps=4, save_strategy="steps", save_steps=2)
    Trainer(model=tiny_bert(), args=args, train_dataset=tiny_dataset).train()
    trainer = LiteTrainer(model=tiny_bert(), args=args, train_dataset=tiny_dataset, recipe=[{"type": "test_recorder"}])
    with pytest.raises(FileNotFoundError, match=STATE_FILE):
        trainer.train(resume_from_checkpoint=os.path.join(args.output_dir, "checkpoint-2"))


def test_lite_training_arguments_recipe(tmp_path, tiny_dataset):
    from transformers import HfArgumentParser

    from hf_lite import LiteTrainingArguments

    recipe = tmp_path / "r.yaml"
    recipe.write_text("modifiers:\n  - type: magnitude_pruning\n    final_sparsity: 0.5\n    start: 0\n    end: 0\n")
    (args,) = HfArgumentParser(LiteTrainingArguments).parse_args_into_dataclasses(
        [
            "--output_dir",
            str(tmp_path / "o"),
            "--recipe",
            str(recipe),
            "--max_steps",
            "2",
            "--use_cpu",
            "--report_to",
            "none",
        ]
    )
    trainer = LiteTrainer(model=tiny_bert(), args=args, train_dataset=tiny_dataset)
    trainer.train()
    assert trainer.session.modifiers[0].stats()["sparsity"] == pytest.approx(0.5)


def test_loss_term_normalisation_matches_trainer(tmp_path, tiny_dataset):
    """With gradient accumulation the default classification loss equals the plain mean loss."""
    from hf_lite.trainer import sequence_classification_loss

    model = tiny_bert()
    batch = tiny_dataset[:8]
    inputs = {k: torch.tensor(v) for k, v in batch.items()}
    out = model(**inputs)
    assert torch.allclose(sequence_classification_loss(out, inputs["labels"]), out.loss)
    assert torch.allclose(sequence_classification_loss(out, inputs["labels"], num_items_in_batch=16), out.loss / 2)
