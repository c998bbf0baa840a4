"""Data loading with ``datasets``: local csv/tsv/json/jsonl/txt files or Hub dataset ids."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from .core.recipe import DataSettings
from .core.settings import DataError

LOCAL_FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".txt": "text", ".raw": "text"}


def looks_local(source: str) -> bool:
    return os.path.splitext(source)[1].lower() in LOCAL_FORMATS or source.startswith((".", "/", "~"))


def _line(source: str, row: int) -> str:
    """Where row ``row`` (0-based) of a file is, as a person opening it would count."""
    ext = os.path.splitext(source)[1].lower()
    if ext in (".csv", ".tsv"):
        return f"{source}, line {row + 2}"  # after the header
    if ext == ".jsonl":
        return f"{source}, line {row + 1}"
    return f"{source}, row {row + 1}"


def _diagnose(path: str, ext: str) -> str | None:
    """Why ``datasets`` could not read a local file: the first line that is not UTF-8 or not JSON.
    Runs only after a failed read."""
    import json

    if ext in (".csv", ".tsv"):
        with open(path, "rb") as f:
            if sum(1 for line in f if line.strip()) <= 1:
                return "it has no rows (only a header line)"
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                return f"line {number} is not UTF-8 text (byte {raw[e.start]:#04x} at column {e.start + 1})"
            if ext == ".jsonl" and text.strip():
                try:
                    json.loads(text)
                except json.JSONDecodeError as e:
                    return f"line {number} is not valid JSON ({e.msg} at column {e.colno})"
    return None


def _read_local(source: str, key: str):
    import datasets

    path = os.path.expanduser(source)
    ext = os.path.splitext(path)[1].lower()
    builder = LOCAL_FORMATS.get(ext)
    if builder is None:
        raise DataError(f"{key}: cannot read {source!r}; use one of {sorted(LOCAL_FORMATS)}")
    if os.path.getsize(path) == 0:
        raise DataError(f"{key}: {source} is empty")
    kwargs: dict[str, Any] = {"delimiter": "\t", "quoting": 3} if ext == ".tsv" else {}
    if builder == "text":
        kwargs["sample_by"] = "document"
    try:
        ds = datasets.load_dataset(builder, data_files={"data": path}, split="data", **kwargs)
    except Exception as e:  # datasets wraps parser errors in several types; the file is what is wrong
        why = _diagnose(path, ext) or (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DataError(f"{key}: cannot read {source}: {why}") from None
    if len(ds) == 0:
        raise DataError(f"{key}: {source} has no rows" + (" (only a header line)" if builder == "csv" else ""))
    return ds


def load_split(source: str, split: str, fallback: str | None = None, key: str = "data"):
    """One split as a ``datasets.Dataset``."""
    import datasets

    if looks_local(source):
        if not os.path.exists(os.path.expanduser(source)):
            if fallback:
                return load_split(fallback, split, key=key)
            raise DataError(
                f"{key}: data file {source!r} does not exist (set data.fallback to a Hub id to use instead)"
            )
        return _read_local(source, key)
    name, _, config = source.partition(":")  # "glue:sst2" picks a dataset config
    ds = datasets.load_dataset(name, config or None)
    if split in ds:
        return ds[split]
    for alt in ("validation", "test", "train"):
        if alt in ds:
            return ds[alt]
    raise DataError(f"{key}: {source!r} has no split {split!r}")


def split_sources(settings: DataSettings) -> tuple[tuple[str, str | None, int | None], ...]:
    """(where, source, row limit) of the training and evaluation data."""
    return ("train", settings.train, settings.max_train_samples), ("eval", settings.eval, settings.max_eval_samples)


def _check_columns(ds, settings: DataSettings, where: str, need_label: bool) -> None:
    wanted = [settings.text_column] + ([settings.text_pair_column] if settings.text_pair_column else [])
    if need_label:
        wanted.append(settings.label_column)
    missing = [c for c in wanted if c not in ds.column_names]
    if missing:
        raise DataError(
            f"data.{where}: column(s) {missing} not found; the file has {ds.column_names}. "
            "Set data.text_column / data.label_column to the right names"
        )


@dataclasses.dataclass
class Labels:
    """The classes of a classification run: names in id order (None: integer labels kept as they are,
    shown as LABEL_i), how values map to ids, and the problem type."""

    num_labels: int
    names: list[str] | None = None
    regression: bool = False

    def to_id(self, value: Any) -> Any:
        if self.regression:
            return float(value)
        return self.names.index(value) if isinstance(value, str) else int(value)

    def config(self) -> dict[str, Any]:
        """What ``from_pretrained`` writes into config.json."""
        if self.regression:
            return {"num_labels": 1, "problem_type": "regression"}
        out: dict[str, Any] = {"num_labels": self.num_labels}
        if self.names is not None:
            out["id2label"] = dict(enumerate(self.names))
            out["label2id"] = {n: i for i, n in enumerate(self.names)}
        return out


def _label_values(ds, settings: DataSettings, source: str, where: str) -> list[Any]:
    """The label column, checked row by row (with the text columns) in one pass."""
    texts = [settings.text_column] + ([settings.text_pair_column] if settings.text_pair_column else [])
    for column in texts:
        for row, text in enumerate(ds[column]):
            if text is None or (isinstance(text, str) and not text.strip()):
                raise DataError(f"data.{where}: {_line(source, row)} has no text in column {column!r}")
    values = ds[settings.label_column]
    for row, value in enumerate(values):
        if value is None or (isinstance(value, str) and not value.strip()):
            raise DataError(f"data.{where}: {_line(source, row)} has no label in column {settings.label_column!r}")
    return values


def infer_labels(splits: dict[str, tuple[Any, str]], settings: DataSettings, model: Any) -> Labels:
    """Classes from the data (``{where: (dataset, source)}``), checked against ``data.labels`` and
    ``model.num_labels``; every conflict is one error naming the file, the line and the value."""
    from datasets import ClassLabel

    if model.problem_type == "regression":
        for where, (ds, source) in splits.items():
            for row, v in enumerate(_label_values(ds, settings, source, where)):
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise DataError(f"data.{where}: {_line(source, row)}: label {v!r} is not a number (regression)")
        return Labels(num_labels=1, regression=True)
    names = list(settings.labels) if settings.labels else None
    first = largest = None  # (value, where, row, source) of the first label and of the largest class id
    strings: set[str] = set()
    for where, (ds, source) in splits.items():
        feature = ds.features.get(settings.label_column)
        if names is None and isinstance(feature, ClassLabel):
            names = list(feature.names)
        for row, v in enumerate(_label_values(ds, settings, source, where)):
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            at = f"data.{where}: {_line(source, row)}"
            if isinstance(v, bool) or not isinstance(v, (int, str)):
                raise DataError(
                    f"{at}: label {v!r} is neither a class id nor a class name "
                    "(for a regression, set model.problem_type: regression)"
                )
            if first is None:
                first = (v, where, row, source)
            elif isinstance(v, str) != isinstance(first[0], str):
                raise DataError(f"{at}: label {v!r} mixes class names and ids (an earlier row has {first[0]!r})")
            if isinstance(v, str):
                if names is not None and v not in names:
                    raise DataError(f"{at}: label {v!r} is not one of data.labels {names}")
                strings.add(v)
            elif v < 0:
                raise DataError(f"{at}: label {v} is negative")
            elif largest is None or v > largest[0]:
                largest = (v, where, row, source)
    if names is None and strings:
        names = sorted(strings)
    if names is not None and model.num_labels is not None and len(names) > model.num_labels:
        raise DataError(f"model.num_labels: {model.num_labels}, but the data has {len(names)} classes {names}")
    count = len(names) if names is not None else model.num_labels or largest[0] + 1
    if largest is not None and largest[0] >= count:
        v, where, row, source = largest
        raise DataError(
            f"data.{where}: {_line(source, row)}: label {v} is out of range for {count} classes "
            "(set model.num_labels, or data.labels with the class names)"
        )
    if count < 2:
        v, where, _, source = first
        raise DataError(f"data.{where}: every label in {source} is {v!r}; classification needs two or more classes")
    return Labels(num_labels=count, names=names)


def read_classification(settings: DataSettings, model) -> tuple[Any, Any, Labels]:
    """(train, eval, labels) read and checked before any model loads; train/eval may be None."""
    splits: dict[str, tuple[Any, str]] = {}
    for where, source, limit in split_sources(settings):
        if source is None:
            continue
        ds = load_split(source, "train" if where == "train" else "validation", settings.fallback, f"data.{where}")
        _check_columns(ds, settings, where, need_label=True)
        if limit is not None:
            ds = ds.select(range(min(limit, len(ds))))
        splits[where] = (ds, source)
    if not splits:
        return None, None, Labels(num_labels=model.num_labels or 2)
    labels = infer_labels(splits, settings, model)
    return (*(splits[w][0] if w in splits else None for w in ("train", "eval")), labels)


def tokenize_classification(ds, settings: DataSettings, tokenizer, labels: Labels, where: str):
    if ds is None:
        return None

    def tok(batch, _s=settings):
        texts = [str(t) for t in batch[_s.text_column]]
        pairs = [str(t) for t in batch[_s.text_pair_column]] if _s.text_pair_column else None
        enc = tokenizer(texts, pairs, truncation=True, max_length=_s.max_length)
        enc["labels"] = [labels.to_id(x) for x in batch[_s.label_column]]
        return enc

    return ds.map(tok, batched=True, remove_columns=ds.column_names, desc=f"tokenize {where}")


def classification_datasets(settings: DataSettings, tokenizer, model=None):
    """(train, eval) tokenized for sequence classification; either may be None."""
    from .core.recipe import ModelSettings

    train, eval_, labels = read_classification(settings, model or ModelSettings())
    return tuple(
        tokenize_classification(d, settings, tokenizer, labels, w) for d, w in ((train, "train"), (eval_, "eval"))
    )


def read_text(source: str, fallback: str | None = None, key: str = "data") -> str:
    """All text of a local file (CR stripped) or of a Hub dataset split, joined by blank lines."""
    path = os.path.expanduser(source)
    if looks_local(source) and os.path.exists(path) and source.endswith((".txt", ".raw")):
        if os.path.getsize(path) == 0:
            raise DataError(f"{key}: {source} is empty")
        try:
            with open(path, encoding="utf-8") as f:
                return f.read().replace("\r", "")
        except UnicodeDecodeError:
            raise DataError(f"{key}: cannot read {source}: {_diagnose(path, '.txt')}") from None
    ds = load_split(source, "train", fallback, key)
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
        raise DataError(f"data: the text has {len(ids)} tokens, fewer than one block of max_length={block}")
    chunks = [ids[i * block : (i + 1) * block] for i in range(n)]
    return datasets.Dataset.from_dict({"input_ids": chunks, "attention_mask": [[1] * block] * n, "labels": chunks})


def causal_lm_datasets(settings: DataSettings, tokenizer):
    out = []
    for where, source, limit in split_sources(settings):
        if source is None:
            out.append(None)
            continue
        text = read_text(source, settings.fallback, f"data.{where}")
        out.append(causal_lm_blocks(text, tokenizer, settings.max_length, limit))
    return tuple(out)
