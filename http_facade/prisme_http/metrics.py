"""The façade's Prometheus metrics, in the process-wide default registry.

Must not import prisme_core.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

REQUESTS: Final = Counter(
    "prisme_http_requests_total", "HTTP requests by route, method and status.",
    ["route", "method", "status"],
)  # fmt: skip
DURATION: Final = Histogram(
    "prisme_http_request_duration_seconds",
    "HTTP request latency by route and method.",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
IN_FLIGHT: Final = Gauge("prisme_http_requests_in_flight", "HTTP requests being handled.")
