"""Chat fine-tuning with an hf_lite recipe: TRL's ``sft.py`` pattern, cut to its core.

    python examples/sft_chat.py --model_name_or_path MODEL --train_file chats.jsonl \
        --recipe recipes/RECIPE.yaml --output_dir out --max_steps 100

Data: JSON lines in TRL's conversational prompt/completion form
(``{"prompt": [{"role": "user", ...}], "completion": [{"role": "assistant", ...}]}``) or ``messages``.
The loss (and a distillation term) counts the completion tokens only. The lines that differ from a plain
TRL script carry ``# hf_lite``.
"""

from __future__ import annotations

import dataclasses

import datasets
from transformers import AutoModelForCausalLM, AutoTokenizer, HfArgumentParser

from hf_lite import LiteSFTConfig, LiteSFTTrainer  # hf_lite: instead of trl's SFTConfig, SFTTrainer


@dataclasses.dataclass
class ScriptArguments:
    model_name_or_path: str
    train_file: str


def main() -> None:
    parser = HfArgumentParser((ScriptArguments, LiteSFTConfig))  # hf_lite: adds --recipe
    script, args = parser.parse_args_into_dataclasses()
    data = datasets.load_dataset("json", data_files={"train": script.train_file})["train"]
    tokenizer = AutoTokenizer.from_pretrained(script.model_name_or_path)
    # hf_lite: the model object, not its name, so the recipe acts on it before TRL builds the optimizer
    model = AutoModelForCausalLM.from_pretrained(script.model_name_or_path)
    trainer = LiteSFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)  # hf_lite
    trainer.train()
    trainer.save_model()


if __name__ == "__main__":
    main()
