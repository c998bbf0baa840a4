"""Chat fine-tuning with an hf_lite recipe: TRL's ``sft.py`` pattern, cut to its core.

    python examples/sft_chat.py --model_name_or_path MODEL --train_file chats.jsonl \
        --recipe recipes/RECIPE.yaml --output_dir out --max_steps 100

Data: JSON lines in TRL's conversational prompt/completion form
(``{"prompt": [{"role": "user", ...}], "completion": [{"role": "assistant", ...}]}``) or ``messages``.
The loss (and a distillation term) counts the completion tokens only. With ``--validation_file`` the
model answers those prompts after training and ROUGE against the completions is printed and saved
(``hf_lite.generation.evaluate_generation``). The lines that differ from a plain TRL script carry ``# hf_lite``.
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
    validation_file: str | None = None
    generation_max_new_tokens: int = 64


def conversation(row: dict) -> list[dict]:
    return row["messages"] if "messages" in row else row["prompt"] + row["completion"]


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
    if script.validation_file:  # hf_lite: answers scored with ROUGE, as `hf-lite run` does for task: chat
        from hf_lite.core.recipe import GenerationSettings
        from hf_lite.generation import evaluate_generation

        rows = datasets.load_dataset("json", data_files={"eval": script.validation_file})["eval"]
        settings = GenerationSettings(max_new_tokens=script.generation_max_new_tokens, max_samples=None)
        metrics, _ = evaluate_generation(trainer.model, tokenizer, [conversation(r) for r in rows], settings)
        trainer.save_metrics("eval", metrics)
        print(metrics)


if __name__ == "__main__":
    main()
