"""`prisme serve` as a user runs it: a subprocess with the embedded store, stopped by SIGTERM,
restarted on the same data."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prisme_cli.embedded import EmbeddedStore
from pymongo import MongoClient

from tests.support import BROWSER_HEADERS, Document

PRISME = str(Path(sys.executable).with_name("prisme"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRISME_")}
    return env | extra


def _request(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


@dataclass
class Service:
    process: subprocess.Popen[str]
    base: str
    log: Path

    def pageview(self, page: str, referrer: str = "") -> int:
        headers = BROWSER_HEADERS | {"X-Prisme-Referrer": page}
        if referrer:
            headers["X-Prisme-Document-Referrer"] = referrer
        return _request(f"{self.base}/api/v1/events/pageviews", "POST", headers)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=20)


def start_service(data_dir: Path, log: Path) -> Service:
    port = _free_port()
    env = _env(
        PRISME_DATA_DIR=str(data_dir),
        PRISME_PORT=str(port),
        PRISME_HOST="127.0.0.1",
        PRISME_GRPC_HOSTPORT="127.0.0.1:0",
        PRISME_ORIGIN_REGISTRY_ORIGINS="localhost",
    )
    with log.open("a") as out:
        process = subprocess.Popen(
            [PRISME, "serve"], env=env, stdout=out, stderr=subprocess.STDOUT, text=True
        )
    service = Service(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 30
    while _request(f"{service.base}/api/v1/healthcheck") != 200:
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    return service


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
        services.append(start_service(data_dir, tmp_path / "serve.log"))
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
    assert service.pageview("http://localhost/hello") == 200
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
    assert first.pageview("http://localhost/a") == 200
    assert first.pageview("http://localhost/b", referrer="http://localhost/a") == 200
    assert first.stop() == 0, first.log.read_text()

    second = launch()
    assert second.pageview("http://localhost/c", referrer="http://localhost/b") == 200
    assert second.stop() == 0, second.log.read_text()

    pageviews = stored(data_dir, "pageviews")
    assert [p["path"] for p in pageviews] == ["/a", "/b", "/c"]
    assert len({p["session_uuid"] for p in pageviews}) == 1
    [session] = stored(data_dir, "sessions")
    assert (session["entry_path"], session["exit_path"], session["pageviews"]) == ("/a", "/c", 3)


def test_bad_setting_fails_at_start_naming_the_variable() -> None:
    result = subprocess.run(
        [PRISME, "serve"],
        env=_env(PRISME_TRUST_PROXY="sometimes"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "PRISME_TRUST_PROXY" in result.stderr
