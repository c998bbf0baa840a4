"""Causal-LM fine-tuning with an hf_lite recipe: transformers' ``run_clm.py`` pattern, cut to its core.

    python examples/language_modeling.py --model_name_or_path MODEL --train_file text.txt \
        --recipe recipes/oneshot_wanda50.yaml --output_dir out --do_train --max_steps 100

One-shot modifiers in the recipe (wanda, sparsegpt, gptq) compress at train begin on the recipe's
``calibration.source`` or the first rows of the training set; the fine-tune then recovers. The lines that
differ from a plain Trainer script carry ``# hf_lite``.
"""

from __future__ import annotations

import dataclasses
import itertools

import datasets
from transformers import AutoModelForCausalLM, AutoTokenizer, HfArgumentParser, default_data_collator

from hf_lite import LiteTrainer, LiteTrainingArguments  # hf_lite: instead of Trainer, TrainingArguments


@dataclasses.dataclass
class ScriptArguments:
    model_name_or_path: str
    train_file: str
    validation_file: str | None = None
    block_size: int = 128


def main() -> None:
    parser = HfArgumentParser((ScriptArguments, LiteTrainingArguments))  # hf_lite: adds --recipe
    script, args = parser.parse_args_into_dataclasses()
    files = {"train": script.train_file, **({"validation": script.validation_file} if script.validation_file else {})}
    raw = datasets.load_dataset("text", data_files=files)
    tokenizer = AutoTokenizer.from_pretrained(script.model_name_or_path)
    model = AutoModelForCausalLM.from_pretrained(script.model_name_or_path)

    def blocks(batch):  # concatenate, then cut into block_size pieces (labels = inputs)
        ids = list(itertools.chain.from_iterable(tokenizer(batch["text"])["input_ids"]))
        n = len(ids) // script.block_size * script.block_size
        chunks = [ids[i : i + script.block_size] for i in range(0, n, script.block_size)]
        return {"input_ids": chunks, "attention_mask": [[1] * len(c) for c in chunks], "labels": chunks}

    data = raw.map(blocks, batched=True, remove_columns=["text"])
    trainer = LiteTrainer(  # hf_lite: the recipe comes from --recipe
        model=model,
        args=args,
        train_dataset=data["train"],
        eval_dataset=data.get("validation"),
        processing_class=tokenizer,
        data_collator=default_data_collator,
    )
    if args.do_train:
        trainer.train()
        trainer.save_model()
    if args.do_eval and "validation" in data:
        trainer.save_metrics("eval", trainer.evaluate())


if __name__ == "__main__":
    main()
