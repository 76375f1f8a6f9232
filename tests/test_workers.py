"""`prisme serve` with ``PRISME_WORKERS=2``: two façade processes on one HTTP port and two
cores. Each request here comes on a new connection, so the kernel spreads them over both
façades (the admin metrics say which façade answered); each client IP's events go to one core
whichever façade takes them."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prisme_client import PrismeClient
from prisme_http.app import core_index
from pymongo import MongoClient

from tests.service import Service, free_port, start_service
from tests.support import BROWSER_HEADERS, Document
from tests.test_cli import pageview
from tests.test_serve_hardening import _children

WORKERS = 2
LIMIT = 60


def _ip_of_core(core: int, avoid: set[str] = frozenset()) -> str:  # type: ignore[assignment]
    """A client IP that the façades send to ``core``."""
    for n in range(1, 250):
        ip = f"198.51.100.{n}"
        if core_index(ip, WORKERS) == core and ip not in avoid:
            return ip
    raise AssertionError("no address for that core")


def send(service: Service, ip: str, page: str, referrer: str = "") -> int:
    """One page view from ``ip`` on a connection of its own."""
    also = {"X-Forwarded-For": ip, "X-Prisme-Event-Id": str(uuid.uuid4())}
    return pageview(
        service, f"http://localhost{page}", f"http://localhost{referrer}" if referrer else "", also
    )


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        return str(answer.read().decode())


def _child_metrics(service: Service, role: bytes) -> dict[bytes, str]:
    """The metrics of each child of ``role`` (``core-0``, ``facade-1``...), from its own port."""
    found = {}
    for child in _children(service.process.pid):
        argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        if role in argv:
            name = argv[argv.index(b"--name") + 1]
            found[name] = _metrics(int(argv[argv.index(b"--metrics-port") + 1]))
    return found


def _sample(text: str, pattern: str) -> float:
    return sum(float(value) for value in re.findall(pattern + r" (\S+)", text))


ACCEPTED = r'prisme_events_total\{kind="pageview",outcome="accepted"\}'


def accepted_by(service: Service) -> dict[str, float]:
    """Page views accepted so far, by core."""
    cores = _child_metrics(service, b"core")
    return {name.decode(): _sample(text, ACCEPTED) for name, text in cores.items()}


def answered_by(service: Service, admin: int, status: int) -> dict[str, float]:
    """Page views answered ``status`` so far, by façade: the other façade's own count, and
    this one's as the service's total less that."""
    pattern = (
        r'prisme_http_requests_total\{method="POST",route="/api/v1/events/pageviews",'
        rf'status="{status}"\}}'
    )
    others = {
        n.decode(): _sample(t, pattern) for n, t in _child_metrics(service, b"facade").items()
    }
    return {"facade-0": _sample(_metrics(admin), pattern) - sum(others.values())} | others


@pytest.fixture(scope="module")
def database() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def served(
    mongo_uri: str, database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Service, int]]:
    admin = free_port()
    grpc_port = free_port()
    service = start_service(
        tmp_path_factory.mktemp("workers") / "serve.log",
        PRISME_WORKERS=str(WORKERS),
        PRISME_MONGODB_URI=mongo_uri,
        PRISME_MONGODB_DATABASE=database,
        PRISME_ADMIN_HOSTPORT=f"127.0.0.1:{admin}",
        PRISME_GRPC_HOSTPORT=f"127.0.0.1:{grpc_port}",
        PRISME_GRPC_TOKEN="workers-token",
        PRISME_STATS_TOKEN="workers-stats",
        PRISME_TRUST_PROXY="true",
        PRISME_RATE_LIMIT_PER_MINUTE=str(LIMIT),
    )
    yield service, admin
    assert service.stop() == 0, service.log.read_text()[-3000:]
    with MongoClient[Document](mongo_uri) as client:
        client.drop_database(database)


@pytest.fixture(scope="module")
def store(mongo_uri: str, database: str) -> Iterator[MongoClient[Document]]:
    with MongoClient[Document](mongo_uri, uuidRepresentation="standard") as client:
        yield client


@pytest.mark.timeout(120)
def test_the_61st_event_in_a_minute_is_429_whichever_facade_accepts_it(
    served: tuple[Service, int],
) -> None:
    service, admin = served
    ip = _ip_of_core(0)
    accepted_before, limited_before = (
        answered_by(service, admin, 200),
        answered_by(service, admin, 429),
    )
    assert [send(service, ip, f"/limit/{n}") for n in range(LIMIT)] == [200] * LIMIT
    # Again and again, each on a new connection, until both façades have refused it.
    refused: list[int] = []
    while len(refused) < 40:
        refused.append(send(service, ip, "/limit/over"))
        limited = answered_by(service, admin, 429)
        if all(limited.get(f, 0) > limited_before.get(f, 0) for f in ("facade-0", "facade-1")):
            break
    assert set(refused) == {429}
    accepted = answered_by(service, admin, 200)
    for facade in ("facade-0", "facade-1"):  # both façades took some of the 60, and refused
        assert accepted.get(facade, 0) > accepted_before.get(facade, 0), accepted
        assert limited[facade] > limited_before.get(facade, 0), limited
    # The limit is the client's: another address on the same core is not refused.
    assert send(service, _ip_of_core(0, avoid={ip}), "/limit/other") == 200


@pytest.mark.timeout(120)
def test_a_session_continues_across_facade_processes(
    served: tuple[Service, int], store: MongoClient[Document], database: str
) -> None:
    service, admin = served
    ip = _ip_of_core(1)
    before, cores_before = answered_by(service, admin, 200), accepted_by(service)
    pages = ["/tour/0"]
    assert send(service, ip, pages[0]) == 200
    while len(pages) < 30:
        pages.append(f"/tour/{len(pages)}")
        assert send(service, ip, pages[-1], referrer=pages[-2]) == 200
        after = answered_by(service, admin, 200)
        if len(pages) >= 6 and all(after.get(f, 0) > before.get(f, 0) + 1 for f in after):
            break
    assert all(after.get(f, 0) > before.get(f, 0) + 1 for f in ("facade-0", "facade-1")), after
    views = list(store[database].pageviews.find({"path": {"$regex": "^/tour/"}}))
    assert sorted(v["path"] for v in views) == sorted(pages)
    assert len({v["session_uuid"] for v in views}) == 1  # one session, whoever answered
    cores = accepted_by(service)  # and every one of them decided by the same core
    assert cores["core-1"] - cores_before.get("core-1", 0) == len(pages)
    assert cores.get("core-0", 0) == cores_before.get("core-0", 0)


@pytest.mark.timeout(120)
async def test_backends_reach_the_cores_on_one_grpc_port(
    served: tuple[Service, int], store: MongoClient[Document], database: str
) -> None:
    service, _ = served
    target = next(
        line.split("port ")[-1].split('"')[0]
        for line in service.log.read_text().splitlines()
        if "gRPC core listening on port" in line
    )
    ids = []
    for n in range(8):  # a client (a connection) each
        async with PrismeClient(f"127.0.0.1:{target}", token="workers-token") as client:
            ids.append(uuid.uuid4())
            await client.send_pageview(
                page_url="http://localhost/from-a-backend",
                origin="http://localhost",
                client_ip=f"203.0.113.{n + 1}",
                user_agent=BROWSER_HEADERS["User-Agent"],
                event_id=str(ids[-1]),
            )
    found = store[database].pageviews.count_documents({"path": "/from-a-backend"})
    assert found == len(ids)


@pytest.mark.timeout(120)
def test_a_stats_answer_kept_by_one_core_follows_the_other_cores_writes(
    served: tuple[Service, int],
) -> None:
    service, _ = served
    reader, writer = _ip_of_core(0), _ip_of_core(1)

    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()

    def pageviews() -> int:
        """The page views of ``/counted``, asked as the same query each time (a fixed range:
        the cores keep an answer while nothing was written)."""
        request = urllib.request.Request(
            f"{service.base}/api/v1/stats/pageviews?from=2020-01-01&to={tomorrow}"
            "&path=/counted&interval=month",
            headers={"Authorization": "Bearer workers-stats", "X-Forwarded-For": reader},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return int(sum(json.loads(answer.read())["values"]))

    assert pageviews() == 0
    assert pageviews() == 0
    assert send(service, writer, "/counted") == 200  # stored by the other core
    assert pageviews() == 1


def _core_of_slot(service: Service, slot: int) -> int:
    for child in _children(service.process.pid):
        argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        if b"core" in argv and argv[argv.index(b"--slot") + 1] == str(slot).encode():
            return child
    raise AssertionError(f"no core {slot}")


@pytest.mark.timeout(120)
def test_a_core_that_dies_is_started_again_and_its_events_are_503_meanwhile(
    tmp_path: Path,
) -> None:
    service = start_service(
        tmp_path / "serve.log",
        PRISME_WORKERS=str(WORKERS),
        PRISME_DATA_DIR=str(tmp_path / "data"),
        PRISME_TRUST_PROXY="true",
        PRISME_RATE_LIMIT_PER_MINUTE="1000000",  # it asks again and again until restarted
    )
    try:
        dead, alive = _ip_of_core(1), _ip_of_core(0)
        assert send(service, dead, "/before") == 200
        core = _core_of_slot(service, 1)
        os.kill(core, signal.SIGKILL)
        while Path(f"/proc/{core}").exists() and b"Z" not in _state(core):
            time.sleep(0.01)
        statuses = [send(service, dead, "/while-down")]
        assert statuses == [503]
        assert send(service, alive, "/other-core") == 200  # the other core goes on
        deadline = time.monotonic() + 30
        while statuses[-1] != 200:
            assert time.monotonic() < deadline, service.log.read_text()[-3000:]
            statuses.append(send(service, dead, "/after"))
        assert set(statuses) <= {503, 200}
        assert _core_of_slot(service, 1) != core
        assert "core-1 exited with -9" in service.log.read_text()
        # A façade that dies: the other answers meanwhile, and it is started again.
        facade = _facade(service)
        assert facade is not None
        os.kill(facade, signal.SIGKILL)
        # A connection the kernel queued at it while it died is reset (its client retries);
        # once its last thread is gone, and the supervisor has reaped it, none goes there.
        while Path(f"/proc/{facade}").exists():
            time.sleep(0.01)
        while _facade(service) in (facade, None):
            assert send(service, alive, "/facade-down") == 200
            assert time.monotonic() < deadline + 30, service.log.read_text()[-3000:]
        assert "facade-1 exited with -9" in service.log.read_text()
    finally:
        assert service.stop() == 0, service.log.read_text()[-3000:]
    assert not _children(service.process.pid)


def _facade(service: Service) -> int | None:
    """The façade child, once it serves (its metrics port is open)."""
    for child in _children(service.process.pid):
        argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        if b"facade" in argv and _state(child) != b"Z":
            port = int(argv[argv.index(b"--metrics-port") + 1])
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                return None
            return child
    return None


def _state(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().rpartition(b")")[2].split()[0]
    except OSError:
        return b"Z"


@pytest.mark.timeout(120)
def test_every_child_dies_with_a_killed_supervisor(tmp_path: Path) -> None:
    service = start_service(
        tmp_path / "serve.log", PRISME_WORKERS=str(WORKERS), PRISME_DATA_DIR=str(tmp_path / "d")
    )
    children = _children(service.process.pid)
    assert len(children) == 2 * WORKERS  # the cores, the other façade, the embedded store
    service.kill()
    deadline = time.monotonic() + 30
    while any(_state(child) != b"Z" for child in children):
        assert time.monotonic() < deadline, [(c, _state(c)) for c in children]
        time.sleep(0.05)


@pytest.mark.timeout(120)
def test_sigterm_stops_every_process_facades_first(tmp_path: Path) -> None:
    service = start_service(
        tmp_path / "serve.log", PRISME_WORKERS=str(WORKERS), PRISME_DATA_DIR=str(tmp_path / "d")
    )
    children = _children(service.process.pid)
    names = [Path(f"/proc/{c}/cmdline").read_bytes().split(b"\0") for c in children]
    assert sum(b"core" in argv for argv in names) == WORKERS
    assert sum(b"facade" in argv for argv in names) == WORKERS - 1
    assert send(service, "198.51.100.1", "/before-stop") == 200
    assert service.stop() == 0
    for child in children:
        with pytest.raises(ProcessLookupError):
            os.kill(child, 0)
    log = service.log.read_text()
    stopped = [m.start() for m in re.finditer("façade stopped", log)]
    cores = [m.start() for m in re.finditer("core stopping", log)]
    assert len(stopped) == WORKERS
    assert len(cores) == WORKERS
    assert max(stopped) < min(cores)
    named = {json.loads(line).get("process") for line in log.splitlines() if line.startswith("{")}
    assert {"facade-0", "facade-1", "core-0", "core-1"} <= named  # each line says whose it is
