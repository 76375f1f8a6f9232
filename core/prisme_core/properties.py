"""Custom event properties: the request body as a JSON object, within limits, storable as is.

Values keep their JSON types: integers that fit in 64 bits stay integers, other numbers are
doubles; strings, booleans, nulls, arrays and objects are kept as sent. Refused, each with its
own reason: a non-JSON content type, a body that is not UTF-8 JSON (``NaN``, lone surrogates
and numbers beyond a double's range included), anything but an object, nesting deeper than
`MAX_DEPTH`, more than `MAX_KEYS` keys in all, and keys MongoDB cannot store or that exceed
`MAX_KEY_LENGTH` (empty, leading ``$``, containing ``.`` or NUL).

Pure functions; must not import grpc, aiohttp or pymongo.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from prisme_core.errors import InvalidInput, Reason

MAX_DEPTH: Final = 16
"""Nested objects and arrays, the top-level object included."""
MAX_KEYS: Final = 512
"""Object keys in all, nested ones included."""
MAX_KEY_LENGTH: Final = 256
INT64 = range(-(2**63), 2**63)
_SURROGATE = re.compile("[\ud800-\udfff]")


def query_properties(values: Mapping[str, str], max_bytes: int) -> dict[str, Any]:
    """Properties from a noscript request's ``prop-<key>=<JSON value>`` parameters: each value
    must be JSON on its own (one that is not refuses them all); together they are held to the
    rules of a body."""
    for key, text in values.items():
        try:
            json_value(text)
        except (ValueError, RecursionError) as exc:
            message = f"prop-{key} is not a JSON value: {exc}"
            raise _invalid(Reason.INVALID_JSON, message, "query_properties") from exc
    pairs = ",".join(f"{json.dumps(key)}:{text}" for key, text in values.items())
    return parse_properties("application/json", f"{{{pairs}}}".encode(), max_bytes)


def json_value(text: str) -> Any:
    """A JSON text, numbers kept as their JSON types: integers within 64 bits, other numbers
    as finite doubles (``NaN`` and ``1e999999`` refused); raises `ValueError`."""
    return json.loads(text, parse_int=_integer, parse_float=_finite, parse_constant=_no_constant)


def parse_properties(content_type: str, body: bytes, max_bytes: int) -> dict[str, Any]:
    """The body as a JSON object; an empty body is ``{}``."""
    if not body:
        return {}
    value = json_object(content_type, body, max_bytes, "body")
    _check(value)
    return value


def json_object(
    content_type: str,
    body: bytes,
    max_bytes: int,
    what: str,
    types: tuple[str, ...] = ("application/json",),
) -> dict[str, Any]:
    """A body of one of the content ``types`` within ``max_bytes``, as a JSON object."""
    if len(body) > max_bytes:
        raise _invalid(Reason.BODY_TOO_LARGE, f"{what} is over {max_bytes} bytes", "body.data")
    if content_type.split(";", 1)[0].strip().lower() not in types:
        raise _invalid(
            Reason.INVALID_CONTENT_TYPE,
            f"a {what} needs Content-Type: {' or '.join(types)}",
            "body.content_type",
        )
    try:
        value = json_value(body.decode("utf-8"))
    except RecursionError as exc:
        raise _invalid(Reason.PROPERTIES_TOO_DEEP, f"{what} nests too deeply", "body.data") from exc
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError included
        raise _invalid(
            Reason.INVALID_JSON, f"{what} is not valid JSON: {exc}", "body.data"
        ) from exc
    if not isinstance(value, dict):
        raise _invalid(Reason.INVALID_JSON, f"{what} must be a JSON object", "body.data")
    return value


def _integer(text: str) -> int | float:
    try:
        value = int(text)
    except ValueError:  # over Python's digit limit: far beyond 64 bits anyway
        return _finite(text)
    return value if value in INT64 else _finite(text)


def _finite(text: str) -> float:
    """A JSON number as a double; one too large for a double (``1e999999``) is refused, not
    stored as infinity."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:40]}")
    return value


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _check(root: dict[str, Any]) -> None:
    """Walks the parsed value once, iteratively, checking every limit."""
    keys = 0
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            _check_text(value)
            continue
        if not isinstance(value, dict | list):
            continue
        if depth > MAX_DEPTH:
            raise _invalid(
                Reason.PROPERTIES_TOO_DEEP, f"properties nest deeper than {MAX_DEPTH}", "body.data"
            )
        if isinstance(value, dict):
            keys += len(value)
            if keys > MAX_KEYS:
                raise _invalid(
                    Reason.TOO_MANY_PROPERTIES, f"properties have over {MAX_KEYS} keys", "body.data"
                )
            for key in value:
                _check_key(key)
        children: Iterable[Any] = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children)


def _check_text(text: str) -> None:
    if _SURROGATE.search(text):
        raise _invalid(Reason.INVALID_JSON, "body has an unpaired UTF-16 surrogate", "body.data")


def _check_key(key: str) -> None:
    _check_text(key)
    if not key or key.startswith("$") or "." in key or "\x00" in key:
        raise _invalid(
            Reason.INVALID_PROPERTY_KEY,
            f"property key {key[:40]!r} cannot be stored: empty, leading '$', '.' or NUL",
            "body.data",
        )
    if len(key) > MAX_KEY_LENGTH:
        raise _invalid(
            Reason.INVALID_PROPERTY_KEY,
            f"property key is over {MAX_KEY_LENGTH} characters",
            "body.data",
        )


def _invalid(reason: Reason, message: str, field: str) -> InvalidInput:
    return InvalidInput(reason, message, field=field)
