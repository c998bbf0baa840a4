"""`hf-lite validate` means it will run: seeded mutations of the shipped recipes give a one-line error
or an ok, never a traceback, and a list of clearly broken recipes is refused naming the key."""

from __future__ import annotations

import copy
import glob
import os
import random

import pytest
import yaml
from conftest import REPO

from hf_lite.cli import main

RECIPES = sorted(glob.glob(os.path.join(REPO, "recipes", "*.yaml")))
JUNK = ["abc", "", -1, 0, -0.3, 1e9, None, [], {}, {"a": 1}, [1, 2], True, "5e-5", "1E-4", 2.5, "../nope.tsv"]


def mutate(raw: dict, rng: random.Random) -> object:
    raw = copy.deepcopy(raw)
    kind = rng.randrange(7)
    if kind == 0:  # the whole recipe replaced
        return rng.choice([[], "", None, 3, {"modifiers": rng.choice(JUNK)}, [{"type": "qat"}]])
    if kind == 1 and raw:  # a section dropped or replaced
        key = rng.choice(sorted(raw))
        if rng.random() < 0.5:
            del raw[key]
        else:
            raw[key] = rng.choice(JUNK)
        return raw
    sections = [(k, v) for k, v in raw.items() if isinstance(v, dict) and v]
    mods = raw.get("modifiers") or []
    if kind in (2, 3) and sections:  # a value in a section
        name, section = rng.choice(sections)
        key = rng.choice(sorted(section))
        section[key] = rng.choice(JUNK)
        return raw
    if kind == 4 and mods:  # a modifier setting, or its type
        m = rng.choice(mods)
        key = rng.choice(sorted(m))
        m[key] = rng.choice(JUNK + ["wanda", "distillation", "lora"])
        return raw
    if kind == 5 and sections:  # an unknown key
        rng.choice(sections)[1][rng.choice(["lr", "learning_rate", "max_steps", "train", "typo"])] = rng.choice(JUNK)
        return raw
    raw.setdefault("training", {})
    if isinstance(raw["training"], dict):
        raw["training"][rng.choice(["learning_rate", "per_device_train_batch_size", "num_train_epochs", "max_steps",
                                    "warmup_steps", "fp16", "eval_strategy", "seed"])] = rng.choice(JUNK)  # fmt: skip
    return raw


def fuzz(tmp_path, count: int, seed: int, capsys) -> dict[str, int]:
    rng = random.Random(seed)
    bases = [yaml.safe_load(open(p)) for p in RECIPES]
    outcome = {"ok": 0, "error": 0}
    cwd = os.getcwd()
    os.chdir(REPO)  # the shipped recipes name ../shared/data relative to the project root
    try:
        for i in range(count):
            path = tmp_path / f"r{i}.yaml"
            path.write_text(yaml.safe_dump(mutate(rng.choice(bases), rng)))
            code = main(["validate", str(path)])  # an unexpected exception fails the test here
            err = capsys.readouterr().err.strip()
            assert code in (0, 2)
            if code == 2:
                assert err.startswith("hf-lite: error: ") and "\n" not in err, err
            outcome["ok" if code == 0 else "error"] += 1
    finally:
        os.chdir(cwd)
    return outcome


def test_fuzzed_recipes_never_traceback(tmp_path, capsys):
    outcome = fuzz(tmp_path, 300, seed=0, capsys=capsys)
    assert outcome["error"] > 100  # most mutations are invalid; each got a one-line error


@pytest.mark.slow
def test_fuzzed_recipes_never_traceback_long(tmp_path, capsys):
    fuzz(tmp_path, 3000, seed=1, capsys=capsys)


BROKEN = [
    ("training: {learning_rate: abc}", "training.learning_rate"),
    ("training: {max_steps: null}", "training.max_steps"),
    ("training: {learning_rate: -0.3}", "training.learning_rate"),
    ("training: {per_device_train_batch_size: -1}", "training.per_device_train_batch_size"),
    ("training: {num_train_epochs: -1}", "training.num_train_epochs"),
    ("data: {train: ''}", "data.train"),
    ("modifiers: ''", "modifiers"),
    ("modifiers: [{type: {a: 1}}]", "modifiers[0].type"),
    ("[]", "model"),
    ("modifiers: [{type: qat}]", "model"),
    ("data: {train: ../no/such.tsv}", "data.train"),
    ("model: {name_or_path: ./no/such/model}", "model.name_or_path"),
    ("modifiers: [{type: distillation}]", "teacher"),
    ("training: {max_steps: 5}", "data.train"),
]


@pytest.mark.parametrize("text,key", BROKEN, ids=[k for _, k in BROKEN])
def test_clearly_broken_recipes_are_refused_naming_the_key(tmp_path, capsys, text, key):
    base = {"model": {"name_or_path": "minilm-l6"}}
    data = yaml.load(text, Loader=__import__("hf_lite.core.recipe", fromlist=["RecipeLoader"]).RecipeLoader)  # noqa: S506
    if isinstance(data, dict) and "model" not in data and key != "model":
        data = {**base, **data}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"hf-lite: error: {key}") or f" {key}" in err, err


def test_exponent_floats_are_floats(tmp_path):
    from hf_lite.core.recipe import load_recipe

    r = load_recipe("training: {learning_rate: 5e-5, weight_decay: 1E-2, warmup_steps: 2e1}\nmodifiers: []")
    assert r.training == {"learning_rate": 5e-5, "weight_decay": 0.01, "warmup_steps": 20.0}
