"""Type checks and the JSON codec for arguments and outputs.

Payloads are JSON only (no pickle), so every value crossing a job boundary
is encoded here. Decoding is directed by the declared type: a ``datetime``
argument travels as an ISO string and comes back as a ``datetime`` because
the declaration says so, which keeps the stored JSON plain and readable.
"""

from __future__ import annotations

import datetime as _dt
import functools
import types
import typing
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

JSONValue = Any  # JSON-compatible: None, bool, int, float, str, list, dict[str, ...]

_SCALARS = (str, int, float, bool, type(None))
_SCALAR_TYPES = frozenset(_SCALARS)


class CodecError(Exception):
    """A value does not fit its type or cannot be encoded as JSON."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


def type_name(tp: Any) -> str:
    """A readable name for a declared type (``list[int]``, ``str | None``)."""
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return repr(tp).replace("typing.", "")


def check(value: Any, tp: Any, path: str = "") -> None:
    """Raise CodecError when ``value`` is not an instance of ``tp``."""
    if tp is Any or tp is object:
        return
    if tp is type(value) and tp in _SCALAR_TYPES:
        return  # the common output field, answered before any typing call
    origin = typing.get_origin(tp)
    if origin is None:
        _check_plain(value, tp, path)
    elif origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise CodecError(
                path, f"expected one of {typing.get_args(tp)!r}, got {value!r}"
            )
    elif origin in (typing.Union, types.UnionType):
        _check_union(value, tp, path)
    elif origin in (list, tuple, set, frozenset) or origin is typing.Sequence:
        _check_sequence(value, tp, origin, path)
    elif origin in (dict, Mapping) or origin is typing.Mapping:
        _check_mapping(value, tp, path)
    else:
        _check_plain(value, origin, path)


def _check_plain(value: Any, tp: Any, path: str) -> None:
    if not isinstance(tp, type):
        return  # an annotation we cannot check (a TypeVar, a string): accept
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return  # ints are valid floats, as in type checkers
    if tp is int and isinstance(value, bool):
        raise CodecError(path, f"expected int, got bool {value!r}")
    if tp is _dt.date and isinstance(value, _dt.datetime):
        raise CodecError(path, f"expected date, got datetime {value!r}")
    if not isinstance(value, tp):
        raise CodecError(
            path, f"expected {type_name(tp)}, got {type(value).__name__} {value!r}"
        )


def _check_union(value: Any, tp: Any, path: str) -> None:
    for option in typing.get_args(tp):
        try:
            check(value, option, path)
        except CodecError:
            continue
        return
    raise CodecError(
        path, f"expected {type_name(tp)}, got {type(value).__name__} {value!r}"
    )


def _check_sequence(value: Any, tp: Any, origin: Any, path: str) -> None:
    container = list if origin is typing.Sequence else origin
    if not isinstance(value, container) or isinstance(value, str | bytes):
        raise CodecError(
            path, f"expected {type_name(tp)}, got {type(value).__name__} {value!r}"
        )
    args = typing.get_args(tp)
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(args) != len(value):
            raise CodecError(path, f"expected {len(args)} items, got {len(value)}")
        for i, (item, item_tp) in enumerate(zip(value, args, strict=True)):
            check(item, item_tp, f"{path}[{i}]")
        return
    item_tp = args[0] if args else Any
    for i, item in enumerate(value):
        check(item, item_tp, f"{path}[{i}]")


def _check_mapping(value: Any, tp: Any, path: str) -> None:
    if not isinstance(value, Mapping):
        raise CodecError(
            path, f"expected {type_name(tp)}, got {type(value).__name__} {value!r}"
        )
    args = typing.get_args(tp)
    key_tp, value_tp = args if len(args) == 2 else (Any, Any)
    for key, item in value.items():
        check(key, key_tp, f"{path}[{key!r}] (key)")
        check(item, value_tp, f"{path}[{key!r}]")


def encode(value: Any, path: str = "") -> JSONValue:
    """Turn a value into plain JSON data, or raise CodecError naming where."""
    if isinstance(value, _SCALARS):
        if isinstance(value, float) and value != value:  # NaN is not JSON
            raise CodecError(path, "NaN cannot be stored as JSON")
        return value
    if isinstance(value, list | tuple):
        return [encode(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        out: dict[str, JSONValue] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise CodecError(path, f"dict keys must be str, got {key!r}")
            out[key] = encode(item, f"{path}[{key!r}]")
        return out
    if isinstance(value, _dt.datetime | _dt.date):
        return value.isoformat()
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    raise CodecError(path, f"{type(value).__name__} {value!r} cannot be stored as JSON")


_REBUILT = (_dt.datetime, _dt.date, Decimal, uuid.UUID, float, tuple, set, frozenset)


@functools.lru_cache(maxsize=1024)
def _is_plain(tp: Any) -> bool:
    """True when JSON data of this type is already the value (no rebuilding)."""
    origin = typing.get_origin(tp)
    if origin is None:
        return not (isinstance(tp, type) and issubclass(tp, _REBUILT))
    if origin is typing.Literal:
        return True
    if origin in (tuple, set, frozenset):
        return False
    return all(_is_plain(arg) for arg in typing.get_args(tp) if arg is not Ellipsis)


def copy_json(value: Any) -> Any:
    """Copy JSON data (lists and dicts), leaving scalars as they are."""
    # Scalars are the common item: test their exact type inline rather than
    # recursing into each one (outputs and arguments are copied per job).
    scalars = _SCALAR_TYPES
    if type(value) is list or isinstance(value, list):
        return [item if type(item) in scalars else copy_json(item) for item in value]
    if type(value) is dict or isinstance(value, dict):
        return {
            key: item if type(item) in scalars else copy_json(item)
            for key, item in value.items()
        }
    return value


_IMMUTABLE = frozenset({str, int, bool, type(None)})


def _same(value: JSONValue) -> JSONValue:
    return value


def _copy_flat_list(value: JSONValue) -> JSONValue:
    return value[:] if type(value) is list else copy_json(value)


def _copy_flat_dict(value: JSONValue) -> JSONValue:
    return value.copy() if type(value) is dict else copy_json(value)


def copier(tp: Any) -> Callable[[JSONValue], JSONValue]:
    """The cheapest copy of stored JSON data of type ``tp`` (for a type whose
    JSON is its value: see :func:`is_plain`).

    What a job gets must share nothing mutable with the stored payload (the
    memory backend keeps it by reference). Data was checked against ``tp``
    when the job was enqueued, so a ``list[str]`` needs a shallow copy, a
    ``str`` none at all; anything else is copied through. A container of
    another kind than declared is copied through too. Items are not looked
    at: a payload that breaks its declaration inside a list can only come
    from around the library (a row edited in a database), and the SQL
    backend parses a fresh payload for every job it hands out.
    """
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp in _IMMUTABLE or origin is typing.Literal:
        return _same
    if origin is list and len(args) == 1 and args[0] in _IMMUTABLE:
        return _copy_flat_list
    if origin is dict and len(args) == 2 and args[1] in _IMMUTABLE:
        return _copy_flat_dict
    return copy_json


def is_plain(tp: Any) -> bool:
    try:
        return _is_plain(tp)
    except TypeError:  # an unhashable annotation: decode it the long way
        return False


def decode(data: JSONValue, tp: Any, path: str = "") -> Any:
    """Rebuild a value of declared type ``tp`` from its JSON form."""
    if data is None or tp is Any or tp is object or is_plain(tp):
        # A fresh copy all the same: the JSON may be shared with the backend
        # (the memory backend keeps it by reference) and tasks may mutate it.
        return copy_json(data)
    origin = typing.get_origin(tp)
    if origin is None:
        return _decode_plain(data, tp, path)
    if origin in (typing.Union, types.UnionType):
        return _decode_union(data, tp, path)
    args = typing.get_args(tp)
    if origin in (list, set, frozenset, typing.Sequence):
        item_tp = args[0] if args else Any
        items = [decode(item, item_tp, f"{path}[{i}]") for i, item in enumerate(data)]
        return items if origin in (list, typing.Sequence) else origin(items)
    if origin is tuple:
        if args and args[-1] is not Ellipsis:
            return tuple(decode(d, t, path) for d, t in zip(data, args, strict=False))
        item_tp = args[0] if args else Any
        return tuple(decode(item, item_tp, path) for item in data)
    if origin in (dict, Mapping, typing.Mapping):
        key_tp, value_tp = args if len(args) == 2 else (Any, Any)
        return {
            decode(k, key_tp, path): decode(v, value_tp, f"{path}[{k!r}]")
            for k, v in data.items()
        }
    return data


def _decode_plain(data: JSONValue, tp: Any, path: str) -> Any:
    try:
        if tp is _dt.datetime:
            return _dt.datetime.fromisoformat(data)
        if tp is _dt.date:
            return _dt.date.fromisoformat(data)
        if tp is Decimal:
            return Decimal(data)
        if tp is uuid.UUID:
            return uuid.UUID(data)
        if tp is float and isinstance(data, int):
            return float(data)
    except (TypeError, ValueError, InvalidOperation) as exc:
        raise CodecError(path, f"cannot read {data!r} as {type_name(tp)}") from exc
    return data


def _decode_union(data: JSONValue, tp: Any, path: str) -> Any:
    options = [o for o in typing.get_args(tp) if o is not type(None)]
    if len(options) == 1:
        return decode(data, options[0], path)
    for option in options:
        try:
            value = decode(data, option, path)
            check(value, option, path)
        except CodecError:
            continue
        return value
    return data
