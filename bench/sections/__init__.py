"""Bench sections, one module per topic; each registers its sections with ``@section``.

A section is a function measuring one thing end to end and writing its bench/results/*.json. A section
that takes row names (``names=True``) runs all its rows by default, or those given with ``--methods``.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable


@dataclasses.dataclass
class Section:
    name: str
    fn: Callable
    names: bool  # takes a list of row names (``--methods``)

    def __call__(self, names: list[str] | None = None) -> None:
        self.fn(names) if self.names else self.fn()


SECTIONS: dict[str, Section] = {}

#: `make bench` runs these in this order (about an hour on 2 cores); every other section is a study, an
#: extra attempt at a goal the core rows miss, run by name or all together with `--section studies`.
CORE = ["overhead", "dense", "peft", "pruning", "structured", "quantization", "distillation", "combined",
        "formats", "latency", "torchao", "oneshot", "recovery", "peers"]  # fmt: skip


def section(name: str | None = None, names: bool = False):
    """Register a section under ``name`` (default: the function's name without ``section_``)."""

    def add(fn):
        key = name or fn.__name__.removeprefix("section_")
        if key in SECTIONS:
            raise ValueError(f"bench section {key!r} is registered twice")
        SECTIONS[key] = Section(key, fn, names)
        return fn

    return add


def discover() -> dict[str, Section]:
    """Import every module of this package (each registers its sections) and return the registry."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    return SECTIONS


def studies() -> list[str]:
    return [n for n in discover() if n not in CORE]
