"""The JSON-lines log format, and access-log lines handed over in batches."""

from __future__ import annotations

import json
import logging

import pytest
from prisme_cli.logs import JsonLinesFormatter
from prisme_http.access_log import AccessLog

from tests.support import until


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("prisme.test", logging.WARNING, __file__, 1, message, (), None)
    record.__dict__.update(extra)
    record.created = 1_795_000_000.25
    return record


def test_a_record_is_one_json_line_with_its_fields() -> None:
    line = JsonLinesFormatter().format(_record("hi", request_id="r1", fields={"n": 1}))
    assert json.loads(line) == {
        "time": "2026-11-18T11:06:40.250+00:00",
        "level": "warning",
        "logger": "prisme.test",
        "message": "hi",
        "request_id": "r1",
        "n": 1,
    }


def test_any_field_is_written_whatever_its_type() -> None:
    fields = {"big": 2**70, "other": object(), 3: "three", "text": "café\n"}
    line = json.loads(JsonLinesFormatter().format(_record("hi", fields=fields)))
    assert (line["big"], line["3"], line["text"]) == (2**70, "three", "café\n")
    assert line["other"].startswith("<object object")
    assert "\n" not in JsonLinesFormatter().format(_record("hi", fields=fields))


def test_each_line_names_its_process_when_it_has_a_name() -> None:
    named = JsonLinesFormatter("core-1")
    assert json.loads(named.format(_record("hi")))["process"] == "core-1"
    lines = named.format(_record("requests", access_lines=[{"time": 1.0, "status": 200}]))
    assert json.loads(lines)["process"] == "core-1"
    assert "process" not in json.loads(JsonLinesFormatter().format(_record("hi")))


def test_a_batch_of_access_lines_is_one_json_line_each() -> None:
    lines = [
        {"time": 1_795_000_000.5, "request_id": "a", "status": 200},
        {"time": 1_795_000_001.0, "request_id": None, "status": 404},
    ]
    text = JsonLinesFormatter().format(_record("requests", access_lines=lines))
    assert [json.loads(line) for line in text.split("\n")] == [
        {"time": "2026-11-18T11:06:40.500+00:00", "level": "info", "logger": "prisme.test",
         "message": "request", "request_id": "a", "status": 200},
        {"time": "2026-11-18T11:06:41.000+00:00", "level": "info", "logger": "prisme.test",
         "message": "request", "status": 404},
    ]  # fmt: skip


async def test_access_lines_are_handed_over_within_the_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="prisme.access")
    access = AccessLog(interval=0.1, max_lines=3)
    access.add({"status": 200})
    access.add({"status": 201})
    assert not caplog.records  # gathered, not yet handed over
    await until(lambda: caplog.records, within=0.5, what="the batch is handed over")
    [batch] = caplog.records
    assert [line["status"] for line in batch.access_lines] == [200, 201]  # type: ignore[attr-defined]
    for status in (1, 2, 3):
        access.add({"status": status})
    assert len(caplog.records) == 2  # a full batch goes at once
    access.flush()
    assert len(caplog.records) == 2  # nothing left to hand over


def test_access_lines_follow_the_logger_level() -> None:
    logger = logging.getLogger("prisme.test.quiet")
    logger.setLevel(logging.WARNING)
    assert not AccessLog(logger).enabled()
    logger.setLevel(logging.INFO)
    assert AccessLog(logger).enabled()
