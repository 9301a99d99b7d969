"""Small HTTP helpers shared by the routes: msgspec JSON responses and bounded body reads."""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from service.errors import BadRequest, BodyTimeout, PayloadTooLarge, UnsupportedMediaType

_encoder = msgspec.json.Encoder()


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


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, decompressed if gzip, refused with 413 past `limit` bytes either way,
    and with 408 when it has not all arrived within INGEST_BODY_TIMEOUT_S.

    Decompression is bounded: a small body that would inflate past the limit (a gzip bomb) is
    refused after producing at most `limit` + 1 bytes.
    """
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip"):
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
