"""ONNX for encoder classifiers: ``onnx/model.onnx`` (fp32, exported with ``torch.onnx``; attention and
GELU fused by onnxruntime's transformer optimizer for BERT-family encoders) and
``onnx/model_int8.onnx`` (onnxruntime dynamic quantization: int8 weights per output channel, activations
quantized at run time; its GELU is the tanh approximation), with the config and tokenizer next to them.

Pruned weights stay exactly zero in both (symmetric int8 maps 0 to 0). The fp32 graph is checked
against the PyTorch model on a sample batch before the folder is kept. Open either graph with
:func:`session`, which keeps onnxruntime from fusing the residual adds into ``SkipLayerNormalization``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings

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


#: encoders whose attention, layer norms and GELU onnxruntime's transformer optimizer fuses (its "bert" graphs)
FUSED_ENCODERS = ("bert", "roberta", "xlm-roberta", "electra", "camembert")


#: onnxruntime graph fusions :func:`session` turns off: its CPU ``SkipLayerNormalization`` kernel is
#: slower than the ``Add`` and ``LayerNormalization`` it replaces (bench/RESULTS.md, deploy_onnx)
DISABLED_FUSIONS = ("SkipLayerNormFusion",)


def session(path: str, threads: int | None = None):
    """An onnxruntime CPU session for a graph written by :func:`export_onnx`, with :data:`DISABLED_FUSIONS`
    off (``threads``: intra-op threads, onnxruntime's default when None)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(
        path, options, providers=["CPUExecutionProvider"], disabled_optimizers=list(DISABLED_FUSIONS)
    )


def _fuse(path: str, config, approximate_gelu: bool = False) -> dict[str, int]:
    """Fuse attention, embeddings and GELU in the graph at ``path`` (onnxruntime's transformer optimizer);
    the fused ops are what make the int8 graph fast. Residual adds stay apart from their layer norms
    (see :data:`DISABLED_FUSIONS`). Returns the fused op counts (empty if nothing applies)."""
    if config.model_type not in FUSED_ENCODERS:
        return {}
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_skip_layer_norm = False
    options.enable_gelu_approximation = approximate_gelu
    heads, hidden = config.num_attention_heads, config.hidden_size
    optimized = optimize_model(
        path, model_type="bert", num_heads=heads, hidden_size=hidden, optimization_options=options
    )
    optimized.save_model_to_file(path)
    return {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}


