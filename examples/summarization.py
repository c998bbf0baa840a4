"""Summarization with an hf_lite recipe: transformers' ``run_summarization.py`` pattern, cut to its core.

    python examples/summarization.py --model_name_or_path t5-small --train_file train.jsonl \
        --recipe recipes/RECIPE.yaml --output_dir out --do_train --predict_with_generate

Data: JSON lines with a text and a summary column (``context``/``response`` as in SAMSum). The lines
that differ from a plain Seq2SeqTrainer script carry ``# hf_lite``.
"""

from __future__ import annotations

import dataclasses

import datasets
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, DataCollatorForSeq2Seq, HfArgumentParser

from hf_lite import LiteSeq2SeqTrainer, LiteSeq2SeqTrainingArguments  # hf_lite: instead of the Seq2Seq classes


@dataclasses.dataclass
class ScriptArguments:
    model_name_or_path: str
    train_file: str
    validation_file: str | None = None
    text_column: str = "context"
    summary_column: str = "response"
    source_prefix: str = "summarize: "
    max_source_length: int = 512
    max_target_length: int = 128


def main() -> None:
    parser = HfArgumentParser((ScriptArguments, LiteSeq2SeqTrainingArguments))  # hf_lite: adds --recipe
    script, args = parser.parse_args_into_dataclasses()
    files = {"train": script.train_file, **({"validation": script.validation_file} if script.validation_file else {})}
    raw = datasets.load_dataset("json", data_files=files)
    tokenizer = AutoTokenizer.from_pretrained(script.model_name_or_path)
    model = AutoModelForSeq2SeqLM.from_pretrained(script.model_name_or_path)

    def tokenize(batch):
        sources = [script.source_prefix + t for t in batch[script.text_column]]
        enc = tokenizer(sources, truncation=True, max_length=script.max_source_length)
        enc["labels"] = tokenizer(
            text_target=batch[script.summary_column], truncation=True, max_length=script.max_target_length
        )["input_ids"]
        return enc

    data = raw.map(tokenize, batched=True, remove_columns=raw["train"].column_names)
    trainer = LiteSeq2SeqTrainer(  # hf_lite: the recipe comes from --recipe
        model=model,
        args=args,
        train_dataset=data["train"],
        eval_dataset=data.get("validation"),
        processing_class=tokenizer,
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model),  # labels padded with -100
    )
    if args.do_train:
        trainer.train()
        trainer.save_model()
    if args.do_eval and "validation" in data:
        trainer.save_metrics("eval", trainer.evaluate(max_length=script.max_target_length))


if __name__ == "__main__":
    main()
