"""Turns an HTTP request into the gRPC request message its `Route` declares.

Only syntax happens here: header values, path segments and the raw body are copied as they
are; every rule about them lives in the core. The one thing refused here is what a proto
string cannot hold: text that is not UTF-8 (`NotUtf8`).

Must not import prisme_core.
"""

from __future__ import annotations

from collections.abc import Mapping

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
) -> Message:
    """The request message for ``route`` (filled in ``into`` when given, a field of a bigger
    message); ``headers`` must be case-insensitive."""
    message = route.request_type() if into is None else into
    parents: dict[tuple[str, ...], Message] = {(): message}
    for binding in route.headers:
        for header in binding.headers:
            if value := headers.get(header):
                *where, field = binding.path
                _set(_parent(parents, tuple(where)), field, value, header)
                break
    for name in route.context_fields:
        getattr(message, name).client_ip = client_ip
    for name in route.path_fields:
        _set(message, name, path_params[name], f"path segment {{{name}}}")
    if route.body_field is not None and route.body_is_text:
        try:
            _set(message, route.body_field, body.decode("utf-8"), "body")
        except UnicodeDecodeError as exc:
            raise NotUtf8("body") from exc
    elif route.body_field is not None:
        http_body = getattr(message, route.body_field)
        _set(http_body, "content_type", headers.get("Content-Type", ""), "Content-Type")
        http_body.data = body
    return message


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
