"""Settings: defaults, every variable's parsing, and errors that name the variable."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest
from prisme_cli.serve import facade_config
from prisme_core.settings import (
    MAX_WORKERS,
    Settings,
    SettingsError,
    deadlines,
    default_workers,
    parse_duration,
    variables,
)

LOOPBACK = ("127.0.0.1", 9090)
CERT = "tests/golden/pageviews.jsonl"
"""Any readable file stands for a PEM file here: the settings only check it can be read."""

FIELDS = [
    # path, variable, default, a value, what it reads as, a bad value
    ("edge.port", "PRISME_PORT", 8000, "8081", 8081, "eighty"),
    ("edge.host", "PRISME_HOST", "0.0.0.0", " 127.0.0.1 ", "127.0.0.1", None),
    ("edge.admin_hostport", "PRISME_ADMIN_HOSTPORT", LOOPBACK, "0.0.0.0:9191",
     ("0.0.0.0", 9191), "host:port"),
    ("edge.trust_proxy", "PRISME_TRUST_PROXY", False, "yes", True, "maybe"),
    ("edge.proxy_header", "PRISME_PROXY_HEADER", "X-Forwarded-For", "X-Real-Ip", "X-Real-Ip",
     "X Forwarded"),
    ("edge.trusted_proxies", "PRISME_TRUSTED_PROXIES", ..., "10.0.0.0/8, 2001:db8::/32",
     (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32")),
     "10.0.0.0/8,not-a-net"),
    ("edge.cors_max_age", "PRISME_CORS_MAX_AGE", 86400, "600", 600, "0"),
    ("edge.read_timeout", "PRISME_HTTP_READ_TIMEOUT", 30.0, "10s", 10.0, "-1s"),
    ("edge.idle_timeout", "PRISME_HTTP_IDLE_TIMEOUT", 75.0, "1m", 60.0, "soon"),
    ("grpc.hostport", "PRISME_GRPC_HOSTPORT", ("127.0.0.1", 50051), "[::1]:50052",
     ("::1", 50052), "localhost"),
    ("grpc.token", "PRISME_GRPC_TOKEN", None, "s3cret", "s3cret", None),
    ("grpc.trusted_proxies", "PRISME_GRPC_TRUSTED_PROXIES", (), "10.1.0.0/16",
     (ipaddress.ip_network("10.1.0.0/16"),), "10.1.0.0/33"),
    ("grpc.tls_cert", "PRISME_GRPC_TLS_CERT", None, CERT, CERT, "/no/such/file"),
    ("grpc.tls_key", "PRISME_GRPC_TLS_KEY", None, CERT, CERT, "/no/such/file"),
    ("grpc.max_message_bytes", "PRISME_GRPC_MAX_MESSAGE_BYTES", 4 * 1024 * 1024, "1048576",
     1048576, "4MiB"),
    ("grpc.max_streams", "PRISME_GRPC_MAX_STREAMS", 100, "10", 10, "-1"),
    ("store.mongodb_uri", "PRISME_MONGODB_URI", None, "mongodb://user:pw@db:27017/",
     "mongodb://user:pw@db:27017/", None),
    ("store.database", "PRISME_MONGODB_DATABASE", "prisme", "analytics", "analytics", "a/b"),
    ("store.timeout", "PRISME_MONGODB_TIMEOUT", 5.0, "1500ms", 1.5, "5"),
    ("store.data_dir", "PRISME_DATA_DIR", ".prisme-data", "/var/lib/prisme", "/var/lib/prisme",
     None),
    ("store.batch_max_size", "PRISME_EVENTSTORE_MAX_BATCH_SIZE", 512, "100", 100, "0"),
    ("store.batch_max_timeout", "PRISME_EVENTSTORE_MAX_BATCH_TIMEOUT", 0.001, "5ms", 0.005,
     "fast"),
    ("store.batch_max_queue", "PRISME_EVENTSTORE_MAX_QUEUE", 10_000, "500", 500, "many"),
    ("store.bench_memory", "PRISME_BENCH_MEMORY_STORE", False, "false", False, "maybe"),
    ("sessions.inactive_ttl", "PRISME_SESSIONSTORAGE_SESSION_INACTIVE_TTL", 24 * 3600.0, "30m",
     1800.0, "1d"),
    ("sessions.flush_interval", "PRISME_SESSIONSTORAGE_FLUSH_INTERVAL", 10.0, "2s", 2.0, "0"),
    ("sessions.events_timeout", "PRISME_API_EVENTS_TIMEOUT", 3.0, "1s", 1.0, "3"),
    ("sessions.reload_window", "PRISME_SESSIONSTORAGE_RELOAD_WINDOW", 1800.0, "5m", 300.0, "-1m"),
    ("limits.origins", "PRISME_ORIGIN_REGISTRY_ORIGINS", frozenset(), " a.com, b.org ,,",
     frozenset({"a.com", "b.org"}), None),
    ("limits.rate_limit_per_minute", "PRISME_RATE_LIMIT_PER_MINUTE", 60, "120", 120, "-5"),
    ("limits.max_body_bytes", "PRISME_MAX_BODY_BYTES", 64 * 1024, "1024", 1024, "64k"),
    ("limits.max_header_bytes", "PRISME_MAX_HEADER_BYTES", 32 * 1024, "4096", 4096, "1.5"),
    ("limits.max_event_age", "PRISME_MAX_EVENT_AGE", 72 * 3600.0, "1h", 3600.0, "0s"),
    ("stats.token", "PRISME_STATS_TOKEN", None, "s3cret", "s3cret", None),
    ("stats.allow_origins", "PRISME_API_STATS_ALLOW_ORIGINS", frozenset(),
     "https://a.example, http://b.example:8080/", frozenset({"https://a.example",
     "http://b.example:8080"}), "a.example"),
    ("stats.timeout", "PRISME_STATS_TIMEOUT", 10.0, "30s", 30.0, "0s"),
    ("geoip_db", "PRISME_GEOIP_DB", None, "/data/country.mmdb", "/data/country.mmdb", None),
    ("shutdown_timeout", "PRISME_SHUTDOWN_TIMEOUT", 10.0, "30s", 30.0, "-3s"),
    ("debug", "PRISME_DEBUG", False, "1", True, "verbose"),
    ("workers", "PRISME_WORKERS", None, "4", 4, "17"),
]  # fmt: skip
"""Every settings field: its variable, default, a value it reads, and one it refuses."""


def _at(settings: object, path: str) -> object:
    for name in path.split("."):
        settings = getattr(settings, name)
    return settings


def test_the_table_walks_every_field() -> None:
    assert [(path, variable) for path, variable, *_ in FIELDS] == list(variables())


@pytest.mark.parametrize(("path", "default"), [(f[0], f[2]) for f in FIELDS if f[2] is not ...])
def test_defaults_follow_the_contract(path: str, default: object) -> None:
    assert _at(Settings.from_env({}), path) == default
    assert _at(Settings(), path) == default


def test_default_trusted_proxies_are_the_private_networks() -> None:
    proxies = Settings().edge.trusted_proxies
    for address in ("127.0.0.1", "::1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "fd00::1"):
        assert any(ipaddress.ip_address(address) in network for network in proxies)


def test_every_variable_is_read() -> None:
    settings = Settings.from_env({variable: value for _, variable, _, value, *_ in FIELDS})
    for path, _, _, _, expected, _ in FIELDS:
        read = _at(settings, path)
        assert read == (pytest.approx(expected) if isinstance(expected, float) else expected), path


@pytest.mark.parametrize(("variable", "value"), [(f[1], f[5]) for f in FIELDS if f[5] is not None])
def test_each_bad_value_fails_naming_its_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable) as excinfo:
        Settings.from_env({variable: value})
    assert excinfo.value.variable == variable
    assert repr(value) in str(excinfo.value)


def test_the_memory_store_is_refused_outside_the_bench_and_the_tests() -> None:
    with pytest.raises(SettingsError, match="PRISME_BENCH_MEMORY_STORE") as refused:
        Settings.from_env({"PRISME_BENCH_MEMORY_STORE": "true"})
    assert "loses every event" in str(refused.value)
    with pytest.raises(SettingsError, match="PRISME_BENCH_MEMORY_STORE"):
        Settings.from_env({"PRISME_BENCH_MEMORY_STORE": "true", "PRISME_BENCH": "yes"})
    bench = Settings.from_env({"PRISME_BENCH_MEMORY_STORE": "true", "PRISME_BENCH": "1"})
    assert bench.store.bench_memory


def test_workers_default_to_the_usable_cores_at_most_sixteen() -> None:
    usable = len(os.sched_getaffinity(0))
    assert default_workers() == min(usable, MAX_WORKERS) == min(usable, 16)
    assert Settings.from_env({"PRISME_WORKERS": "16"}).workers == 16
    for refused in ("0", "17", "-1", "two"):
        with pytest.raises(SettingsError, match="PRISME_WORKERS"):
            Settings.from_env({"PRISME_WORKERS": refused})


def test_the_facade_waits_longer_than_the_core() -> None:
    """Each hop gives up after the one behind it: the core answers (503, or 400 with its
    reason) before the façade's own timeout."""
    settings = Settings.from_env(
        {"PRISME_MONGODB_TIMEOUT": "2s", "PRISME_API_EVENTS_TIMEOUT": "1s"}
    )
    waits = deadlines(settings)
    assert waits.store == 2.0
    assert waits.session_wait == 1.0
    assert waits.pageview > waits.store
    assert waits.custom_event > waits.session_wait + waits.store
    config = facade_config(settings, "127.0.0.1:1")
    assert (config.pageview_timeout, config.event_timeout) == (waits.pageview, waits.custom_event)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        pytest.param({"PRISME_GRPC_TLS_CERT": "/no/such/file"}, "PRISME_GRPC_TLS_CERT", id="cert"),
        pytest.param({"PRISME_HTTP_READ_TIMEOUT": "-1s"}, "PRISME_HTTP_READ_TIMEOUT", id="read"),
    ],
)
def test_bad_hardening_values_fail_naming_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(env)
    assert refused.value.variable == variable


