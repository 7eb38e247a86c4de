"""Frozen config dataclasses that round-trip through JSON with strict checking.

A model's config is exactly its constructor arguments; it is saved as JSON next to
the weights, so loading must refuse unknown keys and wrong types instead of guessing.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Union, get_args, get_origin

from .errors import VaelabError


def _check(name: str, value: Any, tp: Any, where: str) -> Any:
    """Coerce JSON values (lists -> tuples, ints -> floats) and check their type."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        errors = []
        for arm in get_args(tp):
            try:
                return _check(name, value, arm, where)
            except VaelabError as exc:
                errors.append(exc)
        raise errors[-1]
    if tp is type(None):
        if value is None:
            return None
    elif origin is tuple:
        args = get_args(tp)
        if isinstance(value, (list, tuple)):
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(_check(name, v, args[0], where) for v in value)
            if len(args) == len(value):
                return tuple(_check(name, v, a, where) for v, a in zip(value, args))
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is Any:
        return value
    raise VaelabError(f"{where}: '{name}' must be {_describe(tp)}, got {value!r}")


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp))
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])}"
        return f"a list of {len(args)} values"
    return {float: "a number", int: "an integer", bool: "true/false", str: "a string",
            type(None): "null"}.get(tp, str(tp))


class Config:
    """Mixin for frozen dataclasses: strict ``from_dict`` and ``to_dict``."""

    def validate(self) -> None:
        """Raise VaelabError for values out of range (overridden per config)."""

    def __post_init__(self) -> None:
        try:
            self.validate()
        except VaelabError as exc:  # the CLI names the fields by their options (options.in_option_names)
            if getattr(exc, "config", None) is None:
                exc.config = type(self)
            raise

    @classmethod
    def from_dict(cls, data: dict, where: str | None = None):
        where = where or cls.__name__
        if not isinstance(data, dict):
            raise VaelabError(f"{where}: expected a JSON object, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise VaelabError(f"{where}: unknown setting(s) {', '.join(unknown)}; "
                              f"valid: {', '.join(sorted(fields))}")
        values = {k: _check(k, v, hints[k], where) for k, v in data.items()}
        return cls(**values)

    def to_dict(self) -> dict:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def applicable(self) -> dict:
        """The settings that take effect with the others as they are (see :func:`applicable_settings`)."""
        return applicable_settings(type(self), self.to_dict())

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def applicable_settings(config_cls: type, values: dict) -> dict:
    """The entries of ``values`` (settings of ``config_cls``, as ``run.json`` records them) that
    take effect. A field whose metadata says ``{"applies": {"likelihood": ("gaussian",)}}``
    takes effect only while each setting named there holds one of the listed values (``sigma``
    only with the fixed-σ Gaussian likelihood). A named setting that ``values`` lacks (an older
    record) excludes nothing, nor does a key that is not a field: what cannot be judged is shown."""
    from .options import _metadata  # the metadata a subclass inherits with a field it redeclares

    names = {f.name for f in dataclasses.fields(config_cls)}
    kept = {}
    for key, value in values.items():
        when = _metadata(config_cls, key).get("applies", {}) if key in names else {}
        if all(other not in values or values[other] in allowed for other, allowed in when.items()):
            kept[key] = value
    return kept


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def require(cond: bool, message: str) -> None:
    """Config validation helper: one clear line when a value is out of range."""
    if not cond:
        raise VaelabError(message)


def choice(name: str, value: str, choices) -> None:
    if value not in choices:
        raise VaelabError(f"unknown {name} '{value}'; choose one of: {', '.join(choices)}")
