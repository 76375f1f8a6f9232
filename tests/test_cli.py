"""`prisme serve` as a user runs it: a subprocess with the embedded store, stopped by SIGTERM,
restarted on the same data."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from prisme_cli.embedded import EmbeddedStore
from pymongo import MongoClient

from tests.service import PRISME, Service, free_port, service_env, start_service
from tests.support import BROWSER_HEADERS, Document


def pageview(
    service: Service, page: str, referrer: str = "", also: Mapping[str, str] | None = None
) -> int:
    """The status of a page view of ``page`` (and ``also`` these headers), on a connection of
    its own."""
    headers = BROWSER_HEADERS | {"X-Prisme-Referrer": page} | dict(also or {})
    if referrer:
        headers["X-Prisme-Document-Referrer"] = referrer
    request = urllib.request.Request(
        f"{service.base}/api/v1/events/pageviews", method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def stored(data_dir: Path, collection: str) -> list[Document]:
    """Reads what a stopped service left in its embedded store."""
    store = EmbeddedStore(data_dir, cache_size="64M")
    uri = store.start()
    try:
        with MongoClient[Document](uri, uuidRepresentation="standard") as client:
            return list(client.prisme[collection].find({}, {"_id": 0}).sort("timestamp"))
    finally:
        store.stop()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def launch(data_dir: Path, tmp_path: Path) -> Iterator[Callable[[], Service]]:
    """Starts `prisme serve` on the test's data; kills whatever a failed test left running."""
    services: list[Service] = []

    def start() -> Service:
        services.append(start_service(tmp_path / "serve.log", PRISME_DATA_DIR=str(data_dir)))
        return services[-1]

    yield start
    for service in services:
        if service.process.poll() is None:
            service.process.kill()
            service.process.wait()


@pytest.mark.timeout(90)
def test_serve_accepts_a_pageview_and_stops_cleanly_on_sigterm(
    launch: Callable[[], Service], data_dir: Path
) -> None:
    service = launch()
    assert pageview(service, "http://localhost/hello") == 200
    match = re.search(r"embedded store \(pid (\d+)\)", service.log.read_text())
    assert match is not None
    assert service.stop() == 0, service.log.read_text()
    with pytest.raises(ProcessLookupError):
        os.kill(int(match.group(1)), 0)  # the embedded store stopped with the service
    pageviews = stored(data_dir, "pageviews")
    assert [(p["domain"], p["path"]) for p in pageviews] == [("localhost", "/hello")]


@pytest.mark.timeout(120)
def test_session_continues_across_a_restart(launch: Callable[[], Service], data_dir: Path) -> None:
    first = launch()
    assert pageview(first, "http://localhost/a") == 200
    assert pageview(first, "http://localhost/b", referrer="http://localhost/a") == 200
    assert first.stop() == 0, first.log.read_text()

    second = launch()
    assert pageview(second, "http://localhost/c", referrer="http://localhost/b") == 200
    assert second.stop() == 0, second.log.read_text()

    pageviews = stored(data_dir, "pageviews")
    assert [p["path"] for p in pageviews] == ["/a", "/b", "/c"]
    assert len({p["session_uuid"] for p in pageviews}) == 1
    [session] = stored(data_dir, "sessions")
    assert (session["entry_path"], session["exit_path"], session["pageviews"]) == ("/a", "/c", 3)


def test_bad_setting_fails_at_start_naming_the_variable() -> None:
    result = subprocess.run(
        [PRISME, "serve"],
        env=service_env(PRISME_TRUST_PROXY="sometimes"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "PRISME_TRUST_PROXY" in result.stderr


@pytest.mark.timeout(90)
def test_admin_metrics_show_every_facade_and_core(data_dir: Path, tmp_path: Path) -> None:
    admin = free_port()
    service = start_service(
        tmp_path / "serve.log",
        PRISME_DATA_DIR=str(data_dir),
        PRISME_ADMIN_HOSTPORT=f"127.0.0.1:{admin}",
        PRISME_WORKERS="2",
    )
    try:
        assert pageview(service, "http://localhost/metrics-probe") == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10) as answer:
            text = answer.read().decode()
    finally:
        assert service.stop() == 0
    # The service's totals, whichever façade and core handled the page view.
    assert re.search(r'prisme_http_requests_total\{.*status="200"\} 1\.0', text)
    assert re.search(r'prisme_events_total\{kind="pageview",outcome="accepted"\} 1\.0', text)
    assert text.count("# TYPE prisme_events_total counter") == 1
    assert text.count("# TYPE process_cpu_seconds_total") == 1  # one process's runtime metrics


@pytest.mark.timeout(90)
def test_serve_prints_a_generated_stats_token_that_reads_the_stats(
    data_dir: Path, tmp_path: Path
) -> None:
    service = start_service(tmp_path / "serve.log", PRISME_DATA_DIR=str(data_dir))
    try:
        deadline = time.monotonic() + 20
        while not (found := re.search(r"Authorization: Bearer (\S+)", service.log.read_text())):
            assert time.monotonic() < deadline, service.log.read_text()[-2000:]
            time.sleep(0.1)
        url = f"{service.base}/api/v1/stats/visitors?from=now-1d&to=now"
        read = urllib.request.Request(url, headers={"Authorization": f"Bearer {found[1]}"})
        with urllib.request.urlopen(read, timeout=10) as answer:
            assert json.loads(answer.read())["keys"] == []
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=10)
        refused.value.close()
        assert refused.value.code == 401
        port = service.base.rsplit(":", 1)[1]
        link = f"dashboard on http://localhost:{port}/dashboard#token={found[1]}"
        assert link in service.log.read_text()
        with urllib.request.urlopen(f"{service.base}/dashboard", timeout=10) as answer:
            assert found[1] not in answer.read().decode()  # the page holds no token, no data
    finally:
        assert service.stop() == 0
