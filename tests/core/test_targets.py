import pytest
from conftest import tiny_bert, tiny_llama

from hf_lite import RecipeError
from hf_lite.core.targets import check_patterns_match, find_linear_targets


def test_default_targets_are_block_linears():
    names = set(find_linear_targets(tiny_bert()))
    assert "bert.encoder.layer.0.attention.self.query" in names
    assert not any("classifier" in n or "pooler" in n for n in names)
    assert len(names) == 2 * 6
    llama = set(find_linear_targets(tiny_llama()))
    assert "model.layers.1.mlp.down_proj" in llama and "lm_head" not in llama and len(llama) == 14


def test_suffix_regex_and_ignore():
    m = tiny_bert()
    assert set(find_linear_targets(m, ["query"])) == {f"bert.encoder.layer.{i}.attention.self.query" for i in range(2)}
    assert len(find_linear_targets(m, ["re:layer\\.1\\..*dense$"])) == 3
    assert len(find_linear_targets(m, None, ["re:layer\\.0\\."])) == 6


def test_no_match_is_an_error():
    with pytest.raises(RecipeError, match="match no nn.Linear"):
        find_linear_targets(tiny_bert(), ["q_proj"])
    with pytest.raises(RecipeError, match="'qery' matches no"):
        check_patterns_match(tiny_bert(), ["query", "qery"], "lora")
