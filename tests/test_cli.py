"""`prisme serve` as a user runs it: a subprocess with the embedded store, stopped by SIGTERM."""

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
from collections.abc import Iterator
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


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    port = _free_port()
    env = _env(
        PRISME_DATA_DIR=str(tmp_path / "data"),
        PRISME_PORT=str(port),
        PRISME_HOST="127.0.0.1",
        PRISME_GRPC_HOSTPORT="127.0.0.1:0",
        PRISME_ORIGIN_REGISTRY_ORIGINS="localhost",
    )
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [PRISME, "serve"], env=env, stdout=out, stderr=subprocess.STDOUT, text=True
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while _request(f"{base}/api/v1/healthcheck") != 200:
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    yield process, base, log
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.mark.timeout(90)
def test_serve_accepts_a_pageview_and_stops_cleanly_on_sigterm(
    serve: tuple[subprocess.Popen[str], str, Path], tmp_path: Path
) -> None:
    process, base, log = serve
    status = _request(
        f"{base}/api/v1/events/pageviews",
        method="POST",
        headers=BROWSER_HEADERS,
    )
    assert status == 200
    match = re.search(r"embedded store \(pid (\d+)\)", log.read_text())
    assert match is not None
    store_pid = int(match.group(1))

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0, log.read_text()
    with pytest.raises(ProcessLookupError):
        os.kill(store_pid, 0)

    # The page view outlived the service: reopen its data directory.
    store = EmbeddedStore(tmp_path / "data", cache_size="64M")
    uri = store.start()
    try:
        with MongoClient[Document](uri) as client:
            stored = list(client.prisme.pageviews.find({}, {"_id": 0, "domain": 1, "path": 1}))
    finally:
        store.stop()
    assert stored == [{"domain": "localhost", "path": "/hello"}]


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
