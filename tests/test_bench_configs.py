"""bench/ as a package: every section is registered and documented, and every experiment in
bench/configs/ is a recipe hf_lite's strict parser accepts (a typo fails here, not an hour into a run)."""

from __future__ import annotations

import os
import sys

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench.common import config, merged  # noqa: E402
from bench.sections import CORE, discover  # noqa: E402
from hf_lite.core.recipe import load_recipe, parse_modifiers  # noqa: E402


def test_sections_registered_and_documented():
    sections = discover()
    assert set(CORE) <= set(sections)
    undocumented = [name for name, s in sections.items() if not (s.fn.__doc__ or "").strip()]
    assert not undocumented, undocumented


def test_sst2_rows_are_recipes():
    from bench.sections.sst2 import fill, sst2_recipe

    rows = config("sst2")["rows"]
    for name in rows:
        recipe, reference = sst2_recipe(name, seed=1)
        assert recipe["training"]["seed"] == 1
        assert reference in (None, "dense", *rows), name
        load_recipe(fill(recipe, "/tmp/dense"))
    # a row taking a user recipe gets that recipe's modifiers and budget
    recipe, _ = sst2_recipe("obs90_hidden_kd_8ep")
    assert recipe["modifiers"][0]["type"] == "obs_pruning" and recipe["training"]["num_train_epochs"] == 8
    assert sst2_recipe("gmp90_hidden_kd_8ep")[0]["modifiers"][0]["final_sparsity"] == 0.9
    # ... and its lr schedule: the Fisher-of-128 row is recipes/obs_90_kd_obert.yaml, not a copy of it
    from bench.common import recipe_yaml

    for file, name in (
        ("obs_90_kd_obert.yaml", "obs90_rewind_8ep_g128"),
        ("obs_80_kd.yaml", "obs80_rewind_8ep_t55_labels"),
    ):
        user, (row, _) = recipe_yaml(file), sst2_recipe(name)
        assert row["modifiers"] == user["modifiers"]
        assert {k: row["training"][k] for k in user["training"]} == user["training"]
    for mods in config("sst2")["formats"].values():
        parse_modifiers(mods)


def test_other_configs_are_recipes():
    from bench.sections.samsum import samsum_recipe
    from bench.sections.sparsity import curve_recipe
    from bench.sections.sst2 import fill

    rows = config("samsum")["rows"]
    for name in rows:
        recipe = samsum_recipe(name)
        # the budget's 128 training dialogues, unless the row asks for more itself
        asked = (rows[name].get("data") or {}) if isinstance(rows[name], dict) else {}
        assert recipe["data"]["max_train_samples"] == asked.get("max_train_samples", 128)
        assert "../shared" not in recipe["data"]["train"]
        load_recipe(recipe)
    for method in config("sparsity")["methods"]:
        load_recipe(curve_recipe("/tmp/dense", method, 0.9, 0))
    llm = config("llm")
    for section in ("smollm2_kd", "qlora_memory"):
        for changes in llm[section]["rows"].values():
            load_recipe(merged(llm[section]["base"], changes))
    sst2 = config("sst2")["base"]
    for changes in llm["kd_cache"]["rows"].values():
        load_recipe(fill(merged(merged(sst2, llm["kd_cache"]["base"]), changes), "/tmp/dense"))
    for changes in config("deploy")["onnx"]["rows"].values():
        load_recipe(fill(merged(sst2, changes), "/tmp/dense"))


def test_the_samsum_seqkd_recipe_is_its_bench_row():
    """recipes/samsum_student15_seqkd.yaml is what its bench row measured; the row only swaps in the
    bench's SFT, its dialogue count and the CPU budget."""
    from bench.common import recipe_yaml
    from bench.sections.samsum import samsum_recipe

    user, row = recipe_yaml("samsum_student15_seqkd.yaml"), samsum_recipe("student15_cosine_seqkd_all_818_6ep_t818")
    assert row["modifiers"] == user["modifiers"]
    assert row["data"]["response_source"] == user["data"]["response_source"] == "teacher"
    for key in ("num_train_epochs", "learning_rate", "lr_scheduler_type"):
        assert row["training"][key] == user["training"][key], key
    assert row["model"]["init_from_teacher"] == user["model"]["init_from_teacher"]
    from bench.common import load_result

    study = (load_result("samsum") or {}).get("rows", {}).get("init_study")
    if study:  # the blocks the bench's init_study chose (lowest input/output cosine)
        assert user["model"]["init_from_teacher"]["layers"] == study["least_cosine_layers"]


