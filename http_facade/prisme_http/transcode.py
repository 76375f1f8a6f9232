"""Turns an HTTP request into the gRPC request message its `Route` declares.

Only syntax happens here: header values, query parameters (on GET routes), path segments and
the raw body are copied as they are; every rule about them lives in the core. A noscript
request without ``Origin`` (an ``<img>``, a link) names its origin by its ``Referer``'s
``scheme://host``. The one thing refused here is what a proto string cannot hold: text that is
not UTF-8 (`NotUtf8`).

Must not import prisme_core.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping

from google.protobuf.message import Message

from prisme_http.routes import Route


class NotUtf8(ValueError):
    """A header or path segment whose bytes are not UTF-8 text."""

    def __init__(self, where: str) -> None:
        super().__init__(f"{where} is not valid UTF-8")
        self.where = where


def to_message(
    route: Route,
    headers: Mapping[str, str],
    path_params: Mapping[str, str],
    body: bytes,
    client_ip: str,
    into: Message | None = None,
    query: Mapping[str, str] | None = None,
) -> Message:
    """The request message for ``route`` (filled in ``into`` when given, a field of a bigger
    message); ``headers`` must be case-insensitive."""
    message = route.request_type() if into is None else into
    parents: dict[tuple[str, ...], Message] = {(): message}
    query = query if query is not None and route.reads_query else {}
    for binding in route.headers:
        found = _first(binding.query, query, "query parameter ") or _first(
            binding.headers, headers, ""
        )
        if found is not None:
            *where, field = binding.path
            _set(_parent(parents, tuple(where)), field, *found)
    _fill_query_maps(route, parents, query)
    for name in route.context_fields:
        context = getattr(message, name)
        context.client_ip = client_ip
        if route.noscript and not context.origin:
            _set(context, "origin", referer_origin(headers.get("Referer", "")), "Referer")
    for name in route.path_fields:
        _set(message, name, path_params[name], f"path segment {{{name}}}")
    for name, value in route.fixed_fields:
        setattr(message, name, value)
    _fill_body(route, message, headers, body)
    return message


def _fill_body(route: Route, message: Message, headers: Mapping[str, str], body: bytes) -> None:
    """The body into its field: text, or a `google.api.HttpBody` with its content type."""
    if route.body_field is not None and route.body_is_text:
        try:
            _set(message, route.body_field, body.decode("utf-8"), "body")
        except UnicodeDecodeError as exc:
            raise NotUtf8("body") from exc
    elif route.body_field is not None:
        http_body = getattr(message, route.body_field)
        _set(http_body, "content_type", headers.get("Content-Type", ""), "Content-Type")
        http_body.data = body


def _fill_query_maps(
    route: Route, parents: dict[tuple[str, ...], Message], query: Mapping[str, str]
) -> None:
    """Every ``<prefix><key>`` parameter into its map field, at ``<key>``; and the parameters
    no field is bound to into the route's field for them."""
    for mapping in route.query_maps:
        *where, field = mapping.path
        values = getattr(_parent(parents, tuple(where)), field)
        for key, value in query.items():
            if key.startswith(mapping.prefix) and len(key) > len(mapping.prefix):
                _set_item(values, key[len(mapping.prefix) :], value, key)
    if route.query_rest is not None:
        *where, field = route.query_rest
        rest = getattr(_parent(parents, tuple(where)), field)
        for key, value in query.items():
            if key not in route.query_names:
                _set_item(rest, key, value, key)


def referer_origin(referer: str) -> str:
    """``scheme://host[:port]`` of a ``Referer`` (empty when it has none)."""
    scheme, sep, rest = referer.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0].split('?', 1)[0]}" if sep and rest else ""


def _first(names: tuple[str, ...], values: Mapping[str, str], what: str) -> tuple[str, str] | None:
    """The first non-empty value among ``names``, and where it came from."""
    for name in names:
        if value := values.get(name):
            return value, f"{what}{name}"
    return None


def _set_item(values: MutableMapping[str, str], key: str, value: str, where: str) -> None:
    try:
        values[key] = value
    except (UnicodeEncodeError, ValueError) as exc:
        raise NotUtf8(f"query parameter {where}") from exc


def _set(message: Message, field: str, value: str, where: str) -> None:
    """aiohttp keeps bytes that are not UTF-8 as lone surrogates, which a proto string refuses."""
    try:
        setattr(message, field, value)
    except UnicodeEncodeError as exc:
        raise NotUtf8(where) from exc


def _parent(parents: dict[tuple[str, ...], Message], path: tuple[str, ...]) -> Message:
    """The (sub)message at ``path``, looked up once per request."""
    parent = parents.get(path)
    if parent is None:
        parent = parents[path] = getattr(_parent(parents, path[:-1]), path[-1])
    return parent
