"""Soak test: `prisme serve` under steady load for a long time, killed and restarted at random
intervals, with every acknowledged event looked up in the store at the end.

    .venv/bin/python bench/soak.py [MINUTES]

It is the long variant of `tests/test_reliability.py` and uses the same helpers.
"""

from __future__ import annotations

import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prisme_cli.embedded import EmbeddedStore
from pymongo import AsyncMongoClient

from tests.service import Load, start_service

ENV = {
    "PRISME_TRUST_PROXY": "true",
    "PRISME_RATE_LIMIT_PER_MINUTE": "1000000",
    "PRISME_MONGODB_DATABASE": "soak",
}


async def soak(minutes: float) -> int:
    work = Path(tempfile.mkdtemp(prefix="prisme-soak-"))
    store = EmbeddedStore(work / "store", cache_size="256M")
    store.start()
    acknowledged: set[str] = set()
    rounds, statuses = 0, []
    deadline = time.monotonic() + minutes * 60
    try:
        while time.monotonic() < deadline:
            service = start_service(work / "serve.log", PRISME_MONGODB_URI=store.uri, **ENV)
            load = Load(service.base)
            task = asyncio.create_task(load.run(concurrency=32))
            await asyncio.sleep(random.uniform(5, 20))
            if random.random() < 0.5:
                await asyncio.to_thread(service.kill)
            else:
                await asyncio.to_thread(service.stop)
            load.stopped.set()
            await task
            acknowledged |= load.acknowledged
            statuses += load.statuses
            rounds += 1
        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
            store.uri, uuidRepresentation="standard"
        )
        stored = {str(d["event_id"]) for d in await client.soak.pageviews.find({}).to_list()}
        await client.close()
    finally:
        store.stop()
    lost = acknowledged - stored
    errors = sum(1 for status in statuses if status >= 500)
    print(f"soak: rounds={rounds} acknowledged={len(acknowledged)} lost={len(lost)} 5xx={errors}")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(soak(float(sys.argv[1]) if len(sys.argv) > 1 else 5)))
