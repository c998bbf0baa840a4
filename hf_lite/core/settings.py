"""Validated settings dataclasses.

Every method's settings are a dataclass that derives from :class:`Settings`. ``from_dict`` is strict:
an unknown key, a wrong type or an out-of-range value raises :class:`RecipeError` naming the field,
the value and what is allowed. Settings hold no runtime state.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, ClassVar, Literal, Union, get_args, get_origin, get_type_hints


class RecipeError(ValueError):
    """A recipe or settings value is invalid. The message says which field and how to fix it."""


class DataError(RecipeError):
    """A data file cannot be used as the recipe says: the message names the file and, where there is
    one, the line."""


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if origin in (list, tuple):
        args = get_args(tp)
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _matches(value: Any, tp: Any) -> bool:
    if tp is Any:
        return True
    origin = get_origin(tp)
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return any(_matches(value, a) for a in get_args(tp))
    if origin in (list, tuple):
        (inner,) = get_args(tp)[:1] or (Any,)
        return isinstance(value, (list, tuple)) and all(_matches(v, inner) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if tp is type(None):
        return value is None
    if tp is float:  # YAML writes 1 for 1.0; accept ints where floats are expected, never bools
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


@dataclasses.dataclass
class Settings:
    """Base class for validated settings. Subclasses validate ranges in ``validate``."""

    #: name used in error messages (the recipe ``type:`` or section name)
    section: ClassVar[str] = "settings"

    def __post_init__(self) -> None:
        hints = get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not _matches(value, hints[f.name]):
                raise RecipeError(
                    f"{self.section}.{f.name}: got {value!r} ({type(value).__name__}); "
                    f"expected {_type_name(hints[f.name])}"
                )
            if isinstance(hints[f.name], type) and hints[f.name] is float and isinstance(value, int):
                setattr(self, f.name, float(value))
        self.validate()

    def validate(self) -> None:
        """Range checks; raise via :meth:`fail`."""

    def fail(self, field: str, allowed: str) -> typing.NoReturn:
        raise RecipeError(f"{self.section}.{field}: got {getattr(self, field)!r}; {allowed}")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, section: str | None = None) -> Settings:
        data = dict(data or {})
        where = section or cls.section
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(data) - names)
        if unknown:
            raise RecipeError(f"{where}: unknown key(s) {unknown}; allowed keys are {sorted(names)}")
        missing = [
            f.name
            for f in dataclasses.fields(cls)
            if f.init
            and f.name not in data
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise RecipeError(f"{where}: missing required key(s) {missing}")
        obj = cls.__new__(cls)
        if section:
            obj.section = section  # type: ignore[misc]
        obj.__init__(**data)  # type: ignore[misc]
        return obj

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}


StepOrFraction = Union[int, float]


def check_step_or_fraction(settings: Settings, field: str) -> None:
    """``start``/``end`` are a step (int >= 0) or a fraction of max_steps (float in [0, 1])."""
    value = getattr(settings, field)
    if value is None:
        return
    if isinstance(value, int) and value < 0:
        settings.fail(field, "a step must be >= 0 (an int) or a fraction of max_steps in [0, 1] (a float)")
    if isinstance(value, float) and not 0.0 <= value <= 1.0:
        settings.fail(field, "a fraction of max_steps must lie in [0, 1]; write an int for a step number")


def resolve_step(value: int | float | None, max_steps: int, default: int) -> int:
    """A step number from a step-or-fraction setting."""
    if value is None:
        return default
    if isinstance(value, float):
        return int(round(value * max_steps))
    return int(value)
