"""Both boundary tables cover every error type, reason and gRPC code."""

from __future__ import annotations

import grpc
import pytest
from prisme_core import errors
from prisme_core.errors import CoreError, Reason
from prisme_core.status import GRPC_CODES
from prisme_http.status import HTTP_STATUS_BY_CODE, HTTP_STATUS_BY_REASON, error_text, http_status


def _error_types() -> set[type[CoreError]]:
    return {
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, CoreError) and value is not CoreError
    }


def test_every_core_error_type_has_a_grpc_code() -> None:
    assert set(GRPC_CODES) == _error_types()


def test_every_reason_has_an_http_status() -> None:
    assert set(HTTP_STATUS_BY_REASON) == {reason.value for reason in Reason}


def test_every_grpc_code_has_an_http_status() -> None:
    assert set(HTTP_STATUS_BY_CODE) == set(grpc.StatusCode)


@pytest.mark.parametrize(
    ("reason", "status"),
    [
        pytest.param(Reason.ORIGIN_NOT_REGISTERED, 400, id="origin-is-400-as-in-prisme"),
        pytest.param(Reason.INVALID_PAGE_URL, 400, id="url"),
        pytest.param(Reason.RATE_LIMITED, 429, id="rate"),
        pytest.param(Reason.STORE_UNAVAILABLE, 503, id="store"),
    ],
)
def test_reason_decides_before_code(reason: Reason, status: int) -> None:
    assert http_status(grpc.StatusCode.PERMISSION_DENIED, reason) == status


def test_call_without_reason_falls_back_on_code() -> None:
    assert http_status(grpc.StatusCode.UNAVAILABLE, "UNAVAILABLE") == 503
    assert http_status(grpc.StatusCode.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED") == 503


def test_error_text_is_the_reason_in_words() -> None:
    assert error_text("SESSION_NOT_FOUND") == "session not found"
