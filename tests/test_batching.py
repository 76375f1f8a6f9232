"""`GroupCommit` and `RecentEvents` on their own: batching, back-pressure, failure, give-up,
drain; retries of one event id."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import pytest
from prisme_core.batching import GroupCommit
from prisme_core.errors import StoreUnavailable
from prisme_core.idempotency import RecentEvents

from tests.support import until


class Recorder:
    """A store double: each write takes ``delay`` (the store's latency), and waits while
    ``gate`` is closed."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.delay = delay
        self.fail = fail
        self.writing = asyncio.Event()
        """Set once a write began."""
        self.gate = asyncio.Event()
        self.gate.set()

    async def write(self, items: Sequence[int]) -> None:
        self.writing.set()
        await self.gate.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise StoreUnavailable("down")
        self.batches.append(list(items))


async def _commit(recorder: Recorder, **options: float) -> GroupCommit[int]:
    commit = GroupCommit(
        "test",
        recorder.write,
        max_size=int(options.get("max_size", 10)),
        max_delay=options.get("max_delay", 0.01),
        max_pending=int(options.get("max_pending", 100)),
    )
    commit.start()
    return commit


async def test_concurrent_writes_share_batches() -> None:
    recorder = Recorder(delay=0.01)
    commit = await _commit(recorder, max_size=10)
    await asyncio.gather(*(commit.write(i) for i in range(25)))
    await commit.close()
    assert sorted(i for batch in recorder.batches for i in batch) == list(range(25))
    assert max(len(batch) for batch in recorder.batches) == 10
    assert len(recorder.batches) <= 4


async def test_a_batch_takes_everything_queued_while_the_store_was_busy() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    commit = await _commit(recorder, max_size=100, max_delay=0.0)
    ahead = commit.submit(0)  # its batch is in flight while the others queue up
    await recorder.writing.wait()
    queued = [commit.submit(i) for i in range(1, 45)]
    recorder.gate.set()
    await asyncio.gather(ahead, *queued)
    await commit.close()
    assert recorder.batches == [[0], list(range(1, 45))]


async def test_a_lone_write_waits_at_most_the_delay() -> None:
    commit = await _commit(Recorder(), max_delay=0.05)
    started = asyncio.get_running_loop().time()
    await commit.write(1)
    assert asyncio.get_running_loop().time() - started < 0.5
    await commit.close()


async def test_failure_reaches_every_writer_of_the_batch() -> None:
    commit = await _commit(Recorder(fail=True))
    results = await asyncio.gather(*(commit.write(i) for i in range(5)), return_exceptions=True)
    assert all(isinstance(result, StoreUnavailable) for result in results)
    await commit.close()


async def test_full_queue_refuses_at_once() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    commit = await _commit(recorder, max_size=2, max_pending=4)
    in_flight = [commit.submit(i) for i in range(2)]
    await recorder.writing.wait()  # that batch is at the store, the queue is empty
    queued = [commit.submit(i) for i in range(2, 6)]
    with pytest.raises(StoreUnavailable, match="full"):
        commit.submit(99)
    recorder.gate.set()
    await asyncio.gather(*in_flight, *queued)
    await commit.close()


async def test_a_caller_that_gives_up_is_not_written_later() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    commit = await _commit(recorder, max_size=1)
    in_flight = commit.submit(1)
    await recorder.writing.wait()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await commit.write(2)  # queued behind the held batch, then abandoned
    recorder.gate.set()
    await in_flight
    await commit.close()
    assert recorder.batches == [[1]]


async def test_close_writes_everything_queued() -> None:
    recorder = Recorder(delay=0.01)
    commit = await _commit(recorder, max_size=3, max_delay=10)
    pending = [commit.submit(i) for i in range(7)]
    await commit.close()
    await asyncio.gather(*pending)
    assert sorted(i for batch in recorder.batches for i in batch) == list(range(7))
    with pytest.raises(StoreUnavailable):
        await commit.write(8)


async def test_retries_of_an_event_id_run_once() -> None:
    recent, runs, stored = RecentEvents(), [], asyncio.Event()

    async def attempt() -> None:
        runs.append(1)
        await stored.wait()

    event_id = uuid.uuid4()
    retries = [asyncio.create_task(recent.once("pageview", event_id, attempt)) for _ in range(5)]
    await until(lambda: runs, what="the first attempt runs")
    stored.set()  # the others were started meanwhile: they wait for it
    await asyncio.gather(*retries)
    await recent.once("pageview", event_id, attempt)
    assert len(runs) == 1
    await recent.once("pageview", uuid.uuid4(), attempt)
    await recent.once("pageview", None, attempt)
    await recent.once("pageview", None, attempt)
    assert len(runs) == 4


async def test_a_failed_attempt_is_retried_for_real() -> None:
    recent, runs = RecentEvents(), []

    async def flaky() -> None:
        runs.append(1)
        if len(runs) == 1:
            raise StoreUnavailable("down")

    event_id = uuid.uuid4()
    with pytest.raises(StoreUnavailable):
        await recent.once("pageview", event_id, flaky)
    await recent.once("pageview", event_id, flaky)
    await recent.once("pageview", event_id, flaky)
    assert len(runs) == 2


async def test_recent_events_are_bounded() -> None:
    recent, runs = RecentEvents(capacity=10), []

    async def attempt() -> None:
        runs.append(1)

    ids = [uuid.uuid4() for _ in range(100)]
    for event_id in ids:
        await recent.once("pageview", event_id, attempt)
    await recent.once("pageview", ids[-1], attempt)  # still remembered
    await recent.once("pageview", ids[0], attempt)  # long forgotten: runs again (the store dedupes)
    assert len(runs) == 101
