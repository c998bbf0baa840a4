"""Text classification with an hf_lite recipe: transformers' ``run_glue.py`` pattern, cut to its core.

    python examples/text_classification.py --model_name_or_path MODEL --train_file train.csv \
        --validation_file dev.csv --recipe recipes/gmp_80.yaml --output_dir out --do_train --do_eval

The lines that differ from a plain Trainer script carry ``# hf_lite``: the arguments class and the
trainer class. ``trainer.save_model()`` then writes the compressed model (plain transformers folder).
"""

from __future__ import annotations

import dataclasses

import datasets
import numpy as np
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, HfArgumentParser

from hf_lite import LiteTrainer, LiteTrainingArguments  # hf_lite: instead of Trainer, TrainingArguments


@dataclasses.dataclass
class ScriptArguments:
    model_name_or_path: str
    train_file: str
    validation_file: str | None = None
    text_column: str = "sentence"
    label_column: str = "label"
    max_seq_length: int = 128


def main() -> None:
    parser = HfArgumentParser((ScriptArguments, LiteTrainingArguments))  # hf_lite: adds --recipe
    script, args = parser.parse_args_into_dataclasses()
    files = {"train": script.train_file, **({"validation": script.validation_file} if script.validation_file else {})}
    kind = {"tsv": "csv", "jsonl": "json"}.get(
        script.train_file.rsplit(".", 1)[-1], script.train_file.rsplit(".", 1)[-1]
    )
    raw = datasets.load_dataset(
        kind, data_files=files, **({"delimiter": "\t"} if script.train_file.endswith(".tsv") else {})
    )
    labels = sorted(set(raw["train"][script.label_column]))
    label2id = {label: i for i, label in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(script.model_name_or_path)
    model = AutoModelForSequenceClassification.from_pretrained(
        script.model_name_or_path,
        num_labels=len(labels),
        id2label={i: str(label) for label, i in label2id.items()},
        label2id={str(label): i for label, i in label2id.items()},
    )

    def tokenize(batch):
        enc = tokenizer(batch[script.text_column], truncation=True, max_length=script.max_seq_length)
        enc["labels"] = [label2id[y] for y in batch[script.label_column]]
        return enc

    data = raw.map(tokenize, batched=True, remove_columns=raw["train"].column_names)

    def accuracy(pred):
        return {"accuracy": float((np.argmax(pred.predictions, -1) == pred.label_ids).mean())}

    trainer = LiteTrainer(  # hf_lite: the recipe comes from --recipe
        model=model,
        args=args,
        train_dataset=data["train"],
        eval_dataset=data.get("validation"),
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=accuracy,
    )
    if args.do_train:
        trainer.train()
        trainer.save_model()  # after training: the compressed model as hf-lite exports it
    if args.do_eval and "validation" in data:
        trainer.save_metrics("eval", trainer.evaluate())


if __name__ == "__main__":
    main()
