"""compressed-tensors export: exact codes, reload in transformers, refusals before training."""

from __future__ import annotations

import json
import logging
import os

import pytest
import torch
from conftest import WORDS, lite, tiny_llama

from hf_lite.core.recipe import load_recipe
from hf_lite.core.settings import RecipeError

pytest.importorskip("compressed_tensors")


def calibration(n: int = 16, seq: int = 24) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(5, len(WORDS) + 5, (n, seq), generator=g)


def oneshot_export(tmp_path, spec: dict, formats=("safetensors", "compressed-tensors")):
    from hf_lite.oneshot import apply_recipe_
    from hf_lite.quantization.grids import GRID_FILE

    model = tiny_llama()
    session = apply_recipe_(model, {"modifiers": [spec]}, calibration(), progress=False)
    folder = str(tmp_path / "out")
    settings = load_recipe({"modifiers": [spec], "export": {"formats": list(formats)}}).export
    session.export(model, folder, export_settings=settings)
    assert os.path.isfile(os.path.join(folder, GRID_FILE))
    return model, folder, session


def test_symmetric_int4_reloads_in_transformers_with_the_same_logits_and_is_smaller(tmp_path):
    from transformers import AutoModelForCausalLM

    model, folder, session = oneshot_export(tmp_path, {"type": "gptq", "bits": 4, "group_size": 16})
    ct = os.path.join(folder, "compressed-tensors")
    written = session.formats_written
    assert written["compressed-tensors"]["path"] == "compressed-tensors"
    assert written["compressed-tensors"]["size_bytes"] < 0.5 * written["safetensors"]["size_bytes"]
    config = json.load(open(os.path.join(ct, "config.json")))["quantization_config"]
    assert config["quant_method"] == "compressed-tensors" and config["format"] == "pack-quantized"
    from compressed_tensors.quantization import QuantizationConfig

    parsed = QuantizationConfig.model_validate({k: v for k, v in config.items() if k != "sparsity_config"})
    weights = parsed.config_groups["group_0"].weights
    assert (weights.num_bits, weights.group_size, weights.symmetric, weights.strategy) == (4, 16, True, "group")
    reloaded = AutoModelForCausalLM.from_pretrained(ct)
    ids = calibration(2, 12)
    with torch.no_grad():
        assert torch.equal(reloaded(ids).logits, model(ids).logits)


def test_codes_are_ours_exactly(tmp_path):
    """The packed codes unpack to round(W / scale) of our grid: nothing is re-rounded."""
    from compressed_tensors.compressors.pack_quantized.helpers import unpack_from_int32
    from safetensors.torch import load_file

    from hf_lite.quantization.grids import load_grid

    _, folder, _ = oneshot_export(tmp_path, {"type": "rtn", "bits": 4, "group_size": 16})
    scales, _, _ = load_grid(folder)
    plain = load_file(os.path.join(folder, "model.safetensors"))
    packed = load_file(os.path.join(folder, "compressed-tensors", "model.safetensors"))
    name = "model.layers.1.mlp.down_proj"
    w = plain[f"{name}.weight"]
    codes = unpack_from_int32(packed[f"{name}.weight_packed"], 4, packed[f"{name}.weight_shape"])
    ours = torch.round(w / scales[name].repeat_interleave(16, dim=1))
    assert torch.equal(codes.float(), ours) and codes.abs().max() <= 7
    assert torch.equal(packed[f"{name}.weight_scale"], scales[name])


def test_asymmetric_grid_is_written_exactly_with_a_warning(tmp_path, caplog):
    from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
    from safetensors.torch import load_file

    from hf_lite.deploy.compressed_tensors import _scheme
    from hf_lite.quantization.grids import load_grid

    with caplog.at_level(logging.WARNING):
        _, folder, _ = oneshot_export(tmp_path, {"type": "rtn", "bits": 4, "group_size": 16, "symmetric": False})
    assert "transformers 5.x" in caplog.text
    scales, _, grid = load_grid(folder)
    plain = load_file(os.path.join(folder, "model.safetensors"))
    packed = load_file(os.path.join(folder, "compressed-tensors", "model.safetensors"))
    scheme = _scheme(list(scales), grid)
    for name in scales:
        layer = {k.removeprefix(name + "."): v for k, v in packed.items() if k.startswith(name + ".")}
        back = PackedQuantizationCompressor.decompress(layer, scheme)["weight"]
        assert torch.equal(back, plain[f"{name}.weight"])