def test_tls_needs_both_the_certificate_and_its_key(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("certificate")
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"PRISME_GRPC_TLS_CERT": str(cert)})
    assert refused.value.variable == "PRISME_GRPC_TLS_KEY"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("5ms", 0.005, id="ms"),
        pytest.param("90s", 90, id="s"),
        pytest.param("1m", 60, id="m"),
        pytest.param("24h", 86400, id="h"),
        pytest.param("1h30m", 5400, id="compound"),
        pytest.param("1.5s", 1.5, id="fraction"),
        pytest.param("250us", 0.00025, id="us"),
        pytest.param("0", 0, id="bare-zero"),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5", "ms", "5 ms", "1d", "1h-5m", "", "abc"])
def test_malformed_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=text or ".*"):
        parse_duration(text)


def test_secrets_stay_out_of_repr() -> None:
    settings = Settings.from_env(
        {"PRISME_GRPC_TOKEN": "tok-123", "PRISME_MONGODB_URI": "mongodb://u:pw-456@h/"}
    )
    assert "tok-123" not in repr(settings)
    assert "pw-456" not in repr(settings)


def test_empty_origin_registry_registers_nothing() -> None:
    registry = Settings.from_env({"PRISME_ORIGIN_REGISTRY_ORIGINS": ""}).limits.origins
    assert registry == frozenset()
