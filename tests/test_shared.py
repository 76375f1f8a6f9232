"""`Shared`: one computation for every caller that asks while it runs, kept while nothing was
written, and going on when the caller that started it stops waiting."""

from __future__ import annotations

import asyncio

import pytest
from prisme_core.adapters.shared import Shared


class Counting:
    def __init__(self) -> None:
        self.runs = 0
        self.release = asyncio.Event()

    async def compute(self) -> int:
        self.runs += 1
        await self.release.wait()
        return 42


async def test_callers_asking_while_it_runs_share_it() -> None:
    shared, counting = Shared(writes=None), Counting()
    callers = [asyncio.create_task(shared.get("k", counting.compute)) for _ in range(5)]
    await asyncio.sleep(0)
    counting.release.set()
    assert await asyncio.gather(*callers) == [42] * 5
    assert counting.runs == 1
    assert await shared.get("k", counting.compute) == 42
    assert counting.runs == 2  # without a write count, a finished answer is not kept


async def test_it_goes_on_past_a_callers_deadline_for_the_next_caller() -> None:
    shared, counting = Shared(writes=lambda: 0), Counting()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await shared.get("k", counting.compute)
    counting.release.set()
    assert await shared.get("k", counting.compute) == 42
    assert counting.runs == 1


async def test_a_kept_answer_lasts_while_nothing_is_written() -> None:
    written = [0]
    shared, counting = Shared(writes=lambda: written[0]), Counting()
    counting.release.set()
    assert await shared.get("k", counting.compute) == 42
    assert await shared.get("k", counting.compute) == 42
    assert counting.runs == 1
    written[0] += 1
    assert await shared.get("k", counting.compute) == 42
    assert counting.runs == 2
    assert await shared.get("other", counting.compute) == 42
    assert counting.runs == 3


async def test_a_failure_is_reported_to_its_callers_and_not_kept() -> None:
    shared, calls = Shared(writes=lambda: 0), [0]

    async def failing() -> int:
        calls[0] += 1
        raise RuntimeError("store down")

    for _ in range(2):
        with pytest.raises(RuntimeError, match="store down"):
            await shared.get("k", failing)
    assert calls[0] == 2