def export_onnx(folder: str, out: str) -> dict[str, str]:
    """Write the fp32 and int8 graphs of the classifier exported in ``folder`` into ``out``."""
    import numpy as np
    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    require()
    # eager attention, traced by the TorchScript exporter: the graph onnxruntime's optimizer knows how
    # to fuse (it does not recognise the attention of the dynamo exporter's graph)
    model = AutoModelForSequenceClassification.from_pretrained(folder, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    os.makedirs(out, exist_ok=True)
    sample = _inputs(tokenizer, ["a short example sentence", "and a second, somewhat longer example sentence"])
    fp32 = os.path.join(out, FILES["fp32"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (),
            fp32,
            kwargs=sample,
            input_names=list(sample),
            output_names=["logits"],
            dynamic_axes={k: {0: "batch", 1: "sequence"} for k in sample},
            opset_version=17,
            dynamo=False,
        )
    # the int8 graph is quantized from a copy whose GELU is the tanh approximation (faster; its error is
    # far below int8's), the fp32 graph keeps the exact GELU and is checked against PyTorch
    scratch = tempfile.TemporaryDirectory()
    source = os.path.join(scratch.name, "int8_source.onnx")
    shutil.copy(fp32, source)
    fused = _fuse(fp32, model.config)
    if fused:
        logger.info(f"onnx: fused {fused}")
    _fuse(source, model.config, approximate_gelu=True)
    check = _inputs(tokenizer, ["another text", "one more text to check the exported graph with"])
    got = session(fp32).run(["logits"], {k: v.numpy() for k, v in check.items()})[0]
    with torch.no_grad():
        want = model(**check).logits.numpy()
    diff = float(np.abs(got - want).max())
    if diff > FP32_TOLERANCE:
        raise RuntimeError(f"onnx: the fp32 graph's logits differ from PyTorch's by {diff:.2e}")
    quiet = logging.getLogger().level  # the quantizer logs a line per tensor at INFO
    logging.getLogger().setLevel(max(quiet, logging.WARNING))
    try:
        quantize_dynamic(
            source,
            os.path.join(out, FILES["int8"]),
            weight_type=QuantType.QInt8,
            per_channel=True,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},  # outputs of the fused ops are float
        )
    finally:
        logging.getLogger().setLevel(quiet)
        scratch.cleanup()
    model.config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    for extra in ("README.md",):
        if os.path.isfile(os.path.join(folder, extra)):
            shutil.copy(os.path.join(folder, extra), os.path.join(out, extra))
    return {k: os.path.join(out, v) for k, v in FILES.items()}


def _forward(engine, batch: dict):
    import numpy as np
    import torch

    if isinstance(engine, torch.nn.Module):
        with torch.inference_mode():
            return engine(**batch).logits
    feed = {i.name: batch[i.name].numpy().astype(np.int64) for i in engine.get_inputs()}
    return torch.from_numpy(engine.run(["logits"], feed)[0])


def _median_ms(fn, reps: int = 20) -> float:
    import statistics
    import time

    fn()  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def measure_onnx(folder: str, onnx_dir: str, batches: list[dict], seq_len: int, rounds: int = 3) -> dict:
    """The exported classifier where it is deployed: accuracy of PyTorch fp32 (the saved folder) and of
    both ONNX graphs in onnxruntime on ``batches`` (padded, with ``labels``), latency of each at batch 1 x
    ``seq_len`` tokens (median of 20, the engines interleaved over ``rounds``), and the files' sizes."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from ..report import folder_size

    torch_model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    engines = {"torch_fp32": torch_model}
    for kind, name in FILES.items():
        engines[f"onnx_{kind}"] = session(os.path.join(onnx_dir, name))
    accuracy = {}
    for key, engine in engines.items():
        correct = total = 0
        for b in batches:
            inputs = {k: v for k, v in b.items() if k != "labels"}
            correct += int((_forward(engine, inputs).argmax(-1) == b["labels"]).sum())
            total += len(b["labels"])
        accuracy[key] = correct / max(total, 1)
    vocab = torch_model.config.vocab_size
    ids = torch.randint(vocab // 2, vocab, (1, seq_len))  # ordinary tokens, away from the special ones
    names = {i.name for i in engines["onnx_fp32"].get_inputs()}
    one = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    one = {k: v for k, v in one.items() if k in names}
    times: dict[str, list[float]] = {k: [] for k in engines}
    for _ in range(rounds):
        for key, engine in engines.items():
            times[key].append(_median_ms(lambda e=engine: _forward(e, one)))
    latency = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    sizes = {"torch_fp32": folder_size(folder)}
    sizes.update({f"onnx_{k}": os.path.getsize(os.path.join(onnx_dir, v)) for k, v in FILES.items()})
    return {
        "accuracy": accuracy,
        "latency_ms": {k: round(v, 3) for k, v in latency.items()},
        "speedup_vs_torch_fp32": {k: round(latency["torch_fp32"] / v, 2) for k, v in latency.items()},
        "size_bytes": sizes,
        "input": f"batch 1 x {seq_len} tokens, {torch.get_num_threads()} threads",
    }


def deployment_summary(d: dict) -> str:
    """One line: the int8 graph against the PyTorch fp32 folder (size, speed, accuracy)."""
    acc, lat, size = d["accuracy"], d["latency_ms"], d["size_bytes"]
    return (
        f"onnx int8 in onnxruntime: accuracy {acc['onnx_int8']:.4f} (PyTorch fp32 {acc['torch_fp32']:.4f}); "
        f"{size['onnx_int8'] / 2**20:.1f} MiB vs {size['torch_fp32'] / 2**20:.1f} MiB "
        f"({size['torch_fp32'] / size['onnx_int8']:.1f}x smaller); {lat['onnx_int8']:.1f} ms vs "
        f"{lat['torch_fp32']:.1f} ms per {d['input'].split(',')[0]} ({d['speedup_vs_torch_fp32']['onnx_int8']:.1f}x faster)"
    )
