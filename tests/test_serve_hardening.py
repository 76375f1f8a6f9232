"""`prisme serve` under the hardening rules (DESIGN §10): large untrusted gRPC fields leave the
core's memory and healthcheck alone, an IPv6 core address works, and a signal to the
terminal's process group reaches only `serve`, which stops its children in order."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from prisme.v1 import event_service_pb2 as pb
from prisme.v1 import event_service_pb2_grpc as pb_grpc

from tests.service import PRISME, Service, _healthy, free_port, service_env, start_service
from tests.test_cli import pageview


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _core_pid(service: Service) -> int:
    for child in _children(service.process.pid):
        if b"core" in Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0"):
            return child
    raise AssertionError("no core process")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[Service, int]]:
    grpc_port = free_port()
    served = start_service(
        tmp_path / "serve.log",
        PRISME_DATA_DIR=str(tmp_path / "data"),
        PRISME_GRPC_HOSTPORT=f"127.0.0.1:{grpc_port}",
    )
    yield served, grpc_port
    served.kill()


def _health_ms(base: str) -> float:
    started = time.monotonic()
    with urllib.request.urlopen(f"{base}/api/v1/healthcheck", timeout=10) as response:
        assert response.status == 200
    return (time.monotonic() - started) * 1000


async def _flood(served: Service, grpc_port: int) -> tuple[float, float, float, list[object]]:
    """20 concurrent untrusted page views with a 2 MB page URL and user agent each: the core's
    RSS before and after (MB), the healthcheck's time meanwhile (ms), and the answers."""
    core = _core_pid(served)
    big = "x" * 2_000_000
    context = pb.ClientContext(
        origin="http://localhost", page_url="http://localhost/" + big, user_agent=big
    )
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{grpc_port}", options=[("grpc.max_send_message_length", 8 << 20)]
    ) as channel:
        stub = pb_grpc.EventServiceStub(channel)
        await stub.CheckHealth(pb.CheckHealthRequest())
        before = _rss_mb(core)
        calls = [stub.SendPageView(pb.SendPageViewRequest(context=context)) for _ in range(20)]
        flood = asyncio.gather(*calls, return_exceptions=True)
        health_ms = await asyncio.to_thread(_health_ms, served.base)
        answers = await flood
    return before, _rss_mb(core), health_ms, list(answers)


@pytest.mark.timeout(120)
async def test_large_untrusted_fields_are_refused_and_leave_health_alone(
    service: tuple[Service, int],
) -> None:
    _, _, health_ms, answers = await _flood(*service)
    assert all(isinstance(a, grpc.aio.AioRpcError) for a in answers)
    codes = {a.code() for a in answers if isinstance(a, grpc.aio.AioRpcError)}
    assert codes <= {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}
    # Alone it answers in 35-130 ms here; within the full suite on 2 shared cores, up to
    # 240 ms was seen. A core that parsed the 80 MB in Python would take seconds.
    assert health_ms < 500


@pytest.mark.timeout(120)
async def test_large_untrusted_fields_leave_the_cores_memory_alone(
    service: tuple[Service, int],
) -> None:
    before, after, _, _ = await _flood(*service)
    assert after - before < 50, (before, after)


@pytest.mark.timeout(90)
def test_serve_dials_an_ipv6_core_address(tmp_path: Path) -> None:
    served = start_service(
        tmp_path / "serve.log",
        PRISME_DATA_DIR=str(tmp_path / "data"),
        PRISME_GRPC_HOSTPORT="[::1]:0",
    )
    try:
        assert pageview(served, "http://localhost/over-ipv6") == 200
        assert served.stop() == 0
    finally:
        if served.process.poll() is None:
            served.kill()


@pytest.mark.timeout(90)
def test_a_signal_to_the_group_reaches_only_serve_which_stops_its_children(
    tmp_path: Path,
) -> None:
    port = free_port()
    env = service_env(PRISME_PORT=str(port), PRISME_DATA_DIR=str(tmp_path / "data"))
    with (tmp_path / "serve.log").open("w") as log:
        process = subprocess.Popen(  # its own group, as a terminal's foreground job
            [PRISME, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT, process_group=0
        )
    served = Service(process, f"http://127.0.0.1:{port}", tmp_path / "serve.log")  # type: ignore[arg-type]
    try:
        deadline = time.monotonic() + 30
        while not _healthy(port):
            assert process.poll() is None, served.log.read_text()
            assert time.monotonic() < deadline, served.log.read_text()
            time.sleep(0.1)
        children = _children(process.pid)
        assert len(children) == 2  # the core and the embedded store
        assert all(os.getpgid(child) != os.getpgid(process.pid) for child in children)
        assert pageview(served, "http://localhost/before-ctrl-c") == 200
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C
        assert process.wait(timeout=30) == 0, served.log.read_text()
        for child in children:
            with pytest.raises(ProcessLookupError):
                os.kill(child, 0)
        text = served.log.read_text()
        assert text.index("façade stopped") < text.index("core stopping")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
