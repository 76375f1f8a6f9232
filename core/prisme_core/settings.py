"""The service's configuration: one typed, frozen object parsed once from the environment.

`Settings.from_env` takes any `Mapping[str, str]` (``os.environ`` in production, a dict in
tests). Settings are nested by concern (`EdgeSettings`, `GrpcSettings`, `StoreSettings`,
`SessionSettings`, `LimitSettings`), and each part is handed to what uses it. Every field is
declared once, with its variable, its parser and its default (`setting`); `from_env` walks
them. Every bad value raises `SettingsError` naming the variable, so a misconfigured service
fails at start instead of at the first request. Secrets stay out of ``repr``. Values derived
from several settings (the deadlines of each hop) come from `deadlines`.

This module must not import grpc, aiohttp or pymongo.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import TypeVar

T = TypeVar("T")
S = TypeVar("S")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_TRUSTED_PROXIES = "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7"


class SettingsError(ValueError):
    """A configuration variable has a value the service cannot use."""

    def __init__(self, variable: str, value: str, expected: str) -> None:
        super().__init__(f"{variable}={value!r} is invalid: expected {expected}")
        self.variable = variable


_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Parses a Go duration such as ``5ms``, ``1m30s`` or ``24h`` into seconds."""
    text = text.strip()
    if text == "0":
        return 0.0
    sign = -1.0 if text.startswith("-") else 1.0
    rest = text.lstrip("+-")
    seconds, pos = 0.0, 0
    while pos < len(rest):
        match = _DURATION_PART.match(rest, pos)
        if match is None:
            raise ValueError(text)
        seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if not rest:
        raise ValueError(text)
    return sign * seconds


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"true", "1", "yes"}:
        return True
    if lowered in {"false", "0", "no"}:
        return False
    raise ValueError(text)


def parse_hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(text)
    return host.strip("[]") or "0.0.0.0", int(port)


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in _csv(text))


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _positive_int(text: str) -> int:
    value = int(text.strip())
    if value <= 0:
        raise ValueError(text)
    return value


def _positive_duration(text: str) -> float:
    value = parse_duration(text)
    if value <= 0:
        raise ValueError(text)
    return value


MAX_WORKERS = 16
"""Most façade and core processes: past this, each one's share of the store's connections and
of the host's memory (≈ 100 MB a process) costs more than another core gives."""


