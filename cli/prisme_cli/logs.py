"""JSON-lines logging for `prisme serve`: one object per line with time, level, logger,
message, the request id of the call being handled (façade or core), and a record's ``fields``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime

import orjson
from prisme_client.request_id import RequestIdFilter
from prisme_core.request_id import REQUEST_ID as CORE_REQUEST_ID
from prisme_http.request_id import REQUEST_ID as FACADE_REQUEST_ID


class JsonLinesFormatter(logging.Formatter):
    def __init__(self, process: str | None = None) -> None:
        super().__init__()
        self._process = {"process": process} if process else {}
        """Which of the service's processes logs (``facade-0``, ``core-1``), as the field every
        line carries: they share one output."""
        self._encoder = json.JSONEncoder(ensure_ascii=False, default=str)
        self._second = -1
        self._second_text = ""

    def _time(self, created: float) -> str:
        """``2026-01-02T03:04:05.678+00:00``, with the text of the second reused within it."""
        second = int(created)
        if second != self._second:
            self._second = second
            self._second_text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._second_text}.{int((created - second) * 1000):03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        lines = getattr(record, "access_lines", None)
        if isinstance(lines, list):  # a batch of access-log lines: one JSON object each
            return "\n".join(self._access_line(record.name, fields) for fields in lines)
        return self._format_one(record)

    def _access_line(self, logger: str, fields: dict[str, object]) -> str:
        created = fields.get("time")
        # "time" comes first, as in every line: the fields' own takes its place, then its text.
        line = {"time": None, "level": "info", "logger": logger, "message": "request",
                **self._process, **fields}  # fmt: skip
        line["time"] = self._time(created if isinstance(created, float) else time.time())
        if None in line.values():
            line = {key: value for key, value in line.items() if value is not None}
        return self._encode(line)

    def _encode(self, line: dict[str, object]) -> str:
        try:  # orjson: a seventh of the standard library's time a line, for the access log
            return orjson.dumps(line, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:  # such as an integer past 64 bits, which the standard library takes
            return self._encoder.encode(line)

    def _format_one(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": self._time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(self._process)
        if (request_id := getattr(record, "request_id", None)) is not None:
            line["request_id"] = request_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return self._encode(line)


def configure_logging(level: int = logging.INFO, process: str | None = None) -> None:
    # Records carry no thread or process names here (the lines do not show them), and each
    # access-log record would otherwise pay for looking them up.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # Every record is written and flushed at once: access-log lines already come in batches
    # (`prisme_http.access_log`), at most one write per half second under load.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonLinesFormatter(process))
    handler.addFilter(RequestIdFilter(FACADE_REQUEST_ID))
    handler.addFilter(RequestIdFilter(CORE_REQUEST_ID))
    logging.basicConfig(level=level, handlers=[handler], force=True)
