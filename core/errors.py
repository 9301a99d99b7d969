"""One exception type per HTTP answer, rendered in one JSON shape.

Every error the API returns looks like::

    {"error": "validation_failed", "message": "...", "details": [...]}

``error`` is a stable machine-readable code, ``message`` a sentence for people, ``details`` a
list of objects (for validation: ``field``, ``reason`` and, in a batch, ``index``).
"""

from __future__ import annotations

from typing import Any, ClassVar


class ApiError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    default_message: ClassVar[str] = "The server failed to handle the request."

    def __init__(
        self,
        message: str | None = None,
        *,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = details or []
        self.headers = headers or {}
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, "details": self.details}


class BadRequest(ApiError):
    status = 400
    code = "bad_request"
    default_message = "The request is malformed."


class NotFound(ApiError):
    status = 404
    code = "not_found"
    default_message = "No such resource."


class Conflict(ApiError):
    status = 409
    code = "conflict"
    default_message = "The request conflicts with the current state."


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"
    default_message = "The request body is too large."


class BodyTimeout(ApiError):
    """The body did not arrive in time: the rest of it may still come, so the connection
    cannot carry another request and is closed."""

    status = 408
    code = "body_timeout"

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"The request body did not arrive within {seconds:g} s (INGEST_BODY_TIMEOUT_S).",
            details=[field_error("body", f"not all received within {seconds:g} s")],
            headers={"Connection": "close"},
        )


class UnsupportedMediaType(ApiError):
    status = 415
    code = "unsupported_media_type"
    default_message = "The request body's content type is not supported."


class ValidationFailed(ApiError):
    status = 422
    code = "validation_failed"
    default_message = "The request did not pass validation."

    @classmethod
    def of(cls, field: str, reason: str) -> ValidationFailed:
        """A refusal naming one field: `field: reason`, with the detail."""
        return cls(f"{field}: {reason}", details=[field_error(field, reason)])

    def for_single_item(self) -> ValidationFailed:
        """The same refusal for a one-item request: no batch index, the field up front."""
        details = [{k: v for k, v in d.items() if k != "index"} for d in self.details]
        message = f"{details[0]['field']}: {details[0]['reason']}" if details else self.message
        return ValidationFailed(message, details=details)


class QueryTimeout(ApiError):
    status = 422
    code = "query_too_expensive"
    default_message = (
        "The query ran longer than the statement timeout; narrow the time range or the tag filters."
    )


class QueryTooLarge(ApiError):
    status = 422
    code = "query_too_expensive"
    default_message = "The query would read too many raw events."


class DatabaseUnavailable(ApiError):
    status = 503
    code = "database_unavailable"
    default_message = "The database cannot be reached; try again later."

    def __init__(self, message: str | None = None, *, retry_after_s: int = 5) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class DatabaseTimeout(DatabaseUnavailable):
    default_message = "The database did not answer in time; try again later."


def field_error(field: str, reason: str, index: int | None = None) -> dict[str, Any]:
    detail: dict[str, Any] = {"field": field, "reason": reason}
    if index is not None:
        detail["index"] = index
    return detail
