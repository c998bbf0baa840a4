"""Data loading with ``datasets``: local csv/tsv/json/jsonl/txt files or Hub dataset ids."""

from __future__ import annotations

import os
from typing import Any

from .core.recipe import DataSettings
from .core.settings import RecipeError

LOCAL_FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".txt": "text", ".raw": "text"}


def looks_local(source: str) -> bool:
    return os.path.splitext(source)[1].lower() in LOCAL_FORMATS or source.startswith((".", "/", "~"))


def load_split(source: str, split: str, fallback: str | None = None):
    """One split as a ``datasets.Dataset``."""
    import datasets

    if looks_local(source):
        path = os.path.expanduser(source)
        if not os.path.exists(path):
            if fallback:
                return load_split(fallback, split)
            raise FileNotFoundError(
                f"data file {source!r} does not exist (set data.fallback to a Hub id to use instead)"
            )
        ext = os.path.splitext(path)[1].lower()
        builder = LOCAL_FORMATS.get(ext)
        if builder is None:
            raise RecipeError(f"data: cannot read {source!r}; use one of {sorted(LOCAL_FORMATS)}")
        kwargs: dict[str, Any] = {"delimiter": "\t", "quoting": 3} if ext == ".tsv" else {}
        if builder == "text":
            kwargs["sample_by"] = "document"
        return datasets.load_dataset(builder, data_files={"data": path}, split="data", **kwargs)
    name, _, config = source.partition(":")  # "glue:sst2" picks a dataset config
    ds = datasets.load_dataset(name, config or None)
    if split in ds:
        return ds[split]
    for alt in ("validation", "test", "train"):
        if alt in ds:
            return ds[alt]
    raise RecipeError(f"data: {source!r} has no split {split!r}")


def _check_columns(ds, settings: DataSettings, where: str, need_label: bool) -> None:
    wanted = [settings.text_column] + ([settings.text_pair_column] if settings.text_pair_column else [])
    if need_label:
        wanted.append(settings.label_column)
    missing = [c for c in wanted if c not in ds.column_names]
    if missing:
        raise RecipeError(
            f"data.{where}: column(s) {missing} not found; the file has {ds.column_names}. "
            "Set data.text_column / data.label_column to the right names"
        )


def classification_datasets(settings: DataSettings, tokenizer):
    """(train, eval) tokenized for sequence classification; either may be None."""
    out = []
    for where, source, limit in (
        ("train", settings.train, settings.max_train_samples),
        ("eval", settings.eval, settings.max_eval_samples),
    ):
        if source is None:
            out.append(None)
            continue
        ds = load_split(source, "train" if where == "train" else "validation", settings.fallback)
        _check_columns(ds, settings, where, need_label=True)
        if limit is not None:
            ds = ds.select(range(min(limit, len(ds))))

        def tok(batch, _s=settings):
            texts = [str(t) for t in batch[_s.text_column]]
            pairs = [str(t) for t in batch[_s.text_pair_column]] if _s.text_pair_column else None
            enc = tokenizer(texts, pairs, truncation=True, max_length=_s.max_length)
            enc["labels"] = [int(x) for x in batch[_s.label_column]]
            return enc

        out.append(ds.map(tok, batched=True, remove_columns=ds.column_names, desc=f"tokenize {where}"))
    return tuple(out)


def read_text(source: str, fallback: str | None = None) -> str:
    """All text of a local file (CR stripped) or of a Hub dataset split, joined by blank lines."""
    if looks_local(source) and os.path.exists(os.path.expanduser(source)) and source.endswith((".txt", ".raw")):
        with open(os.path.expanduser(source), encoding="utf-8") as f:
            return f.read().replace("\r", "")
    ds = load_split(source, "train", fallback)
    column = "text" if "text" in ds.column_names else ds.column_names[0]
    return "\n\n".join(str(t) for t in ds[column]).replace("\r", "")


def causal_lm_blocks(text: str, tokenizer, block: int, max_blocks: int | None = None):
    """Non-overlapping ``block``-token chunks of ``text`` as a Dataset with input_ids/labels."""
    import datasets

    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    n = len(ids) // block
    if max_blocks is not None:
        n = min(n, max_blocks)
    if n == 0:
        raise RecipeError(f"data: the text has {len(ids)} tokens, fewer than one block of max_length={block}")
    chunks = [ids[i * block : (i + 1) * block] for i in range(n)]
    return datasets.Dataset.from_dict({"input_ids": chunks, "attention_mask": [[1] * block] * n, "labels": chunks})


def causal_lm_datasets(settings: DataSettings, tokenizer):
    out = []
    for source, limit in ((settings.train, settings.max_train_samples), (settings.eval, settings.max_eval_samples)):
        out.append(
            None
            if source is None
            else causal_lm_blocks(read_text(source, settings.fallback), tokenizer, settings.max_length, limit)
        )
    return tuple(out)
