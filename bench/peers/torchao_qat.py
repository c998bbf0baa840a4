"""torchao QAT on the SST-2 protocol with a plain Trainer (run in a venv with torchao; no hf_lite).

    python bench/peers/torchao_qat.py MODEL_DIR SST2_DIR accuracy   # 1 epoch: prepare -> train -> evaluate
    python bench/peers/torchao_qat.py MODEL_DIR SST2_DIR overhead   # step time, plain vs QAT, interleaved
    python bench/peers/torchao_qat.py MODEL_DIR SST2_DIR latency    # fp32 vs torchao int8 dynamic (w8a8)
Weight fake-quant matches hf_lite's `qat bits: 8`: int8, one symmetric scale per output channel, every
encoder Linear (the classifier stays float). Prints one JSON line.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import torch


def sst2(path: str, n: int | None = None) -> tuple[list[str], list[int]]:
    rows = [line.split("\t") for line in open(path, encoding="utf-8").read().splitlines()[1:]]
    rows = rows[:n] if n else rows
    return [r[0] for r in rows], [int(r[1]) for r in rows]


def prepare_qat(model) -> None:
    from torchao.quantization import quantize_
    from torchao.quantization.qat import IntxFakeQuantizeConfig, QATConfig

    weight = IntxFakeQuantizeConfig(torch.int8, "per_channel", is_symmetric=True)
    quantize_(model, QATConfig(weight_config=weight, step="prepare"), filter_fn=_encoder_linear)


def _encoder_linear(module, fqn: str) -> bool:
    return isinstance(module, torch.nn.Linear) and ".encoder." in f".{fqn}."


def main() -> None:
    model_dir, sst2_dir, mode = sys.argv[1:4]
    torch.set_num_threads(2)
    import datasets
    import torchao
    import transformers
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    tok = AutoTokenizer.from_pretrained(model_dir)
    steps = int(sys.argv[4]) if len(sys.argv) > 4 else 30
    texts, labels = sst2(f"{sst2_dir}/train.tsv", 8000 if mode == "accuracy" else 32 * steps)
    padding = "max_length" if mode == "overhead" else False
    train = datasets.Dataset.from_dict(
        {**tok(texts, truncation=True, max_length=64, padding=padding), "labels": labels}
    )

    def trainer_for(model, max_steps: int = -1):
        args = TrainingArguments(
            output_dir="/tmp/torchao_qat",
            num_train_epochs=1,
            max_steps=max_steps,
            learning_rate=5e-5,
            per_device_train_batch_size=32,
            seed=0,
            train_sampling_strategy="group_by_length",  # as bench/run.py's SST-2 rows
            report_to="none",
            save_strategy="no",
            use_cpu=True,
            disable_tqdm=True,
            logging_steps=1000,
        )
        return Trainer(
            model=model,
            args=args,
            train_dataset=train,
            data_collator=DataCollatorWithPadding(tok),
            processing_class=tok,
        )

    def fresh():
        torch.manual_seed(0)
        return AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)

    out = {"torchao": torchao.__version__, "torch": torch.__version__, "transformers": transformers.__version__}
    if mode == "accuracy":
        model = fresh()
        prepare_qat(model)
        t = time.perf_counter()
        trainer_for(model).train()
        out["train_s"] = time.perf_counter() - t
        # evaluated with the fake-quant still in place: the same numbers the converted int8 model computes
        model.eval()
        test_texts, test_labels = sst2(f"{sst2_dir}/test.tsv")
        correct = 0
        with torch.inference_mode():
            for i in range(0, len(test_texts), 64):
                enc = tok(test_texts[i : i + 64], truncation=True, max_length=64, padding=True, return_tensors="pt")
                pred = model(**enc).logits.argmax(-1)
                correct += int((pred == torch.tensor(test_labels[i : i + 64])).sum())
        out["accuracy"] = correct / len(test_texts)
    elif mode == "latency":
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

        fp32 = fresh().eval()
        int8 = fresh().eval()
        quantize_(int8, Int8DynamicActivationInt8WeightConfig(), filter_fn=_encoder_linear)
        times = {f"{n}_b{b}": [] for n in ("fp32", "int8") for b in (8, 1)}
        with torch.inference_mode():
            for _ in range(5):
                for b in (8, 1):
                    x = torch.randint(1000, 2000, (b, 128))
                    for name, m in (("fp32", fp32), ("int8", int8)):
                        m(input_ids=x)  # warm-up
                        t = time.perf_counter()
                        m(input_ids=x)
                        times[f"{name}_b{b}"].append(time.perf_counter() - t)
        med = {k: statistics.median(v) for k, v in times.items()}
        out.update(
            latency_s=med, speedup_b8=med["fp32_b8"] / med["int8_b8"], speedup_b1=med["fp32_b1"] / med["int8_b1"]
        )
    else:
        times: dict[str, list[float]] = {"plain": [], "torchao_qat": []}
        for _ in range(3):
            for name in times:
                model = fresh()
                if name == "torchao_qat":
                    prepare_qat(model)
                trainer = trainer_for(model, steps)
                t = time.perf_counter()
                trainer.train()
                times[name].append((time.perf_counter() - t) / steps)
        out.update(
            step_s=statistics.median(times["torchao_qat"]),
            plain_step_s=statistics.median(times["plain"]),
            ratio=statistics.median(times["torchao_qat"]) / statistics.median(times["plain"]),
            all_s=times,
        )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
