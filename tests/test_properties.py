"""Custom event properties: the limits at their edges, and Hypothesis properties, both on the
pure parser and through the real façade, core and store."""

from __future__ import annotations

import json
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prisme_core.errors import InvalidInput, Reason
from prisme_core.properties import MAX_DEPTH, MAX_KEY_LENGTH, MAX_KEYS, parse_properties
from pymongo.asynchronous.database import AsyncDatabase

from tests.support import Document, HttpClient
from tests.transports import Custom, Visit, send_custom_http, send_http

JSON = "application/json"


def _deep(depth: int) -> bytes:
    return ('{"a":' * (depth - 1) + '{"a":1}' + "}" * (depth - 1)).encode()


def _parse(body: bytes) -> dict[str, Any]:
    return parse_properties(JSON, body, 1 << 20)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(_deep(MAX_DEPTH + 1), Reason.PROPERTIES_TOO_DEEP, id="depth"),
        pytest.param(json.dumps({str(i): i for i in range(MAX_KEYS + 1)}).encode(),
                     Reason.TOO_MANY_PROPERTIES, id="keys"),
        pytest.param(json.dumps({"a": [{str(i): i} for i in range(MAX_KEYS)]}).encode(),
                     Reason.TOO_MANY_PROPERTIES, id="nested-keys-count"),
        pytest.param(json.dumps({"k" * (MAX_KEY_LENGTH + 1): 1}).encode(),
                     Reason.INVALID_PROPERTY_KEY, id="key-length"),
    ],
)  # fmt: skip
def test_one_past_each_limit_is_refused(body: bytes, reason: Reason) -> None:
    with pytest.raises(InvalidInput) as excinfo:
        _parse(body)
    assert excinfo.value.reason == reason


def test_each_limit_itself_is_allowed() -> None:
    assert _parse(_deep(MAX_DEPTH))
    assert len(_parse(json.dumps({str(i): i for i in range(MAX_KEYS)}).encode())) == MAX_KEYS
    assert _parse(json.dumps({"k" * MAX_KEY_LENGTH: 1}).encode())


def test_body_size_counts_bytes() -> None:
    body = json.dumps({"a": "é" * 10}).encode()
    with pytest.raises(InvalidInput) as excinfo:
        parse_properties(JSON, body, len(body) - 1)
    assert excinfo.value.reason == Reason.BODY_TOO_LARGE
    assert parse_properties(JSON, body, len(body)) == {"a": "é" * 10}


keys = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters=".\x00"),
    min_size=1,
    max_size=20,
).filter(lambda key: not key.startswith("$"))
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=20,
)
objects = st.dictionaries(keys, values, max_size=8)


@given(objects)
def test_valid_objects_parse_to_themselves(value: dict[str, Any]) -> None:
    assert _parse(json.dumps(value).encode()) == value


@given(st.binary(max_size=200), st.sampled_from([JSON, "text/plain", "", "application/json; x"]))
def test_any_body_parses_or_is_refused_with_a_reason(body: bytes, content_type: str) -> None:
    try:
        parse_properties(content_type, body, 1 << 16)
    except InvalidInput as error:
        reason: Reason | None = error.reason
    else:
        reason = None
    assert reason is None or reason in set(Reason)


E2E = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
async def session(http: HttpClient) -> None:
    assert (await send_http(http, Visit())).ok


@E2E
@given(value=objects, name=st.text(alphabet=string.ascii_letters, min_size=1, max_size=12))
@pytest.mark.usefixtures("session")
async def test_valid_objects_are_stored_as_sent(
    http: HttpClient, mongo: AsyncDatabase[Document], value: dict[str, Any], name: str
) -> None:
    await mongo.events_custom.delete_many({})
    answer = await send_custom_http(http, Custom(name, json.dumps(value).encode()))
    assert answer.ok, answer
    [stored] = await mongo.events_custom.find({}).to_list()
    assert stored["properties"] == value
    assert stored["name"] == name


@E2E
@given(
    body=st.binary(max_size=300)
    | st.text(max_size=100).map(str.encode)
    | values.map(lambda v: json.dumps(v).encode()),
    content_type=st.sampled_from([JSON, "text/plain", "application/json; charset=utf-8", ""]),
    name=st.text(max_size=20),
)
@pytest.mark.usefixtures("session")
async def test_any_body_gets_200_or_a_4xx_never_a_5xx(
    http: HttpClient, body: bytes, content_type: str, name: str
) -> None:
    quoted = "".join(c if c.isalnum() else f"%{ord(c) & 0xFF:02X}" for c in name) or "x"
    answer = await send_custom_http(http, Custom(quoted, body, content_type))
    assert answer.http_status is not None
    assert answer.http_status < 500, answer
