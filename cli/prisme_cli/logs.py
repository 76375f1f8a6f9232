"""JSON-lines logging for `prisme serve`: one object per line with time, level, logger,
message, the request id of the call being handled (façade or core), and a record's ``fields``.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from prisme_core.request_id import RequestIdFilter as CoreRequestIdFilter
from prisme_http.request_id import RequestIdFilter as FacadeRequestIdFilter


class JsonLinesFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if (request_id := getattr(record, "request_id", None)) is not None:
            line["request_id"] = request_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonLinesFormatter())
    handler.addFilter(FacadeRequestIdFilter())
    handler.addFilter(CoreRequestIdFilter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
