"""Settings: defaults, every variable's parsing, and errors that name the variable."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from prisme_core.settings import Settings, SettingsError, parse_duration


def test_defaults_follow_the_contract() -> None:
    settings = Settings.from_env({})
    assert settings.port == 8000
    assert settings.grpc_hostport == ("127.0.0.1", 50051)
    assert settings.admin_hostport == ("127.0.0.1", 9090)
    assert settings.mongodb_uri is None
    assert settings.mongodb_database == "prisme"
    assert settings.mongodb_timeout == 5.0
    assert settings.rate_limit_per_minute == 60
    assert settings.max_body_bytes == 64 * 1024
    assert settings.max_header_bytes == 32 * 1024
    assert settings.session_inactive_ttl == 24 * 3600
    assert settings.session_flush_interval == 10.0
    assert settings.api_events_timeout == 3.0
    assert settings.proxy_header == "X-Forwarded-For"
    assert settings.trust_proxy is False
    assert ipaddress.ip_address("10.1.2.3") in settings.trusted_proxies[2]
    assert settings.http_read_timeout == 30.0
    assert settings.http_idle_timeout == 75.0
    assert settings.grpc_trusted_proxies == ()
    assert settings.grpc_tls_cert is None
    assert settings.grpc_tls_key is None
    assert settings.grpc_max_message_bytes == 4 * 1024 * 1024
    assert settings.grpc_max_streams == 100


def test_every_variable_is_read(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("certificate")
    key.write_text("key")
    settings = Settings.from_env(
        {
            "PRISME_HTTP_READ_TIMEOUT": "10s",
            "PRISME_HTTP_IDLE_TIMEOUT": "1m",
            "PRISME_GRPC_TRUSTED_PROXIES": "10.1.0.0/16",
            "PRISME_GRPC_TLS_CERT": str(cert),
            "PRISME_GRPC_TLS_KEY": str(key),
            "PRISME_GRPC_MAX_MESSAGE_BYTES": "1048576",
            "PRISME_GRPC_MAX_STREAMS": "10",
            "PRISME_PORT": "8081",
            "PRISME_HOST": "127.0.0.1",
            "PRISME_ORIGIN_REGISTRY_ORIGINS": " a.com, b.org ,,",
            "PRISME_TRUST_PROXY": "yes",
            "PRISME_PROXY_HEADER": "X-Real-Ip",
            "PRISME_TRUSTED_PROXIES": "10.0.0.0/8, 2001:db8::/32",
            "PRISME_ADMIN_HOSTPORT": "0.0.0.0:9191",
            "PRISME_GRPC_HOSTPORT": "[::1]:50052",
            "PRISME_GRPC_TOKEN": "s3cret",
            "PRISME_MONGODB_URI": "mongodb://user:pw@db:27017/",
            "PRISME_MONGODB_DATABASE": "analytics",
            "PRISME_MONGODB_TIMEOUT": "1500ms",
            "PRISME_GEOIP_DB": "/data/country.mmdb",
            "PRISME_DATA_DIR": "/var/lib/prisme",
            "PRISME_SESSIONSTORAGE_SESSION_INACTIVE_TTL": "30m",
            "PRISME_SESSIONSTORAGE_FLUSH_INTERVAL": "2s",
            "PRISME_EVENTSTORE_MAX_BATCH_SIZE": "100",
            "PRISME_EVENTSTORE_MAX_BATCH_TIMEOUT": "5ms",
            "PRISME_API_EVENTS_TIMEOUT": "1s",
            "PRISME_RATE_LIMIT_PER_MINUTE": "120",
            "PRISME_MAX_BODY_BYTES": "1024",
            "PRISME_MAX_HEADER_BYTES": "4096",
        }
    )
    assert settings.port == 8081
    assert settings.host == "127.0.0.1"
    assert settings.origins == frozenset({"a.com", "b.org"})
    assert settings.trust_proxy is True
    assert settings.proxy_header == "X-Real-Ip"
    assert settings.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("2001:db8::/32"),
    )
    assert settings.admin_hostport == ("0.0.0.0", 9191)
    assert settings.grpc_hostport == ("::1", 50052)
    assert settings.grpc_token == "s3cret"
    assert settings.mongodb_uri == "mongodb://user:pw@db:27017/"
    assert settings.mongodb_database == "analytics"
    assert settings.mongodb_timeout == pytest.approx(1.5)
    assert settings.geoip_db == "/data/country.mmdb"
    assert settings.data_dir == "/var/lib/prisme"
    assert settings.session_inactive_ttl == 1800
    assert settings.session_flush_interval == 2
    assert settings.batch_max_size == 100
    assert settings.batch_max_timeout == pytest.approx(0.005)
    assert settings.api_events_timeout == 1
    assert settings.rate_limit_per_minute == 120
    assert settings.max_body_bytes == 1024
    assert settings.max_header_bytes == 4096
    assert settings.http_read_timeout == 10
    assert settings.http_idle_timeout == 60
    assert settings.grpc_trusted_proxies == (ipaddress.ip_network("10.1.0.0/16"),)
    assert (settings.grpc_tls_cert, settings.grpc_tls_key) == (str(cert), str(key))
    assert settings.grpc_max_message_bytes == 1048576
    assert settings.grpc_max_streams == 10


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


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        pytest.param("PRISME_PORT", "eighty", id="port-word"),
        pytest.param("PRISME_PORT", "70000", id="port-range"),
        pytest.param("PRISME_TRUST_PROXY", "maybe", id="bool"),
        pytest.param("PRISME_TRUSTED_PROXIES", "10.0.0.0/8,not-a-net", id="cidr"),
        pytest.param("PRISME_PROXY_HEADER", "X Forwarded", id="header-name"),
        pytest.param("PRISME_GRPC_HOSTPORT", "localhost", id="hostport-no-port"),
        pytest.param("PRISME_ADMIN_HOSTPORT", "host:port", id="hostport-word"),
        pytest.param("PRISME_MONGODB_DATABASE", "a/b", id="database"),
        pytest.param("PRISME_MONGODB_TIMEOUT", "5", id="duration-no-unit"),
        pytest.param("PRISME_MONGODB_TIMEOUT", "-1s", id="duration-negative"),
        pytest.param("PRISME_SESSIONSTORAGE_SESSION_INACTIVE_TTL", "1d", id="ttl"),
        pytest.param("PRISME_SESSIONSTORAGE_FLUSH_INTERVAL", "0", id="flush-zero"),
        pytest.param("PRISME_EVENTSTORE_MAX_BATCH_SIZE", "0", id="batch-zero"),
        pytest.param("PRISME_EVENTSTORE_MAX_BATCH_TIMEOUT", "fast", id="batch-timeout"),
        pytest.param("PRISME_API_EVENTS_TIMEOUT", "3", id="events-timeout"),
        pytest.param("PRISME_RATE_LIMIT_PER_MINUTE", "-5", id="rate-negative"),
        pytest.param("PRISME_MAX_BODY_BYTES", "64k", id="body-size"),
        pytest.param("PRISME_MAX_HEADER_BYTES", "1.5", id="header-size"),
    ],
)
def test_bad_values_fail_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable) as excinfo:
        Settings.from_env({variable: value})
    assert excinfo.value.variable == variable
    assert repr(value) in str(excinfo.value)


def test_secrets_stay_out_of_repr() -> None:
    settings = Settings.from_env(
        {"PRISME_GRPC_TOKEN": "tok-123", "PRISME_MONGODB_URI": "mongodb://u:pw-456@h/"}
    )
    assert "tok-123" not in repr(settings)
    assert "pw-456" not in repr(settings)


def test_empty_origin_registry_registers_nothing() -> None:
    assert Settings.from_env({"PRISME_ORIGIN_REGISTRY_ORIGINS": ""}).origins == frozenset()
