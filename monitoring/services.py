"""The registry of monitored services: definitions validated at the edge, and their CRUD."""

from __future__ import annotations

import tomllib
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from starlette.requests import Request
from starlette.responses import Response

import sql
from alerts.rules import BODY_LIMIT, require_channels
from core.db import Resource, connection
from core.errors import NotFound, ValidationFailed
from core.http import JSON, json_body

Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2000, pattern=r"^https?://\S+$")]


class HttpCheck(msgspec.Struct, tag="http", tag_field="kind", forbid_unknown_fields=True):
    url: Url
    method: Literal["GET", "HEAD", "POST"] = "GET"
    expect_status: Annotated[
        list[Annotated[int, msgspec.Meta(ge=100, le=599)]], msgspec.Meta(min_length=2, max_length=2)
    ] = msgspec.field(default_factory=lambda: [200, 299])
    body_contains: Annotated[str, msgspec.Meta(max_length=1000)] | None = None


class TcpCheck(msgspec.Struct, tag="tcp", tag_field="kind", forbid_unknown_fields=True):
    host: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    port: Port


class PostgresCheck(msgspec.Struct, tag="postgres", tag_field="kind", forbid_unknown_fields=True):
    dsn: Annotated[
        str, msgspec.Meta(min_length=1, max_length=2000, pattern=r"^postgres(ql)?://\S+$")
    ]


class RedisCheck(msgspec.Struct, tag="redis", tag_field="kind", forbid_unknown_fields=True):
    # Plain redis:// only: the check speaks RESP over TCP, not TLS.
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2000, pattern=r"^redis://\S+$")]


class CustomCheck(msgspec.Struct, tag="custom", tag_field="kind", forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


Check = HttpCheck | TcpCheck | PostgresCheck | RedisCheck | CustomCheck


class ServiceIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")]
    service_type: Literal["api", "database", "cache", "external"]
    check: Check
    # At least twice SCHEDULE_HEALTH_S (15 s), or a healthy service could look unknown.
    interval_seconds: Annotated[int, msgspec.Meta(ge=30, le=86400)] = 60
    timeout_ms: Annotated[int, msgspec.Meta(ge=10, le=60000)] = 2000
    degraded_ms: Annotated[int, msgspec.Meta(ge=1, le=60000)] = 500
    sla_target: Annotated[float, msgspec.Meta(gt=0, le=100)] = 99.9
    channels: list[Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]] = []
    enabled: bool = True


_service = msgspec.json.Decoder(ServiceIn)


def present(row: asyncpg.Record) -> dict[str, Any]:
    body = dict(row)
    spec = msgspec.json.decode(body.pop("check_spec"))
    if spec.get("kind") == "postgres" and spec.get("dsn"):
        spec["dsn"] = "********"  # credentials are not shown again
    body["check"] = spec
    return body


def _columns(service: ServiceIn) -> tuple[Any, ...]:
    if service.timeout_ms <= service.degraded_ms:
        raise ValidationFailed.of("timeout_ms", "must be above degraded_ms")
    check = service.check
    if isinstance(check, HttpCheck):
        if check.expect_status[0] > check.expect_status[1]:
            raise ValidationFailed.of("check.expect_status", "expected [low, high]")
        if check.method == "HEAD" and check.body_contains:
            raise ValidationFailed.of("check.body_contains", "a HEAD answer has no body")
    return (
        service.name,
        service.service_type,
        msgspec.json.encode(service.check).decode(),
        service.interval_seconds,
        service.timeout_ms,
        service.degraded_ms,
        service.sla_target,
        service.channels,
        service.enabled,
    )


async def by_name(conn: asyncpg.Connection, name: str) -> dict[str, Any]:
    rows = await conn.fetch(sql.query("services_health"), name)
    if not rows:
        raise NotFound(f"No service named {name!r} is monitored.")
    return present(rows[0])


SERVICES = Resource(
    taken="A service with that name is monitored already.",
    missing="No such service (built-in services cannot be deleted).",
)


async def create(request: Request) -> JSON:
    service: ServiceIn = await json_body(request, _service, BODY_LIMIT)
    columns = _columns(service)
    async with connection(request.app.state.pool) as conn:
        await require_channels(conn, service.channels)
        await SERVICES.save(conn, "service_insert", *columns)
        return JSON(await by_name(conn, service.name), status_code=201)


async def replace(request: Request) -> JSON:
    service: ServiceIn = await json_body(request, _service, BODY_LIMIT)
    columns = _columns(service)
    async with connection(request.app.state.pool) as conn:
        current = await by_name(conn, request.path_params["name"])
        await require_channels(conn, service.channels)
        await SERVICES.save(conn, "service_update", current["id"], *columns)
        return JSON(await by_name(conn, service.name))


async def remove(request: Request) -> Response:
    async with connection(request.app.state.pool) as conn:
        current = await by_name(conn, request.path_params["name"])
        await SERVICES.save(conn, "service_delete", current["id"])
    return Response(status_code=204)


async def listing(request: Request) -> JSON:
    async with connection(request.app.state.pool) as conn:
        rows = await conn.fetch(sql.query("services_health"), None)
    return JSON({"services": [present(row) for row in rows]})


async def one(request: Request) -> JSON:
    async with connection(request.app.state.pool) as conn:
        return JSON(await by_name(conn, request.path_params["name"]))


class ServicesFileError(ValueError):
    """The services file cannot be used; the message names the entry and the field."""


def read_services_file(path: str) -> list[ServiceIn]:
    """Services from a TOML file: a `[[services]]` table per service, fields as in the API."""
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ServicesFileError(f"SERVICES_FILE {path}: {exc}") from None
    entries = document.get("services", [])
    if not isinstance(entries, list):
        raise ServicesFileError(f"SERVICES_FILE {path}: `services` must be an array of tables")
    services = []
    for index, entry in enumerate(entries):
        try:
            service = msgspec.convert(entry, ServiceIn)
            _columns(service)
        except msgspec.ValidationError as exc:
            raise ServicesFileError(f"SERVICES_FILE {path}: services[{index}]: {exc}") from None
        except ValidationFailed as exc:
            raise ServicesFileError(
                f"SERVICES_FILE {path}: services[{index}]: {exc.message}"
            ) from None
        services.append(service)
    return services


async def load_services_file(pool: asyncpg.Pool, path: str) -> int:
    services = read_services_file(path)
    async with connection(pool) as conn, conn.transaction():
        for service in services:
            await require_channels(conn, service.channels)
            await conn.fetchval(sql.query("service_upsert"), *_columns(service))
    return len(services)
