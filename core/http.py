"""Small HTTP helpers shared by the routes: msgspec JSON responses and bounded body reads."""

from __future__ import annotations

import asyncio
import re
import zlib
from collections.abc import Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.errors import (
    BadRequest,
    BodyTimeout,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
    field_error,
)

_encoder = msgspec.json.Encoder()


class Endpoint(Route):
    """One operation of the API: method, path, handler and the API-key scope it needs.

    Every route of the app is one of these, declared in the routes module of its package
    (ingest/routes.py, query/routes.py, ...; service/routes.py assembles them): the route table
    and the scope table are the same list, which service/front.py matches each request against
    before routing. `scope` None: public. `optional`: the scope is asked for only when
    METRICS_REQUIRE_KEY is set (GET /metrics). `budget`: the seconds of database work a request
    may take, from the settings (core/deadlines.py; default STATEMENT_TIMEOUT_MS + margin)."""

    def __init__(
        self,
        method: str,
        path: str,
        endpoint: Any,
        scope: str | None,
        *,
        optional: bool = False,
        budget: Callable[[Any], float] | None = None,
    ) -> None:
        super().__init__(path, endpoint, methods=[method])
        self.method = method
        self.scope = scope
        self.optional = optional
        self.budget = budget
        self.literal = path.split("{", 1)[0]  # what every path it matches starts with
        self.segments = path.strip("/").split("/")


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _encoder.encode(content)


def media_type(request: Request, default: str = "application/json") -> str:
    return request.headers.get("content-type", default).split(";")[0].strip().lower()


def require_media_type(request: Request, *accepted: str) -> str:
    found = media_type(request)
    if found not in accepted:
        raise UnsupportedMediaType(f"Send the body as {' or '.join(accepted)}, not {found}.")
    return found


def declared_length(request: Request) -> int | None:
    """The body size the client declares (Content-Length), None when absent or not a number."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit():
        return int(declared)
    return None


async def read_body(request: Request, limit: int, *, kept: str | None = None) -> bytes:
    """The request body, decompressed if gzip, refused with 413 past `limit` bytes either way,
    and with 408 when it has not all arrived within INGEST_BODY_TIMEOUT_S. A body in the
    encoding `kept` (remote write's snappy) is returned as it came, for the caller to
    decompress.

    Decompression is bounded: a small body that would inflate past the limit (a gzip bomb) is
    refused after producing at most `limit` + 1 bytes.
    """
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip") and encoding != kept:
        raise UnsupportedMediaType(f"Content-Encoding {encoding} is not supported; use gzip.")
    declared = declared_length(request)
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"The body is {declared} bytes; the limit is {limit}.")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding == "gzip" else None
    chunks: list[bytes] = []
    received = size = 0
    seconds = _body_timeout_s(request)
    try:
        async with asyncio.timeout(seconds):
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit:
                    raise PayloadTooLarge(f"The body is over the limit of {limit} bytes.")
                if inflater is not None:
                    chunk = _inflate(inflater, chunk, limit - size)
                size += len(chunk)
                chunks.append(chunk)
    except TimeoutError:
        raise BodyTimeout(seconds) from None
    if inflater is not None:
        if not inflater.eof:
            raise BadRequest("The gzip body is truncated.")
        if inflater.unused_data:
            raise BadRequest("The gzip body has data after its end.")
    return b"".join(chunks)


def _body_timeout_s(request: Request) -> float:
    settings = getattr(request.app.state, "settings", None)
    return float(settings.ingest.body_timeout_s) if settings is not None else 30.0


def _inflate(inflater: Any, data: bytes, room: int) -> bytes:
    try:
        out = inflater.decompress(data, room + 1)
    except zlib.error as exc:
        raise BadRequest(f"The body is not valid gzip: {exc}") from None
    if len(out) > room or inflater.unconsumed_tail:
        raise PayloadTooLarge("The body is over the size limit once decompressed.")
    return bytes(out)


_PATH = re.compile(r"^(?P<reason>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_NAMED_FIELD = re.compile(r"(?:required|unknown) field `([^`]+)`")


def describe(error: msgspec.ValidationError, index: int | None = None) -> dict[str, Any]:
    """A msgspec validation error as {index?, field, reason}: `$.tags.x` -> 'tags.x'."""
    match = _PATH.match(str(error))
    assert match is not None  # the pattern matches any string
    reason, path = match.group("reason"), match.group("path") or ""
    field = path.replace("[...]", "").lstrip(".")
    if reason == "Number out of range":
        reason = "must be a finite number (at most 1.8e308 in magnitude)"
    named = _NAMED_FIELD.search(reason)
    if named:
        field = f"{field}.{named.group(1)}" if field else named.group(1)
    return field_error(field or "body", reason, index)


def decode(body: bytes, decoder: msgspec.json.Decoder[Any]) -> Any:
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        detail = describe(exc)
        raise ValidationFailed(f"{detail['field']}: {detail['reason']}", details=[detail]) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"The body is not valid JSON: {exc}") from None


async def json_body(request: Request, decoder: msgspec.json.Decoder[Any], limit: int) -> Any:
    """The request's JSON body (at most `limit` bytes) decoded into the decoder's struct: 415
    for another media type, 413 past the limit, 400 for broken JSON, 422 naming the field."""
    require_media_type(request, "application/json")
    return decode(await read_body(request, limit), decoder)
