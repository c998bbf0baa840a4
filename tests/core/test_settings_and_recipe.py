import pytest

from hf_lite import RecipeError, load_recipe
from hf_lite.core.recipe import apply_overrides
from hf_lite.pruning import MagnitudePruningSettings

BASE = {
    "version": 1,
    "model": {"name_or_path": "minilm-l6", "task": "sequence-classification", "num_labels": 2},
    "data": {"train": "x.tsv", "eval": "y.tsv"},
    "training": {"num_train_epochs": 1, "learning_rate": 5e-5},
    "modifiers": [{"type": "magnitude_pruning", "final_sparsity": 0.8}],
    "export": {"output_dir": "runs/x"},
}


def test_round_trip_yaml(tmp_path):
    recipe = load_recipe(BASE)
    path = tmp_path / "r.yaml"
    path.write_text(recipe.to_yaml())
    again = load_recipe(str(path))
    assert again.raw == recipe.raw
    assert again.model.num_labels == 2
    assert [m.settings.final_sparsity for m in again.build_modifiers()] == [0.8]


def test_bare_list_of_modifiers():
    recipe = load_recipe([{"type": "constant_pruning"}])
    assert [m.type_name for m in recipe.build_modifiers()] == ["constant_pruning"]


def test_ints_accepted_for_floats():
    s = MagnitudePruningSettings(final_sparsity=0)
    assert isinstance(s.final_sparsity, float)


@pytest.mark.parametrize(
    "patch, needle",
    [
        ({"bogus": 1}, "unknown top-level key(s) ['bogus']"),
        ({"version": 2}, "recipe.version"),
        ({"model": {"task": "translation"}}, "model.task: got 'translation'"),
        ({"model": {"num_labels": 0}}, "model.num_labels: got 0"),
        ({"model": {"nam_or_path": "x"}}, "model: unknown key(s) ['nam_or_path']"),
        ({"data": {"max_length": "long"}}, "data.max_length: got 'long'"),
        ({"training": {"evaluation_strategy": "steps"}}, "evaluation_strategy -> eval_strategy"),
        ({"training": {"no_cuda": True}}, "no_cuda -> use_cpu"),
        ({"training": {"output_dir": "x"}}, "set export.output_dir"),
        ({"modifiers": [{"final_sparsity": 0.5}]}, "needs a 'type:' key"),
        ({"modifiers": [{"type": "prune_magic"}]}, "unknown modifier 'prune_magic'"),
        ({"modifiers": [{"type": "magnitude_pruning", "final_sparsity": 1.0}]}, "final_sparsity: got 1.0"),
        ({"modifiers": [{"type": "magnitude_pruning", "final_sparsity": -0.1}]}, "final_sparsity: got -0.1"),
        ({"modifiers": [{"type": "magnitude_pruning", "pattern": "4:2"}]}, "0 < N < M"),
        ({"modifiers": [{"type": "magnitude_pruning", "pattern": "half"}]}, "pattern: got 'half'"),
        ({"modifiers": [{"type": "magnitude_pruning", "start": 0.6, "end": 0.2}]}, "end: got 0.2"),
        ({"modifiers": [{"type": "magnitude_pruning", "start": 1.5}]}, "start: got 1.5"),
        ({"modifiers": [{"type": "magnitude_pruning", "start": -3}]}, "start: got -3"),
        ({"modifiers": [{"type": "magnitude_pruning", "sparsity": 0.5}]}, "unknown key(s) ['sparsity']"),
        ({"modifiers": [{"type": "magnitude_pruning", "update_every": True}]}, "update_every: got True"),
    ],
)
def test_errors_name_field_and_fix(patch, needle):
    data = {
        **BASE,
        **{
            k: ({**BASE.get(k, {}), **v} if isinstance(v, dict) and k in ("model", "data") else v)
            for k, v in patch.items()
        },
    }
    with pytest.raises(RecipeError) as e:
        load_recipe(data)
    assert needle in str(e.value)
    assert "\n" not in str(e.value)  # one-line errors


def test_missing_file():
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe("nope/recipe.yaml")


def test_overrides():
    data = apply_overrides(BASE, ["training.max_steps=50", "modifiers.0.final_sparsity=0.9", "export.overwrite=true"])
    assert data["training"]["max_steps"] == 50
    assert data["modifiers"][0]["final_sparsity"] == 0.9
    assert data["export"]["overwrite"] is True
    assert BASE["training"].get("max_steps") is None  # input untouched
    with pytest.raises(RecipeError, match="KEY.PATH=VALUE"):
        apply_overrides(BASE, ["training.max_steps"])


def test_safe_load_only(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("!!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(RecipeError, match="not valid YAML") as e:
        load_recipe(str(path))
    assert "python/object" in str(e.value)


def test_yaml_syntax_error_is_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("modifiers:\n  - {type: qat}x\n")
    with pytest.raises(RecipeError, match="line 2") as e:
        load_recipe(str(path))
    assert "\n" not in str(e.value)


def test_every_shipped_recipe_validates():
    import glob
    import os

    from conftest import REPO

    paths = sorted(glob.glob(os.path.join(REPO, "recipes", "*.yaml")))
    assert paths
    for path in paths:
        load_recipe(path)


def test_mapping_valued_training_arguments(tmp_path):
    """TrainingArguments fields typed ``dict | str`` (lr_scheduler_kwargs) take a YAML mapping, which reaches
    the Trainer's scheduler; other types still fail naming the key."""
    from hf_lite.api import _training_args

    training = {"lr_scheduler_type": "cosine_with_restarts", "lr_scheduler_kwargs": {"num_cycles": 8}}
    recipe = load_recipe({"training": training})
    args = _training_args(recipe, str(tmp_path))
    assert args.lr_scheduler_kwargs == {"num_cycles": 8} and args.lr_scheduler_type == "cosine_with_restarts"
    with pytest.raises(RecipeError, match=r"training.lr_scheduler_kwargs: got \[3\] \(list\); expected dict or str"):
        load_recipe({"training": {"lr_scheduler_kwargs": [3]}})


def test_epochs_beside_max_steps_are_named(caplog):
    """With max_steps > 0 the Trainer ignores num_train_epochs; the recipe says so instead of dropping it."""
    import logging

    with caplog.at_level(logging.WARNING):
        load_recipe({**BASE, "training": {"num_train_epochs": 8, "max_steps": 20}})
    assert any("training.num_train_epochs=8.0 is ignored" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_recipe({**BASE, "training": {"num_train_epochs": 8, "max_steps": 0}})  # 0: no training, nothing lost
        load_recipe(BASE)
    assert not any("is ignored" in r.getMessage() for r in caplog.records)
