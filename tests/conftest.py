"""Shared fixtures: tiny BERT and Llama models built from configs, a tiny tokenizer, tiny data."""

from __future__ import annotations

import os
import random

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.normpath(os.path.join(REPO, "..", "shared", "data"))
WORDS = (
    "good bad great awful fine movie film plot acting boring fun dull superb weak strong the a is was very not".split()
)


def shared_data(*parts: str) -> str:
    path = os.path.join(SHARED_DATA, *parts)
    if not os.path.exists(path):
        pytest.skip(f"{path} is absent")
    return path


def make_tokenizer(folder: str):
    from transformers import BertTokenizerFast

    os.makedirs(folder, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    with open(os.path.join(folder, "vocab.txt"), "w") as f:
        f.write("\n".join(vocab) + "\n")
    # transformers 5 ignores vocab_file here (the tokenizer would know only the special tokens): pass the dict
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})
    tok.save_pretrained(folder)
    return tok


def tiny_bert(num_labels: int = 2, layers: int = 2, seed: int = 0, dropout: float = 0.1, hidden: int = 32):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(WORDS) + 5,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
        num_labels=num_labels,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    return BertForSequenceClassification(config).eval()


#: a ChatML-style template (SmolLM2's format, without its default system prompt)
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CHAT_VOCAB = len(WORDS) + 10  # the tiny vocabulary plus the chat markers and role names


def make_chat_tokenizer(folder: str):
    """The tiny tokenizer with ``<|im_start|>``/``<|im_end|>`` and a chat template, saved to ``folder``."""
    tok = make_tokenizer(folder)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.add_tokens(["user", "assistant", "system"])
    tok.chat_template = CHAT_TEMPLATE
    tok.eos_token = "<|im_end|>"
    tok.save_pretrained(folder)
    assert len(tok) == CHAT_VOCAB
    return tok


def tiny_llama(layers: int = 2, seed: int = 0, vocab_size: int = len(WORDS) + 5):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=0,
    )
    return LlamaForCausalLM(config).eval()


def sentiment_rows(n: int, seed: int = 0) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    pos, neg = ["good", "great", "fine", "superb", "fun", "strong"], ["bad", "awful", "boring", "dull", "weak"]
    rows = []
    for _ in range(n):
        label = rng.randint(0, 1)
        words = [rng.choice(WORDS[4:]) for _ in range(rng.randint(3, 8))]
        words.insert(rng.randint(0, len(words)), rng.choice(pos if label else neg))
        rows.append((" ".join(words), label))
    return rows


@pytest.fixture
def tokenizer(tmp_path):
    return make_tokenizer(str(tmp_path / "tok"))


@pytest.fixture
def tiny_dataset(tokenizer):
    import datasets

    rows = sentiment_rows(64)
    enc = tokenizer([r[0] for r in rows], truncation=True, max_length=16, padding="max_length")
    enc["labels"] = [r[1] for r in rows]
    return datasets.Dataset.from_dict(dict(enc))


@pytest.fixture
def tiny_bert_dir(tmp_path):
    """A saved tiny BERT classifier with its tokenizer (a local 'Hub' folder)."""
    folder = str(tmp_path / "tiny-bert")
    tiny_bert().save_pretrained(folder)
    make_tokenizer(folder)
    return folder


@pytest.fixture
def tiny_tsv(tmp_path):
    """A local TSV with columns (text, target): not the SST-2 names, to test column settings."""
    path = tmp_path / "reviews.tsv"
    with open(path, "w") as f:
        f.write("text\ttarget\n")
        for text, label in sentiment_rows(96, seed=1):
            f.write(f"{text}\t{label}\n")
    return str(path)


def training_args(tmp_path, **kw):
    from transformers import TrainingArguments

    defaults = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        max_steps=8,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
        data_seed=0,
        logging_steps=4,
    )
    defaults.update(kw)
    return TrainingArguments(**defaults)


def lite(tmp_path, dataset, recipe, model=None, train=True, resume=None, teacher=None, **args):
    """A LiteTrainer on a tiny BERT (or ``model``); trained unless ``train=False``."""
    from hf_lite import LiteTrainer

    trainer = LiteTrainer(
        model=model if model is not None else tiny_bert(),
        args=training_args(tmp_path, **args),
        train_dataset=dataset,
        recipe=recipe,
        teacher_model=teacher,
    )
    if train:
        trainer.train(resume_from_checkpoint=resume)
    return trainer


def run_fresh(code: str) -> dict:
    """Run ``code`` in a new Python process and return the JSON it prints last.

    The process must not import hf_lite: ``hf_lite_imported`` is added to the result for checking.
    """
    import json
    import subprocess
    import sys

    code += "\nimport sys as _s; print('HF_LITE_IMPORTED', 'hf_lite' in _s.modules)"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.strip().splitlines()
    out = json.loads(lines[-2])
    out["hf_lite_imported"] = lines[-1].endswith("True")
    return out


def reload_causal_lm(folder: str, ids: list[list[int]]) -> dict:
    """``folder`` loaded with plain transformers in a fresh process: its logits for ``ids``, its parameter
    and block counts, and ``hf_lite_imported``."""
    return run_fresh(
        f"""
import json, torch
from transformers import AutoModelForCausalLM
m = AutoModelForCausalLM.from_pretrained({folder!r}).eval()
with torch.no_grad():
    print(json.dumps({{"logits": m(torch.tensor({ids!r})).logits.tolist(),
                      "params": sum(p.numel() for p in m.parameters()), "layers": m.config.num_hidden_layers}}))
"""
    )


def token_dataset(n: int = 32, length: int = 16, stride: int = 5):
    """Token ids with labels = inputs, for causal-LM training on tiny Llamas."""
    import datasets

    ids = [[(i * stride + j) % 25 + 1 for j in range(length)] for i in range(n)]
    return datasets.Dataset.from_dict({"input_ids": ids, "labels": ids})
