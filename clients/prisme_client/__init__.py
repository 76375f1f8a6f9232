"""A typed asyncio client for `prisme.v1.EventService` and `StatsService`, and the errors it
raises."""

from prisme_client.client import (
    Click,
    CustomEvent,
    Engagement,
    FileDownload,
    OutboundLink,
    PageView,
    PrismeClient,
    Stats,
)
from prisme_client.errors import PrismeError, error_from_rpc, error_from_status

__all__ = [
    "Click",
    "CustomEvent",
    "Engagement",
    "FileDownload",
    "OutboundLink",
    "PageView",
    "PrismeClient",
    "PrismeError",
    "Stats",
    "error_from_rpc",
    "error_from_status",
]
