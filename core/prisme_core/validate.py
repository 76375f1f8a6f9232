"""Validation steps: each either returns the parsed value or raises an `InvalidInput` error.

Must not import grpc, aiohttp or pymongo.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from prisme_core.errors import InvalidInput, OriginNotRegistered, Reason


@dataclass(frozen=True, slots=True)
class PageUrl:
    host: str
    path: str


def origin_host(origin: str) -> str:
    """The Origin header without its scheme and port: ``https://a.com:8443`` gives ``a.com``."""
    _, sep, rest = origin.partition("://")
    host = rest if sep else origin
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    name, colon, port = host.rpartition(":")
    return name if colon and port.isdigit() else host


def validate_origin(origin: str, registry: frozenset[str]) -> None:
    if origin_host(origin) not in registry:
        raise OriginNotRegistered(origin)


def validate_page_url(url: str) -> PageUrl:
    """An absolute URL with a host; the host is lowercased and keeps its port."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError as exc:
        raise _invalid_url(url) from exc
    if not host:
        raise _invalid_url(url)
    domain = f"{host}:{port}" if port is not None else host
    return PageUrl(host=domain, path=parts.path or "/")


def _invalid_url(url: str) -> InvalidInput:
    return InvalidInput(
        Reason.INVALID_PAGE_URL,
        "page URL (X-Prisme-Referrer or Referer) must be an absolute URL with a host",
        field="context.page_url",
    )


def validate_event_name(name: str) -> str:
    if not name or "/" in name:
        raise InvalidInput(
            Reason.INVALID_EVENT_NAME, "event name must be one non-empty segment", field="name"
        )
    return name


def validate_properties(content_type: str, body: bytes) -> dict[str, Any]:
    """The body as a JSON object; an empty body is ``{}``."""
    if not body:
        return {}
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise InvalidInput(
            Reason.INVALID_CONTENT_TYPE,
            "a non-empty body needs Content-Type: application/json",
            field="body.content_type",
        )
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(Reason.INVALID_JSON, "body is not valid JSON", field="body") from exc
    if not isinstance(value, dict):
        raise InvalidInput(Reason.INVALID_JSON, "body must be a JSON object", field="body")
    return value
