"""Notification channels: e-mail, Slack incoming webhooks, generic signed webhooks."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import asyncpg
import httpx2
import msgspec
from starlette.requests import Request
from starlette.responses import Response

import sql
from alerts.rules import BODY_LIMIT
from core.db import Resource, connection
from core.errors import NotFound, ValidationFailed
from core.http import JSON, json_body, require_media_type

_EMAIL = re.compile(r"^[^@\s,<>]+@[^@\s,<>]+\.[^@\s,<>]+$")
_URL = re.compile(r"^https?://[^\s]+$")


class ChannelIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    type: Literal["email", "slack", "webhook"]
    to: list[Annotated[str, msgspec.Meta(max_length=320)]] | None = None
    url: Annotated[str, msgspec.Meta(max_length=2000)] | None = None
    secret: Annotated[str, msgspec.Meta(max_length=500)] | None = None
    enabled: bool = True

    def config(self) -> dict[str, Any]:
        if self.type == "email":
            if not self.to:
                raise ValidationFailed.of("to", "an email channel needs at least one address")
            for index, address in enumerate(self.to):
                if not _EMAIL.match(address):
                    raise ValidationFailed.of(
                        f"to[{index}]", f"{address!r} is not an e-mail address"
                    )
            if self.url or self.secret:
                raise ValidationFailed.of("url", "an email channel takes `to` only")
            return {"to": self.to}
        if not self.url or not _URL.match(self.url) or not _parses(self.url):
            raise ValidationFailed.of("url", f"a {self.type} channel needs a valid http(s) URL")
        if self.to:
            raise ValidationFailed.of("to", f"a {self.type} channel takes no `to`")
        if self.type == "slack":
            return {"url": self.url}
        if not self.secret or len(self.secret) < 16:
            raise ValidationFailed.of(
                "secret", "a webhook channel needs a secret of 16 characters or more"
            )
        return {"url": self.url, "secret": self.secret}


_channel = msgspec.json.Decoder(ChannelIn)


def _parses(url: str) -> bool:
    """Whether the HTTP client that will send to it accepts the URL (port, IPv6 brackets...)."""
    try:
        parsed = httpx2.URL(url)
    except Exception:
        return False
    return bool(parsed.host)


def present(row: asyncpg.Record) -> dict[str, Any]:
    body = dict(row)
    config = msgspec.json.decode(row["config"])
    if "secret" in config:
        config["secret"] = "********"  # shown once, never again
    if row["type"] == "slack":  # a Slack webhook URL is itself a credential
        url = httpx2.URL(config["url"])
        config["url"] = f"{url.scheme}://{url.host}/********"
    body["config"] = config
    return body


def channel_id(request: Request) -> int:
    raw = request.path_params["channel_id"]
    if not (raw.isascii() and raw.isdigit()) or int(raw) > 2**31 - 1:
        raise NotFound(f"No channel with id {raw!r}.")
    return int(raw)


async def fetch(conn: asyncpg.Connection, target: int) -> dict[str, Any]:
    rows = await conn.fetch(sql.query("channels_select"), target)
    if not rows:
        raise NotFound(f"No channel with id {target}.")
    return present(rows[0])


CHANNELS = Resource(
    taken="A channel with that name exists already.",
    missing="No such channel.",
)


async def create(request: Request) -> JSON:
    channel: ChannelIn = await json_body(request, _channel, BODY_LIMIT)
    config = msgspec.json.encode(channel.config()).decode()
    async with connection(request.app.state.pool) as conn:
        new_id = await CHANNELS.save(
            conn, "channel_insert", channel.name, channel.type, config, channel.enabled
        )
        return JSON(await fetch(conn, new_id), status_code=201)


async def replace(request: Request) -> JSON:
    require_media_type(request, "application/json")  # 415 before 404, as ever
    target = channel_id(request)
    channel: ChannelIn = await json_body(request, _channel, BODY_LIMIT)
    config = msgspec.json.encode(channel.config()).decode()
    async with connection(request.app.state.pool) as conn:
        await CHANNELS.save(
            conn, "channel_update", target, channel.name, channel.type, config, channel.enabled
        )
        return JSON(await fetch(conn, target))


async def remove(request: Request) -> Response:
    async with connection(request.app.state.pool) as conn:
        await CHANNELS.save(conn, "channel_delete", channel_id(request))
    return Response(status_code=204)


async def listing(request: Request) -> JSON:
    async with connection(request.app.state.pool) as conn:
        rows = await conn.fetch(sql.query("channels_select"), None)
    return JSON({"channels": [present(row) for row in rows]})


async def one(request: Request) -> JSON:
    async with connection(request.app.state.pool) as conn:
        return JSON(await fetch(conn, channel_id(request)))
