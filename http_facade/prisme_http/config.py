"""`FacadeConfig`: what the HTTP façade needs to know, filled by whoever starts it.

Every value comes from the service's settings (`prisme_cli.serve.facade_config` builds it):
no default is restated here. Must not import prisme_core.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from prisme_client.forwarded import TrustedProxies

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class FacadeConfig:
    core_targets: tuple[str, ...]
    """gRPC addresses of the cores, e.g. ``("127.0.0.1:50051",)``: each client IP's events go
    to one of them, always the same (`prisme_http.app.core_of`)."""
    event_timeout: float
    """Longest wait for the core's answer on a custom event (it may wait for its session)."""
    pageview_timeout: float
    """Longest wait for the core's answer on a page view: the store's deadline and a margin."""
    health_timeout: float
    """Deadline of the healthcheck's call to the core."""
    read_timeout: float
    """Longest time to read a request's head, and then its body."""
    idle_timeout: float
    """Longest time an idle keep-alive connection stays open."""
    max_body_bytes: int
    max_header_bytes: int
    cors_max_age: int
    """Seconds a browser may cache a CORS preflight answer."""
    trust_proxy: bool
    """Whether a trusted proxy's ``proxy_header`` names the client."""
    proxy_header: str
    trusted_proxies: tuple[IPNetwork, ...]
    stats_timeout: float
    """Longest wait for a stats answer (the core's own timeout and a margin)."""
    stats_origins: frozenset[str]
    """Origins whose pages may read the stats API (``*``: any)."""
    token: str | None = field(default=None, repr=False)
    """The core's service token; the façade is a trusted caller that sets the client IP."""
    core_tls_root: bytes | None = field(default=None, repr=False)
    """With TLS to the core: the certificate (PEM) the core's must chain to, e.g. its own."""
    proxies: TrustedProxies = field(init=False, repr=False, compare=False)
    """``trusted_proxies``, with its answers cached."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "proxies", TrustedProxies(self.trusted_proxies))