def test_qat_int8_classifier_through_the_trainer_reloads(tmp_path, tiny_dataset):
    from transformers import AutoModelForSequenceClassification

    recipe = {"modifiers": [{"type": "qat", "bits": 8}], "export": {"formats": ["safetensors", "compressed-tensors"]}}
    trainer = lite(tmp_path, tiny_dataset, recipe, max_steps=4)
    folder = str(tmp_path / "export")
    trainer.save_model(folder)
    reloaded = AutoModelForSequenceClassification.from_pretrained(os.path.join(folder, "compressed-tensors"))
    batch = {k: torch.tensor(tiny_dataset[:4][k]) for k in ("input_ids", "attention_mask")}
    model = trainer.final_model.eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded.eval()(**batch).logits, model(**batch).logits, atol=1e-5, rtol=0)


def test_ptq_rtn_writes_its_grid_and_exports(tmp_path, tiny_dataset):
    recipe = {
        "modifiers": [{"type": "ptq", "method": "rtn", "bits": 4, "group_size": 16}],
        "export": {"formats": ["safetensors", "compressed-tensors"]},
    }
    trainer = lite(tmp_path, tiny_dataset, recipe, max_steps=2)
    folder = str(tmp_path / "export")
    trainer.save_model(folder)
    assert os.path.isfile(os.path.join(folder, "compressed-tensors", "model.safetensors"))


@pytest.mark.parametrize(
    "recipe, message",
    [
        ({"modifiers": [{"type": "magnitude_pruning"}]}, "int grid"),
        ({"modifiers": [{"type": "rtn", "symmetric": False, "zero_point": "float"}]}, "integer zero points"),
        ({"modifiers": [{"type": "qat", "grid": "nf4", "bits": 4}]}, "int grid"),
        ({"modifiers": [{"type": "rtn"}, {"type": "qat"}]}, "several quantizers"),
    ],
)
def test_impossible_combinations_fail_at_recipe_load(recipe, message):
    recipe["export"] = {"formats": ["safetensors", "compressed-tensors"]}
    with pytest.raises(RecipeError, match=message):
        load_recipe(recipe)


@pytest.mark.parametrize(
    "formats, message", [(["safetensors", "gguf"], "formats"), (["compressed-tensors"], "keep it"), ([], "keep it")]
)
def test_bad_format_lists_are_refused(formats, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe({"modifiers": [{"type": "rtn"}], "export": {"formats": formats}})


def test_cli_export_of_an_existing_folder(tmp_path):
    from hf_lite.cli import main

    _, folder, _ = oneshot_export(tmp_path, {"type": "rtn", "bits": 4, "group_size": 16}, formats=("safetensors",))
    assert not os.path.exists(os.path.join(folder, "compressed-tensors"))
    assert main(["export", folder, "--format", "compressed-tensors"]) == 0
    assert os.path.isfile(os.path.join(folder, "compressed-tensors", "config.json"))
    assert main(["export", folder, "--format", "compressed-tensors"]) == 2  # not over an existing folder


def test_cli_export_refuses_a_folder_without_a_grid(tmp_path):
    from hf_lite.cli import main

    folder = str(tmp_path / "dense")
    tiny_llama().save_pretrained(folder)
    assert main(["export", folder, "--format", "compressed-tensors"]) == 2


def test_ragged_groups_are_refused_when_the_trainer_is_built(tmp_path):
    """A one-shot grid may have a narrower last group; compressed-tensors packs whole groups only: the
    model's layer widths are known when the trainer is built, so that is where it is refused."""
    from conftest import training_args

    from hf_lite import LiteTrainer

    recipe = {
        "model": {"task": "causal-lm"},
        "modifiers": [{"type": "rtn", "bits": 4, "group_size": 24}],
        "export": {"formats": ["safetensors", "compressed-tensors"]},
    }
    with pytest.raises(RecipeError, match="compressed-tensors packs whole groups; rtn group_size 24 does not divide"):
        LiteTrainer(model=tiny_llama(), args=training_args(tmp_path), recipe=recipe)


def test_ragged_groups_are_refused_by_the_callback_too(tmp_path):
    from conftest import training_args
    from transformers import Trainer

    from hf_lite import CompressionCallback

    recipe = {
        "model": {"task": "causal-lm"},
        "modifiers": [{"type": "rtn", "bits": 4, "group_size": 24}],
        "export": {"formats": ["safetensors", "compressed-tensors"]},
    }
    with pytest.raises(RecipeError, match="compressed-tensors packs whole groups"):
        Trainer(model=tiny_llama(), args=training_args(tmp_path), callbacks=[CompressionCallback(recipe)])
