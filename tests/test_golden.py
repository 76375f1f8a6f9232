"""Replays `tests/golden/pageviews.jsonl` end to end: HTTP façade → gRPC core → real store.

Each line is a documented case: requests with their expected status (and error), then the
exact ``pageviews`` and ``sessions`` documents expected, in order. Values that cannot be known
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

GOLDEN = Path(__file__).parent / "golden" / "pageviews.jsonl"
CASES = [json.loads(line) for line in GOLDEN.read_text().splitlines() if line.strip()]
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
        response = await http.post("/api/v1/events/pageviews", headers=step["headers"])
        assert response.status == step["status"], f"request {number}: {await response.text()}"
        if "error" in step:
            assert (await response.json())["error"] == step["error"], f"request {number}"
    await core.pipeline.close()  # written-behind session progress reaches the store
    bindings: dict[str, Any] = {}
    for collection, order in (("pageviews", "timestamp"), ("sessions", "entry_timestamp")):
        stored = (
            await mongo[collection].find({}, {"_id": 0}).sort([(order, 1), ("_id", 1)]).to_list()
        )
        assert len(stored) == len(case[collection]), collection
        for index, (expected, actual) in enumerate(zip(case[collection], stored, strict=True)):
            assert_matches(expected, actual, bindings, f"{collection}[{index}]")
