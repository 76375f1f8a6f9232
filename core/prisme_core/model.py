"""The values the pipeline speaks: what arrives, and the documents it stores.

Plain frozen dataclasses; protobuf types stay at the servicer's edge. Field names of the stored
documents are the MongoDB field names of the contract.

This module must not import grpc, aiohttp or pymongo.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class ClientContext:
    """What a browser tells about itself; ``client_ip`` is already resolved by the servicer."""

    origin: str
    page_url: str
    document_referrer: str
    user_agent: str
    client_ip: str | None


@dataclass(frozen=True, slots=True)
class CustomEventInput:
    context: ClientContext
    name: str
    content_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class PageView:
    """One accepted page view, as stored in ``pageviews``."""

    timestamp: datetime
    domain: str
    path: str


@dataclass(frozen=True, slots=True)
class CustomEvent:
    """One accepted custom event, as stored in ``events_custom``."""

    timestamp: datetime
    domain: str
    path: str
    name: str
    properties: dict[str, Any]
