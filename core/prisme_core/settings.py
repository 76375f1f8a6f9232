"""The service's configuration: one typed, frozen object parsed once from the environment.

`Settings.from_env` takes any `Mapping[str, str]` (``os.environ`` in production, a dict in
tests). Every bad value raises `SettingsError` naming the variable, so a misconfigured service
fails at start instead of at the first request. Secrets stay out of ``repr``.

This module must not import grpc, aiohttp or pymongo.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")

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


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of one service process. See the README's configuration table."""

    port: int = 8000
    host: str = "0.0.0.0"
    origins: frozenset[str] = frozenset()
    trust_proxy: bool = False
    proxy_header: str = "X-Forwarded-For"
    trusted_proxies: tuple[IPNetwork, ...] = parse_networks(DEFAULT_TRUSTED_PROXIES)
    admin_hostport: tuple[str, int] = ("127.0.0.1", 9090)
    grpc_hostport: tuple[str, int] = ("127.0.0.1", 50051)
    grpc_token: str | None = field(default=None, repr=False)
    mongodb_uri: str | None = field(default=None, repr=False)
    mongodb_database: str = "prisme"
    mongodb_timeout: float = 5.0
    geoip_db: str | None = None
    data_dir: str = ".prisme-data"
    session_inactive_ttl: float = 24 * 3600.0
    session_flush_interval: float = 10.0
    batch_max_size: int = 512
    batch_max_timeout: float = 0.001
    batch_max_queue: int = 10_000
    shutdown_timeout: float = 10.0
    api_events_timeout: float = 3.0
    rate_limit_per_minute: int = 60
    max_body_bytes: int = 64 * 1024
    max_header_bytes: int = 32 * 1024
    cors_max_age: int = 86400
    debug: bool = False
    grpc_trusted_proxies: tuple[IPNetwork, ...] = ()
    grpc_tls_cert: str | None = None
    grpc_tls_key: str | None = None
    grpc_max_message_bytes: int = 4 * 1024 * 1024
    grpc_max_streams: int = 100
    http_read_timeout: float = 30.0
    http_idle_timeout: float = 75.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Builds the settings from ``env``, raising `SettingsError` for the first bad value."""
        read = _Reader(env)
        defaults = cls()
        settings = cls(
            port=read("PRISME_PORT", _port, defaults.port),
            host=read("PRISME_HOST", str.strip, defaults.host),
            origins=read("PRISME_ORIGIN_REGISTRY_ORIGINS", _origins, defaults.origins),
            trust_proxy=read("PRISME_TRUST_PROXY", parse_bool, defaults.trust_proxy),
            proxy_header=read("PRISME_PROXY_HEADER", _header_name, defaults.proxy_header),
            trusted_proxies=read(
                "PRISME_TRUSTED_PROXIES", parse_networks, defaults.trusted_proxies
            ),
            admin_hostport=read("PRISME_ADMIN_HOSTPORT", parse_hostport, defaults.admin_hostport),
            grpc_hostport=read("PRISME_GRPC_HOSTPORT", parse_hostport, defaults.grpc_hostport),
            grpc_token=read("PRISME_GRPC_TOKEN", _non_empty, None),
            mongodb_uri=read("PRISME_MONGODB_URI", _non_empty, None),
            mongodb_database=read("PRISME_MONGODB_DATABASE", _database, defaults.mongodb_database),
            mongodb_timeout=read(
                "PRISME_MONGODB_TIMEOUT", _positive_duration, defaults.mongodb_timeout
            ),
            geoip_db=read("PRISME_GEOIP_DB", _non_empty, None),
            data_dir=read("PRISME_DATA_DIR", _non_empty, defaults.data_dir),
            session_inactive_ttl=read(
                "PRISME_SESSIONSTORAGE_SESSION_INACTIVE_TTL",
                _positive_duration,
                defaults.session_inactive_ttl,
            ),
            session_flush_interval=read(
                "PRISME_SESSIONSTORAGE_FLUSH_INTERVAL",
                _positive_duration,
                defaults.session_flush_interval,
            ),
            batch_max_size=read(
                "PRISME_EVENTSTORE_MAX_BATCH_SIZE", _positive_int, defaults.batch_max_size
            ),
            batch_max_timeout=read(
                "PRISME_EVENTSTORE_MAX_BATCH_TIMEOUT",
                _positive_duration,
                defaults.batch_max_timeout,
            ),
            batch_max_queue=read(
                "PRISME_EVENTSTORE_MAX_QUEUE", _positive_int, defaults.batch_max_queue
            ),
            shutdown_timeout=read(
                "PRISME_SHUTDOWN_TIMEOUT", _positive_duration, defaults.shutdown_timeout
            ),
            api_events_timeout=read(
                "PRISME_API_EVENTS_TIMEOUT", _positive_duration, defaults.api_events_timeout
            ),
            rate_limit_per_minute=read(
                "PRISME_RATE_LIMIT_PER_MINUTE", _positive_int, defaults.rate_limit_per_minute
            ),
            max_body_bytes=read("PRISME_MAX_BODY_BYTES", _positive_int, defaults.max_body_bytes),
            max_header_bytes=read(
                "PRISME_MAX_HEADER_BYTES", _positive_int, defaults.max_header_bytes
            ),
            cors_max_age=read("PRISME_CORS_MAX_AGE", _positive_int, defaults.cors_max_age),
            debug=read("PRISME_DEBUG", parse_bool, defaults.debug),
            grpc_trusted_proxies=read(
                "PRISME_GRPC_TRUSTED_PROXIES", parse_networks, defaults.grpc_trusted_proxies
            ),
            grpc_tls_cert=read("PRISME_GRPC_TLS_CERT", _readable_file, None),
            grpc_tls_key=read("PRISME_GRPC_TLS_KEY", _readable_file, None),
            grpc_max_message_bytes=read(
                "PRISME_GRPC_MAX_MESSAGE_BYTES", _positive_int, defaults.grpc_max_message_bytes
            ),
            grpc_max_streams=read(
                "PRISME_GRPC_MAX_STREAMS", _positive_int, defaults.grpc_max_streams
            ),
            http_read_timeout=read(
                "PRISME_HTTP_READ_TIMEOUT", _positive_duration, defaults.http_read_timeout
            ),
            http_idle_timeout=read(
                "PRISME_HTTP_IDLE_TIMEOUT", _positive_duration, defaults.http_idle_timeout
            ),
        )
        if (settings.grpc_tls_cert is None) != (settings.grpc_tls_key is None):
            missing = (
                "PRISME_GRPC_TLS_KEY" if settings.grpc_tls_key is None else "PRISME_GRPC_TLS_CERT"
            )
            raise SettingsError(missing, "", "a PEM file: TLS needs both a certificate and its key")
        return settings


class _Reader:
    """Reads one variable at a time and turns any parse failure into a `SettingsError`."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def __call__(self, name: str, parse: Callable[[str], T], default: T) -> T:
        raw = self._env.get(name)
        if raw is None or (raw.strip() == "" and name != "PRISME_ORIGIN_REGISTRY_ORIGINS"):
            return default
        try:
            return parse(raw)
        except ValueError as exc:
            raise SettingsError(name, raw, _EXPECTED.get(parse, "a valid value")) from exc


def _port(text: str) -> int:
    value = int(text.strip())
    if not 0 <= value <= 65535:
        raise ValueError(text)
    return value


def _origins(text: str) -> frozenset[str]:
    return frozenset(_csv(text))


def _non_empty(text: str) -> str:
    if not text.strip():
        raise ValueError(text)
    return text.strip()


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
    parse_bool: "one of true, false, 1, 0, yes, no",
    _header_name: "an HTTP header name",
    parse_networks: "comma-separated IP networks in CIDR notation",
    parse_hostport: "host:port",
    _non_empty: "a non-empty value",
    _readable_file: "the path of a readable file",
    _database: "a MongoDB database name",
    _positive_duration: "a positive Go duration such as 5ms, 90s, 1m or 24h",
    _positive_int: "a positive integer",
}
