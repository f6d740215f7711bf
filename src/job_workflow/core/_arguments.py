"""Workflow arguments: declaration, validation and read-only access."""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterator, Mapping
from typing import Any, Final

from job_workflow.core import _codec
from job_workflow.errors import ArgumentValidationError, FrozenArgumentsError


class _Missing:
    def __repr__(self) -> str:
        return "<required>"


MISSING: Final = _Missing()


class ArgumentDef:
    """One declared argument; created by :func:`argument` in a class body."""

    __slots__ = ("copier", "default", "name", "plain", "type")

    def __init__(self, tp: Any, default: Any = MISSING) -> None:
        self.type = tp
        self.default = default
        self.name = ""
        # JSON of this type is the value itself: decoding it is a copy
        # (decided once here, not at every job a worker starts).
        self.plain = _codec.is_plain(tp)
        self.copier = _codec.copier(tp)

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @property
    def required(self) -> bool:
        return self.default is MISSING

    def __repr__(self) -> str:
        return f"argument({_codec.type_name(self.type)}, default={self.default!r})"


def argument(tp: Any, default: Any = MISSING) -> Any:
    """Declare a workflow argument of type ``tp``.

    Arguments are checked against ``tp`` when the workflow is started and are
    read-only inside tasks (``ctx.arguments.name``). Mutable defaults are
    copied for every run.
    """
    return ArgumentDef(tp, default)


class Arguments:
    """The read-only arguments of one workflow run.

    Attribute access reads an argument first, so an argument may be called
    ``items`` or ``keys`` without being shadowed by a method.
    """

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_values", dict(values))

    def __getattribute__(self, name: str) -> Any:
        if not name.startswith("_"):
            values = object.__getattribute__(self, "_values")
            if name in values:
                return values[name]
        return object.__getattribute__(self, name)

    def __getattr__(self, name: str) -> Any:
        known = ", ".join(sorted(self._values)) or "none"
        raise AttributeError(f"no argument {name!r} (declared arguments: {known})")

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenArgumentsError(name)

    def __delattr__(self, name: str) -> None:
        raise FrozenArgumentsError(name)

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Arguments):
            return bool(self._values == other._values)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def to_dict(self) -> dict[str, Any]:
        """A shallow copy of the arguments as a plain dict."""
        return dict(self._values)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self._values.items())
        return f"Arguments({inner})"


def validate(
    defs: Mapping[str, ArgumentDef], given: Mapping[str, Any], workflow: str
) -> dict[str, Any]:
    """Check ``given`` against the declarations; return values with defaults."""
    unknown = [name for name in given if name not in defs]
    if unknown:
        name = unknown[0]
        close = difflib.get_close_matches(name, list(defs), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        declared = ", ".join(defs) or "none"
        raise ArgumentValidationError(
            name,
            f"unknown argument (declared: {declared}){hint}",
            workflow=workflow,
        )
    values: dict[str, Any] = {}
    for name, spec in defs.items():
        if name in given:
            value = given[name]
        elif spec.required:
            raise ArgumentValidationError(
                name,
                f"missing required argument of type {_codec.type_name(spec.type)}",
                workflow=workflow,
            )
        else:
            value = copy.deepcopy(spec.default)
        if not (value is None and not spec.required and spec.default is None):
            _check(spec, value, workflow)
        values[name] = value
    return values


def _check(spec: ArgumentDef, value: Any, workflow: str) -> None:
    try:
        _codec.check(value, spec.type)
        _codec.encode(value)
    except _codec.CodecError as exc:
        raise ArgumentValidationError(
            spec.name,
            exc.message + (f" at {exc.path}" if exc.path else ""),
            workflow=workflow,
        ) from None


def encode(values: Mapping[str, Any]) -> dict[str, Any]:
    """JSON form of validated arguments."""
    return {name: _codec.encode(value, name) for name, value in values.items()}


def decode(
    defs: Mapping[str, ArgumentDef], data: Mapping[str, Any], workflow: str
) -> dict[str, Any]:
    """Rebuild argument values from their JSON form, defaults filled in."""
    values: dict[str, Any] = {}
    for name, spec in defs.items():
        if name in data:
            if spec.plain:
                values[name] = spec.copier(data[name])
                continue
            try:
                values[name] = _codec.decode(data[name], spec.type, name)
            except _codec.CodecError as exc:
                raise ArgumentValidationError(
                    name, exc.message, workflow=workflow
                ) from None
        elif not spec.required:
            values[name] = copy.deepcopy(spec.default)
        else:
            raise ArgumentValidationError(
                name, "missing from the stored job payload", workflow=workflow
            )
    return values