def test_the_samsum_studies_take_their_config():
    import inspect

    from bench.sections.samsum import samsum_init_study, samsum_onpolicy, samsum_wide_test

    cfg = config("samsum")
    inspect.signature(samsum_init_study).bind(**cfg["init_study"])
    inspect.signature(samsum_onpolicy).bind(**cfg["onpolicy"])
    for study in ("wide_test", "full_test"):
        inspect.signature(samsum_wide_test).bind(**cfg[study])
        assert set(cfg[study]["models"]) <= set(cfg["rows"])
    assert cfg["onpolicy"]["student"] in cfg["rows"] and cfg["init_study"]["teacher"] in cfg["rows"]


def test_a_samsum_row_first_runs_the_rows_it_starts_from(tmp_path, monkeypatch):
    from bench.sections import samsum

    monkeypatch.setattr(samsum, "OUT", str(tmp_path))  # a fresh machine: no bench/out
    assert samsum.missing_rows("student15_cosine_seqkd_all_818_6ep_t818") == ["sft_818"]
    assert samsum.missing_rows("wanda50_kd") == ["sft"]
    assert samsum.missing_rows("sft") == []
    (tmp_path / "samsum_sft_818").mkdir()
    (tmp_path / "samsum_sft_818" / "config.json").write_text("{}")
    assert samsum.missing_rows("student15_cosine_seqkd_all_818_6ep_t818") == []


def test_a_samsum_study_without_its_rows_model_says_which_row_to_run(tmp_path, monkeypatch):
    from bench.sections import samsum

    monkeypatch.setattr(samsum, "OUT", str(tmp_path))
    with pytest.raises(SystemExit, match="run it first"):
        samsum.section_samsum(["init_study"])


def test_the_samsum_wide_test_scores_each_dialogue_and_bounds_the_kept_share(tmp_path, monkeypatch):
    from bench.sections import samsum

    if not os.path.isfile(os.path.join(samsum.SHARED, "samsum", "test.jsonl")):
        pytest.skip("no ../shared/data/samsum")
    import hf_lite.generation
    import hf_lite.models
    from hf_lite.chat import prompt_and_reference

    monkeypatch.setattr(samsum, "OUT", str(tmp_path))
    monkeypatch.setattr(hf_lite.models, "load_model", lambda folder, task: torch.nn.Linear(1, 1))
    monkeypatch.setattr(hf_lite.models, "load_tokenizer", lambda folder: None)

    def answers(model, tok, conversations, settings, prefix):  # the reference row repeats the summaries
        refs = [prompt_and_reference(c)[1] for c in conversations[: settings.max_samples]]
        out = refs if "sft" in calls[-1] else [r if i % 2 else "nothing alike" for i, r in enumerate(refs)]
        return {f"{prefix}_rougeL": hf_lite.generation.rouge(out, refs)["rougeL"], f"{prefix}_rouge1": 0.0}, out

    calls = []
    real_recipe = samsum.samsum_recipe
    monkeypatch.setattr(samsum, "samsum_recipe", lambda name: calls.append(name) or real_recipe(name))
    monkeypatch.setattr(hf_lite.generation, "evaluate_generation", answers)
    out = samsum.samsum_wide_test(["sft_818", "student15_cosine_seqkd_all_818_6ep_t818"], test=20, resamples=200)
    student = out["rows"]["student15_cosine_seqkd_all_818_6ep_t818"]
    assert out["rows"]["sft_818"]["dialogues"] == student["dialogues"] == 20
    assert 0.45 < student["kept_vs_reference"] < 0.55  # every other answer right
    lo, hi = student["kept_interval_95"]
    assert lo < student["kept_vs_reference"] < hi and hi - lo < 0.6


def test_oneshot_configs_are_modifiers():
    cfg = config("oneshot")
    assert set(cfg["core"]) <= set(cfg["methods"])
    assert set(cfg["peers"]["core"]) <= set(cfg["peers"]["methods"])
    assert set(cfg["sparsegpt_ablation"]["order"]) == set(cfg["sparsegpt_ablation"]["rows"])
    for spec in cfg["methods"].values():
        if spec:
            parse_modifiers([spec])
    for row in cfg["sparsegpt_ablation"]["rows"].values():
        parse_modifiers([{**cfg["sparsegpt_ablation"]["base"], **row.get("settings", {})}])


@pytest.mark.parametrize("changes", [{"modifiers": [{"type": "qat", "bitz": 8}]}, {"training": {"epochs": 1}}])
def test_a_typo_in_a_config_row_is_refused(changes):
    from hf_lite.core.settings import RecipeError

    with pytest.raises(RecipeError):
        load_recipe(merged(config("sst2")["base"], changes))
