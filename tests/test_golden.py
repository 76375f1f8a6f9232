"""Replays `tests/golden/*.jsonl` end to end: HTTP façade → gRPC core → real store.

Each line is a documented case: requests (to the page view route unless a ``path`` is given,
with an optional JSON ``body``) with their expected status (and error), then the exact
documents expected in each collection the case names (``pageviews``, ``sessions``,
``events_custom``), in order. Values that cannot be known
in advance are placeholders: ``<timestamp>`` (a UTC datetime), and labelled ones such as
``<session-uuid:1>`` that must hold one value wherever the label recurs and differ between
labels.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prisme_core.server import CoreServer
from pymongo.asynchronous.database import AsyncDatabase

from tests.support import Document, HttpClient

GOLDEN = Path(__file__).parent / "golden"
CASES = [
    json.loads(line)
    for path in sorted(GOLDEN.glob("*.jsonl"))
    for line in path.read_text().splitlines()
    if line.strip()
]
COLLECTIONS = {
    "pageviews": "timestamp",
    "sessions": "entry_timestamp",
    "events_custom": "timestamp",
}
LABEL = re.compile(r"<(session-uuid|visitor-id|device-id):(\w+)>")
KINDS: dict[str, Callable[[Any], bool]] = {
    "session-uuid": lambda v: isinstance(v, uuid.UUID) and v.version == 7,
    "visitor-id": lambda v: isinstance(v, str) and bool(re.fullmatch(r"prisme_[0-9A-F]{16}", v)),
    "device-id": lambda v: isinstance(v, str) and bool(re.fullmatch(r"[0-9A-F]{16}", v)),
}


def assert_matches(expected: Any, actual: Any, bindings: dict[str, Any], where: str) -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict), where
        assert set(actual) == set(expected), f"{where}: fields differ"
        for key, value in expected.items():
            assert_matches(value, actual[key], bindings, f"{where}.{key}")
    elif expected == "<timestamp>":
        assert isinstance(actual, datetime), where
        assert actual.utcoffset() == timedelta(0), where
    elif isinstance(expected, str) and (label := LABEL.fullmatch(expected)):
        assert KINDS[label.group(1)](actual), f"{where}: {actual!r} is not a {label.group(1)}"
        others = [v for k, v in bindings.items() if k != expected and k.startswith(f"<{label[1]}:")]
        assert actual not in others, f"{where}: {expected} equals another label's value"
        bound = bindings.setdefault(expected, actual)
        assert bound == actual, f"{where}: {expected} was {bound!r}, now {actual!r}"
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
async def test_golden_case(
    case: dict[str, Any], http: HttpClient, core: CoreServer, mongo: AsyncDatabase[Document]
) -> None:
    for number, step in enumerate(case["requests"]):
        path, body = step.get("path", "/api/v1/events/pageviews"), step.get("body")
        data = None if body is None else body if isinstance(body, str) else json.dumps(body)
        response = await http.post(path, headers=step["headers"], data=data)
        assert response.status == step["status"], f"request {number}: {await response.text()}"
        if "error" in step:
            assert (await response.json())["error"] == step["error"], f"request {number}"
    await core.flush()  # written-behind session progress reaches the store
    bindings: dict[str, Any] = {}
    for collection, order in COLLECTIONS.items():
        if collection not in case:
            continue
        stored = (
            await mongo[collection].find({}, {"_id": 0}).sort([(order, 1), ("_id", 1)]).to_list()
        )
        assert len(stored) == len(case[collection]), collection
        for index, (expected, actual) in enumerate(zip(case[collection], stored, strict=True)):
            assert_matches(expected, actual, bindings, f"{collection}[{index}]")
