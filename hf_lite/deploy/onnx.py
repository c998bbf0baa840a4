"""ONNX for encoder classifiers: ``onnx/model.onnx`` (fp32, exported with ``torch.onnx``) and
``onnx/model_int8.onnx`` (onnxruntime dynamic quantization: int8 weights per output channel, activations
quantized at run time), with the config and tokenizer next to them.

Pruned weights stay exactly zero in both (symmetric int8 maps 0 to 0). The fp32 graph is checked
against the PyTorch model on a sample batch before the folder is kept.
"""

from __future__ import annotations

import logging
import os
import shutil

from ..core.settings import RecipeError

logger = logging.getLogger(__name__)

FILES = {"fp32": "model.onnx", "int8": "model_int8.onnx"}
#: largest |logit| difference accepted between the fp32 graph and PyTorch on the sample batch
FP32_TOLERANCE = 1e-3


def require() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise RecipeError(
            "export format onnx needs onnx, onnxscript and onnxruntime: pip install 'hf-lite[deploy]'"
        ) from e


def check_task(task: str) -> None:
    if task != "sequence-classification":
        raise RecipeError(
            f"export.formats: onnx is written for sequence classifiers (encoders such as BERT); this recipe's "
            f"model.task is {task}. For LLMs use compressed-tensors (transformers, vLLM)"
        )


def _inputs(tokenizer, texts: list[str]):
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    return {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}


def export_onnx(folder: str, out: str) -> dict[str, str]:
    """Write the fp32 and int8 graphs of the classifier exported in ``folder`` into ``out``."""
    import numpy as np
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    require()
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    os.makedirs(out, exist_ok=True)
    sample = _inputs(tokenizer, ["a short example sentence", "and a second, somewhat longer example sentence"])
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    fp32 = os.path.join(out, FILES["fp32"])
    program = torch.onnx.export(
        model,
        (),
        kwargs=sample,
        input_names=list(sample),
        output_names=["logits"],
        dynamic_shapes={k: {0: batch, 1: seq} for k in sample},
        dynamo=True,
    )
    program.save(fp32)
    check = _inputs(tokenizer, ["another text", "one more text to check the exported graph with"])
    session = ort.InferenceSession(fp32, providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {k: v.numpy() for k, v in check.items()})[0]
    with torch.no_grad():
        want = model(**check).logits.numpy()
    diff = float(np.abs(got - want).max())
    if diff > FP32_TOLERANCE:
        raise RuntimeError(f"onnx: the fp32 graph's logits differ from PyTorch's by {diff:.2e}")
    quantize_dynamic(fp32, os.path.join(out, FILES["int8"]), weight_type=QuantType.QInt8, per_channel=True)
    model.config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    for extra in ("README.md",):
        if os.path.isfile(os.path.join(folder, extra)):
            shutil.copy(os.path.join(folder, extra), os.path.join(out, extra))
    return {k: os.path.join(out, v) for k, v in FILES.items()}
