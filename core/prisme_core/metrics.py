"""The core's Prometheus metrics, in the process-wide default registry.

The admin endpoint (``PRISME_ADMIN_HOSTPORT``, served by `prisme serve`) exposes them with the
HTTP façade's. Must not import grpc, aiohttp or pymongo.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

EVENTS: Final = Counter(
    "prisme_events_total",
    "Events by kind and outcome: accepted, or the reason they were refused.",
    ["kind", "outcome"],
)
BATCH_SIZE: Final = Histogram(
    "prisme_store_batch_size",
    "Documents per group-committed store write.",
    ["collection"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
)
FLUSH_SECONDS: Final = Histogram(
    "prisme_store_flush_seconds",
    "Duration of one group-committed store write.",
    ["collection"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
STORE_ERRORS: Final = Counter(
    "prisme_store_errors_total", "Store operations that failed or timed out.", ["operation"]
)
ACTIVE_SESSIONS: Final = Gauge("prisme_sessions_active", "Live sessions cached by this instance.")
AWAITING_SESSION: Final = Gauge(
    "prisme_events_awaiting_session",
    "Custom events waiting for their session's page view (at most PRISME_API_EVENTS_TIMEOUT).",
)
