"""No silent no-op: every registered modifier type, run for 2 steps through LiteTrainer, changes the
model or its export, or warns by name; every recipe section reaching a trainer in a user's script acts
or is named in a warning."""

from __future__ import annotations

import hashlib
import json
import logging
import os

import pytest
from conftest import make_tokenizer, sentiment_rows, tiny_bert, tiny_llama, training_args

import hf_lite
from hf_lite import LiteTrainer

STEPS = {"start": 0, "end": 1, "update_every": 1}
#: type -> (model kind, settings); the test fails when a registered type is missing here
SPECS = {
    "block_drop": ("bert", {"drop": [1], "start": 0, "end": 1}),
    "bnb": ("bert64", {"bits": 8}),
    "constant_pruning": ("bert", {}),  # on a dense model it keeps nothing: must warn
    "distillation": ("bert", {"alpha": 0.5}),
    "gptq": ("llama", {"bits": 4, "group_size": 16}),
    "head_only": ("bert", {}),
    "lora": ("bert", {"r": 2}),
    "magnitude": ("llama", {"sparsity": 0.5}),
    "magnitude_pruning": ("bert", {"final_sparsity": 0.5, **STEPS}),
    "movement_pruning": ("bert", {"final_sparsity": 0.5, **STEPS}),
    "obs_pruning": ("bert", {"final_sparsity": 0.5, "block_size": 8, **STEPS}),
    "ptq": ("bert", {"method": "rtn", "bits": 4}),
    "ptq_dynamic": ("bert", {"method": "dynamic_int8"}),
    "qat": ("bert", {"bits": 4}),
    "qlora": ("bert64", {"r": 2}),
    "rtn": ("llama", {"bits": 4, "group_size": 16}),
    "sparsegpt": ("llama", {"sparsity": 0.5}),
    "structured_pruning": ("bert", {"heads": 0.5, "ffn": 0.5, **STEPS}),
    "wanda": ("llama", {"sparsity": 0.5}),
}


def builtin_types() -> list[str]:
    hf_lite._register_all()
    return sorted(n for n, cls in hf_lite.MODIFIERS.items() if cls.__module__.startswith("hf_lite."))


def test_every_builtin_type_has_a_spec():
    assert set(builtin_types()) <= {k.removesuffix("_dynamic") for k in SPECS}, "add the new type to SPECS"


def model_and_data(kind: str, tokenizer):
    import datasets

    if kind == "llama":
        ids = [[(i * 5 + j) % 25 + 1 for j in range(16)] for i in range(16)]
        return tiny_llama(), datasets.Dataset.from_dict({"input_ids": ids, "labels": ids})
    rows = sentiment_rows(16)
    enc = tokenizer([r[0] for r in rows], truncation=True, max_length=16, padding="max_length")
    model = tiny_bert(dropout=0.0, hidden=64 if kind == "bert64" else 32)
    return model, datasets.Dataset.from_dict({**enc, "labels": [r[1] for r in rows]})


def fingerprint(trainer, folder: str) -> dict:
    """What a user gets: the exported files (tensors and config) and the load code of the model card."""
    from safetensors.torch import load_file

    trainer.save_model(folder)
    out = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.endswith(".safetensors"):
            for k, v in sorted(load_file(path).items()):
                out[f"{name}:{k}"] = hashlib.sha1(v.float().numpy().tobytes()).hexdigest()
        elif name == "config.json":
            cfg = json.loads(open(path).read())
            cfg.pop("transformers_version", None)
            out[name] = json.dumps(cfg, sort_keys=True)
    out["card"] = trainer.session.card_snippet("sequence-classification", folder)
    final = trainer.final_model
    out["final_modules"] = sorted({type(m).__name__ for m in final.modules()})
    return out


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_modifier_type_acts_or_warns(tmp_path, name, caplog):
    kind, settings = SPECS[name]
    mtype = name.removesuffix("_dynamic")
    tok = make_tokenizer(str(tmp_path / "tok"))

    def train(recipe):
        model, data = model_and_data(kind, tok)
        teacher = tiny_bert(seed=1, dropout=0.0) if mtype == "distillation" else None
        args = training_args(tmp_path, max_steps=2, per_device_train_batch_size=4, logging_steps=1)
        trainer = LiteTrainer(model=model, args=args, train_dataset=data, recipe=recipe, teacher_model=teacher)
        trainer.train()
        return trainer

    base = fingerprint(train(None), str(tmp_path / "base"))
    with caplog.at_level(logging.WARNING):
        got = fingerprint(train([{"type": mtype, **settings}]), str(tmp_path / "got"))
    warned = any(mtype in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert got != base or warned, f"{name}: accepted, ran 2 steps, and neither changed the model/export nor warned"
    if mtype == "constant_pruning":
        assert warned


def test_every_recipe_section_in_a_script_acts_or_is_named(tmp_path, caplog, tiny_dataset):
    txt = tmp_path / "cal.txt"
    txt.write_text("good bad " * 100)
    recipe = {
        "version": 1,
        "model": {"name_or_path": "minilm-l6", "num_labels": 2},
        "teacher": {"name_or_path": "some/teacher"},  # no distillation modifier: not loaded, said so
        "data": {"train": "train.tsv"},
        "training": {"learning_rate": 1e-4},
        "calibration": {"source": str(txt)},  # no one-shot modifier: said so
        "export": {"output_dir": "x"},
        "modifiers": [{"type": "magnitude_pruning", "final_sparsity": 0.5, **STEPS}],
    }
    with caplog.at_level(logging.WARNING):
        trainer = LiteTrainer(model=tiny_bert(), args=training_args(tmp_path, max_steps=2),
                              train_dataset=tiny_dataset, recipe=recipe)  # fmt: skip
        trainer.train()
    text = " ".join(r.getMessage() for r in caplog.records)
    for named in ("model.{name_or_path, num_labels}", "data.{train}", "training.{learning_rate}", "export.{output_dir}",
                  "teacher:", "calibration:"):  # fmt: skip
        assert named in text, named
    w = trainer.model.bert.encoder.layer[0].output.dense.weight
    assert float((w == 0).float().mean()) == pytest.approx(0.5)  # modifiers: acted