def _workers(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_WORKERS:
        raise ValueError(text)
    return value


def default_workers() -> int:
    """The usable cores of this process (its CPU affinity), at most `MAX_WORKERS`."""
    return max(1, min(len(os.sched_getaffinity(0)), MAX_WORKERS))


def _port(text: str) -> int:
    value = int(text.strip())
    if not 0 <= value <= 65535:
        raise ValueError(text)
    return value


_WILDCARD = re.compile(r"\*(\.[A-Za-z0-9-]+){2,}")


def _origins(text: str) -> frozenset[str]:
    """Hostnames, or wildcards ``*.example.com`` (every subdomain of a domain of two labels or
    more: ``*.com`` would admit a whole top-level domain)."""
    origins = frozenset(_csv(text))
    for origin in origins:
        if "*" in origin and not _WILDCARD.fullmatch(origin):
            raise ValueError(origin)
    return origins


def _non_empty(text: str) -> str:
    if not text.strip():
        raise ValueError(text)
    return text.strip()


def _origin_list(text: str) -> frozenset[str]:
    """Origins as browsers send them (``https://app.example.com``), or ``*``."""
    origins = frozenset(o.rstrip("/") for o in _csv(text))
    for origin in origins:
        if origin != "*" and "://" not in origin:
            raise ValueError(origin)
    return origins


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _readable_file(text: str) -> str:
    path = text.strip()
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ValueError(text) from exc
    return path


def _header_name(text: str) -> str:
    if not _HEADER_NAME.fullmatch(text.strip()):
        raise ValueError(text)
    return text.strip()


_DATABASE_NAME = re.compile(r'[^/\\. "$*<>:|?\x00]{1,63}')


def _database(text: str) -> str:
    if not _DATABASE_NAME.fullmatch(text.strip()):
        raise ValueError(text)
    return text.strip()


_EXPECTED: dict[Callable[[str], object], str] = {
    _port: "a TCP port number (0-65535)",
    _origins: "comma-separated hostnames, or wildcards such as *.example.com",
    _origin_list: "comma-separated origins such as https://app.example.com, or *",
    parse_bool: "one of true, false, 1, 0, yes, no",
    _header_name: "an HTTP header name",
    parse_networks: "comma-separated IP networks in CIDR notation",
    parse_hostport: "host:port",
    _non_empty: "a non-empty value",
    _readable_file: "the path of a readable file",
    _database: "a MongoDB database name",
    _positive_duration: "a positive Go duration such as 5ms, 90s, 1m or 24h",
    _positive_int: "a positive integer",
    _workers: f"a number of processes from 1 to {MAX_WORKERS}",
}


def setting(variable: str, parse: Callable[[str], T], default: T, *, secret: bool = False) -> T:
    """A settings field: read from ``variable`` by ``parse``, else ``default``."""
    metadata = {VARIABLE: variable, PARSE: parse}
    return field(default=default, repr=not secret, metadata=metadata)


VARIABLE = "variable"
PARSE = "parse"


@dataclass(frozen=True, slots=True)
class EdgeSettings:
    """The HTTP door: where it listens, whom it trusts, how long it waits."""

    port: int = setting("PRISME_PORT", _port, 8000)
    host: str = setting("PRISME_HOST", str.strip, "0.0.0.0")
    admin_hostport: tuple[str, int] = setting(
        "PRISME_ADMIN_HOSTPORT", parse_hostport, ("127.0.0.1", 9090)
    )
    trust_proxy: bool = setting("PRISME_TRUST_PROXY", parse_bool, False)
    proxy_header: str = setting("PRISME_PROXY_HEADER", _header_name, "X-Forwarded-For")
    trusted_proxies: tuple[IPNetwork, ...] = setting(
        "PRISME_TRUSTED_PROXIES", parse_networks, parse_networks(DEFAULT_TRUSTED_PROXIES)
    )
    cors_max_age: int = setting("PRISME_CORS_MAX_AGE", _positive_int, 86400)
    read_timeout: float = setting("PRISME_HTTP_READ_TIMEOUT", _positive_duration, 30.0)
    """Longest time to read a request's head, and then its body."""
    idle_timeout: float = setting("PRISME_HTTP_IDLE_TIMEOUT", _positive_duration, 75.0)
    """Longest time an idle keep-alive connection stays open."""


@dataclass(frozen=True, slots=True)
class GrpcSettings:
    """The gRPC door: its address, its token, and what one caller can make it hold."""

    hostport: tuple[str, int] = setting(
        "PRISME_GRPC_HOSTPORT", parse_hostport, ("127.0.0.1", 50051)
    )
    token: str | None = setting("PRISME_GRPC_TOKEN", _non_empty, None, secret=True)
    trusted_proxies: tuple[IPNetwork, ...] = setting(
        "PRISME_GRPC_TRUSTED_PROXIES", parse_networks, ()
    )
    tls_cert: str | None = setting("PRISME_GRPC_TLS_CERT", _readable_file, None)
    tls_key: str | None = setting("PRISME_GRPC_TLS_KEY", _readable_file, None)
    max_message_bytes: int = setting(
        "PRISME_GRPC_MAX_MESSAGE_BYTES", _positive_int, 4 * 1024 * 1024
    )
    max_streams: int = setting("PRISME_GRPC_MAX_STREAMS", _positive_int, 100)

    @property
    def address(self) -> str:
        """``hostport`` as a gRPC address (an IPv6 host in brackets)."""
        return join_hostport(*self.hostport)


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """Where events are stored, how long one event may wait for the store, how writes batch."""

    mongodb_uri: str | None = setting("PRISME_MONGODB_URI", _non_empty, None, secret=True)
    database: str = setting("PRISME_MONGODB_DATABASE", _database, "prisme")
    timeout: float = setting("PRISME_MONGODB_TIMEOUT", _positive_duration, 5.0)
    """Longest wait for the store on one event before answering 503."""
    data_dir: str = setting("PRISME_DATA_DIR", _non_empty, ".prisme-data")
    """The embedded store's files, when no ``mongodb_uri`` is given."""
    batch_max_size: int = setting("PRISME_EVENTSTORE_MAX_BATCH_SIZE", _positive_int, 512)
    batch_max_timeout: float = setting(
        "PRISME_EVENTSTORE_MAX_BATCH_TIMEOUT", _positive_duration, 0.001
    )
    batch_max_queue: int = setting("PRISME_EVENTSTORE_MAX_QUEUE", _positive_int, 10_000)
    bench_memory: bool = setting("PRISME_BENCH_MEMORY_STORE", parse_bool, False)
    """Events kept in the core's memory and lost when it stops: for measuring the service
    without its store (`make bench`), accepted only with ``PRISME_BENCH=1``."""


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """How long a session lives, how often its progress is written, how long a custom event
    waits for it, how recent a reload is."""

    inactive_ttl: float = setting(
        "PRISME_SESSIONSTORAGE_SESSION_INACTIVE_TTL", _positive_duration, 24 * 3600.0
    )
    flush_interval: float = setting(
        "PRISME_SESSIONSTORAGE_FLUSH_INTERVAL", _positive_duration, 10.0
    )
    events_timeout: float = setting("PRISME_API_EVENTS_TIMEOUT", _positive_duration, 3.0)
    """Longest wait of a custom event for its session's page view."""
    reload_window: float = setting(
        "PRISME_SESSIONSTORAGE_RELOAD_WINDOW", _positive_duration, 30 * 60.0
    )
    """How recent a session's last page view must be for a direct or external page view of
    the same page to be its reload."""


@dataclass(frozen=True, slots=True)
class LimitSettings:
    """What is admitted: from which origins, how often per client, how large."""

    origins: frozenset[str] = setting("PRISME_ORIGIN_REGISTRY_ORIGINS", _origins, frozenset())
    rate_limit_per_minute: int = setting("PRISME_RATE_LIMIT_PER_MINUTE", _positive_int, 60)
    max_body_bytes: int = setting("PRISME_MAX_BODY_BYTES", _positive_int, 64 * 1024)
    max_header_bytes: int = setting("PRISME_MAX_HEADER_BYTES", _positive_int, 32 * 1024)
    max_event_age: float = setting("PRISME_MAX_EVENT_AGE", _positive_duration, 72 * 3600.0)
    """Oldest an event may be, by its corrected time, when it arrives."""


@dataclass(frozen=True, slots=True)
class StatsSettings:
    """The read side: who may read, from which origins, how long a query may take."""

    token: str | None = setting("PRISME_STATS_TOKEN", _non_empty, None, secret=True)
    """Grants reading the stats API; generated at start when unset."""
    allow_origins: frozenset[str] = setting(
        "PRISME_API_STATS_ALLOW_ORIGINS", _origin_list, frozenset()
    )
    """Origins whose pages may read the stats API (none: only the same origin)."""
    timeout: float = setting("PRISME_STATS_TIMEOUT", _positive_duration, 10.0)
    """Longest stats query, then 503."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of one service process. See the README's configuration table."""

    edge: EdgeSettings = field(default_factory=EdgeSettings)
    grpc: GrpcSettings = field(default_factory=GrpcSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    sessions: SessionSettings = field(default_factory=SessionSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    stats: StatsSettings = field(default_factory=StatsSettings)
    geoip_db: str | None = setting("PRISME_GEOIP_DB", _non_empty, None)
    shutdown_timeout: float = setting("PRISME_SHUTDOWN_TIMEOUT", _positive_duration, 10.0)
    debug: bool = setting("PRISME_DEBUG", parse_bool, False)
    workers: int | None = setting("PRISME_WORKERS", _workers, None)
    """Façade and core processes of `prisme serve` (as many of each); unset: `default_workers`."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Builds the settings from ``env``, raising `SettingsError` for the first bad value."""
        settings = _read(cls, env)
        grpc = settings.grpc
        if (grpc.tls_cert is None) != (grpc.tls_key is None):
            missing = "PRISME_GRPC_TLS_KEY" if grpc.tls_key is None else "PRISME_GRPC_TLS_CERT"
            raise SettingsError(missing, "", "a PEM file: TLS needs both a certificate and its key")
        if settings.store.bench_memory and env.get("PRISME_BENCH") != "1":
            raise SettingsError(
                "PRISME_BENCH_MEMORY_STORE",
                env["PRISME_BENCH_MEMORY_STORE"],
                "false: an in-memory store loses every event, so only the bench and the tests "
                "use it (they also set PRISME_BENCH=1)",
            )
        return settings


def variables(kind: type[object] = Settings) -> Iterator[tuple[str, str]]:
    """Every (dotted field path, variable) of ``kind``, sections included."""
    for spec in fields(kind):  # type: ignore[arg-type]
        if VARIABLE in spec.metadata:
            yield spec.name, spec.metadata[VARIABLE]
        else:
            for path, variable in variables(spec.default_factory):  # type: ignore[arg-type]
                yield f"{spec.name}.{path}", variable


def _read(kind: type[S], env: Mapping[str, str]) -> S:
    """An instance of ``kind`` with each field read from its variable (sections recursively)."""
    values: dict[str, object] = {}
    for spec in fields(kind):  # type: ignore[arg-type]
        if VARIABLE not in spec.metadata:
            values[spec.name] = _read(spec.default_factory, env)  # type: ignore[arg-type]
            continue
        variable, parse = spec.metadata[VARIABLE], spec.metadata[PARSE]
        raw = env.get(variable)
        if raw is None or (raw.strip() == "" and parse not in {_origins, _origin_list}):
            continue  # unset (or blank): the default; a blank origin list means "none"
        try:
            values[spec.name] = parse(raw)
        except ValueError as exc:
            raise SettingsError(variable, raw, _EXPECTED.get(parse, "a valid value")) from exc
    return kind(**values)


@dataclass(frozen=True, slots=True)
class Deadlines:
    """How long each hop waits for the next, derived in one place (`deadlines`)."""

    store: float
    """The core's wait for the store on one event, then 503."""
    session_wait: float
    """A custom event's wait for its session's page view, then 400 ``session not found``."""
    pageview: float
    """The façade's wait for the core's answer on a page view."""
    custom_event: float
    """The façade's wait for the core's answer on a custom event."""
    health: float
    """The healthcheck's call from the façade to the core."""
    stats: float
    """The façade's wait for a stats answer."""


ANSWER_MARGIN = 0.5
"""Time for an answer to travel from the core to the façade, over loopback or a LAN, with the
core's loop busy: the façade gives up only after the core must have answered."""
SESSION_POLL_MARGIN = 0.5
"""A custom event waiting for a session started on another instance sees it at a poll of the
store (`sessions.STORE_POLL`), up to one poll late, plus the lookup itself."""
HEALTH_DEADLINE = 3.0
"""A healthcheck answers within a load balancer's usual 5 s timeout, failing rather than late."""


def deadlines(settings: Settings) -> Deadlines:
    """Every deadline of an event's trip. The core's come from the settings; the façade's are
    the core's plus margins, so the core always answers first (a 503 or a 400 with its reason)
    and the façade's own timeout (504) means the core is stuck, not slow."""
    store = settings.store.timeout
    session_wait = settings.sessions.events_timeout
    return Deadlines(
        store=store,
        session_wait=session_wait,
        pageview=store + ANSWER_MARGIN,
        custom_event=session_wait + SESSION_POLL_MARGIN + store + ANSWER_MARGIN,
        health=HEALTH_DEADLINE,
        stats=settings.stats.timeout + ANSWER_MARGIN,
    )


def join_hostport(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
