"""Model cards: how to run each deployment format written next to the safetensors."""

from __future__ import annotations

from hf_lite.card import _formats


def test_every_written_format_gets_its_loading_lines():
    report = {
        "formats": {
            "safetensors": {"path": ".", "size_bytes": 1},
            "compressed-tensors": {"path": "compressed-tensors", "size_bytes": 1},
            "gguf": {"path": "gguf/model-q4_0.gguf", "size_bytes": 1},
        }
    }
    text = _formats(report, "causal-lm", "me/model")
    assert 'AutoModelForCausalLM.from_pretrained("me/model", subfolder="compressed-tensors")' in text
    assert "llama-cli -m gguf/model-q4_0.gguf" in text and "onnx" not in text.lower()
    assert _formats({"formats": {"safetensors": {"path": ".", "size_bytes": 1}}}, "causal-lm", "x") == ""
