"""Configuration, read once from the environment.

Every setting is declared here with its default and help text; tests/core/test_settings.py fails
when one is missing from docs/configuration.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit, urlunsplit

T = TypeVar("T")


class SettingError(ValueError):
    """An environment variable has a value that cannot be used."""


class Secret:
    """A value that must never appear in logs or reprs."""

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __str__(self) -> str:
        return "**********"

    def __bool__(self) -> bool:
        return bool(self._value)


def redact_url(url: str) -> str:
    """The URL with its password replaced, for log lines and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":****@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("expected a positive whole number")
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("expected 0 or a positive whole number")
    return value


def _statsd_addr(raw: str) -> str:
    """`host:port`, or a port alone (on the loopback interface)."""
    host, _, port = raw.rpartition(":")
    _port(port)
    return f"{host or '127.0.0.1'}:{int(port)}"


def _port(raw: str) -> int:
    value = int(raw)
    if not 0 < value < 65536:
        raise ValueError("expected a port number from 1 to 65535")
    return value


@dataclass(frozen=True)
class Setting(Generic[T]):
    name: str
    default: T
    help: str
    parse: Callable[[str], T]


SETTINGS: tuple[Setting[Any], ...] = (
    Setting(
        "DATABASE_URL",
        None,
        "PostgreSQL URL of a database with TimescaleDB. Required by "
        "`make serve`; `make run` and `make test` start a local database when it is unset.",
        str,
    ),
    Setting("HOST", "127.0.0.1", "Address the API server listens on.", str),
    Setting("PORT", 8000, "Port the API server listens on.", _port),
    Setting("DB_POOL_MIN", 2, "Connections the API server's pool keeps open.", _positive_int),
    Setting("DB_POOL_MAX", 10, "Most connections the API server's pool opens.", _positive_int),
    Setting(
        "DB_CONNECT_TIMEOUT_S",
        10,
        "Seconds to wait for a database connection before answering 503.",
        _positive_int,
    ),
    Setting(
        "STATEMENT_TIMEOUT_MS",
        30_000,
        "Longest a query of the API may run; longer ones are cancelled and answered with an error.",
        _positive_int,
    ),
    Setting(
        "BATCH_TRACK_TIMEOUT_S",
        600,
        "Longest POST /batch-track may work on the database before answering 503 (the periods "
        "done so far stay tracked); `python -m jobs track` has no limit.",
        _positive_int,
    ),
    Setting(
        "QUERY_MAX_RAW_ROWS",
        5_000_000,
        "Most raw events an exact=true statistics query or a sub-hour time series may read; "
        "more is refused with 422.",
        _positive_int,
    ),
    Setting("MIGRATE_ON_START", True, "Apply schema migrations when the API server starts.", _bool),
    Setting("LOG_LEVEL", "info", "Log level: debug, info, warning or error.", str),
    Setting(
        "LOG_FORMAT",
        "auto",
        "Log lines as `json` (one object per line, with the request id) or `text`; `auto`: "
        "text on a terminal, JSON otherwise.",
        str,
    ),
    Setting(
        "RUN_SCHEDULER",
        True,
        "Run the periodic jobs (retention, alerts, ...) and the rollup compactor inside the API "
        "server; false when separate `python -m jobs run` processes do it.",
        _bool,
    ),
    Setting(
        "COMPACT_EVERY_MS",
        1000,
        "Milliseconds between rounds of the compactor, which merges what ingest committed into "
        "the rollup tiers (queries see it at once either way). Each round takes the per-metric "
        "deltas (read by whole-metric queries).",
        _positive_int,
    ),
    Setting(
        "COMPACT_SERIES_EVERY_MS",
        10_000,
        "Milliseconds between the compactor's merges of the per-series deltas (a query reads the "
        "pending ones of its own series); less often costs the database less, since a series' "
        "minute row is rewritten at each merge that reaches it.",
        _positive_int,
    ),
    Setting(
        "AUTH_DISABLED",
        False,
        "Serve every request without an API key. For local development only: the server "
        "logs a warning at start.",
        _bool,
    ),
    Setting(
        "AUTH_CACHE_S",
        30,
        "Seconds between reloads of the live API keys each server keeps in memory (and at most "
        "one reload a second on an unknown key): a key revoked on another server stops working "
        "here within this time.",
        _non_negative_int,
    ),
    Setting(
        "METRICS_REQUIRE_KEY",
        False,
        "Serve GET /metrics only with a key having the read scope.",
        _bool,
    ),
    Setting(
        "DASHBOARD_CACHE_S",
        10,
        "Seconds the dashboard and platform trends reuse the figures of the period still open "
        "(computed from raw events); 0 computes them on every request.",
        _non_negative_int,
    ),
    Setting(
        "STATSD_ADDR",
        "",
        "Where to listen for StatsD / DogStatsD datagrams (UDP): `host:port`, or a port alone "
        "for the loopback interface (`8125` is 127.0.0.1:8125; `0.0.0.0:8125` for every "
        "interface: StatsD has no keys, so anyone who can reach it can write). Empty: off.",
        _statsd_addr,
    ),
    Setting(
        "STATSD_FLUSH_MS",
        10_000,
        "Milliseconds of StatsD counters, gauges and sets aggregated into one event per series "
        "(the flush interval of a StatsD daemon).",
        _positive_int,
    ),
    Setting(
        "SCHEDULE_TRACK_S",
        300,
        "Seconds between runs of the track job (user, agent and platform analytics of the "
        "periods new or late platform events touched).",
        _positive_int,
    ),
    Setting(
        "SCHEDULE_ALERTS_S",
        60,
        "Seconds between alert evaluation passes (60 to 300 is usual).",
        _positive_int,
    ),
    Setting(
        "ALERT_REPEAT_S",
        14400,
        "Seconds between repeated notifications of an open, unacknowledged incident (0: never).",
        _non_negative_int,
    ),
    Setting(
        "NOTIFY_RETRY_BASE_S",
        30,
        "First retry delay of a failed notification; doubles each attempt, at most an hour.",
        _non_negative_int,
    ),
    Setting("NOTIFY_MAX_ATTEMPTS", 8, "Attempts before a notification is given up.", _positive_int),
    Setting("NOTIFY_TIMEOUT_S", 10, "Seconds an SMTP server or webhook may take.", _positive_int),
    Setting("SMTP_HOST", "localhost", "SMTP server for e-mail channels.", str),
    Setting("SMTP_PORT", 25, "SMTP server port.", _port),
    Setting("SMTP_STARTTLS", False, "Upgrade the SMTP connection with STARTTLS.", _bool),
    Setting("SMTP_USERNAME", "", "SMTP login (none when empty).", str),
    Setting("SMTP_PASSWORD", "", "SMTP password; never printed.", str),
    Setting("SMTP_FROM", "astraeus@localhost", "Sender address of alert e-mail.", str),
    Setting(
        "SCHEDULE_HEALTH_S",
        15,
        "Seconds between looks for services due a health check "
        "(each service has its own interval_seconds).",
        _positive_int,
    ),
    Setting(
        "HEALTH_FAILURES_TO_ALERT",
        3,
        "Consecutive failed checks after which a service opens an incident.",
        _positive_int,
    ),
    Setting(
        "SERVICES_FILE",
        "",
        "A TOML file of services to monitor, loaded when the API server starts (see Monitoring).",
        str,
    ),
    Setting(
        "SELF_API_URL",
        "",
        "Base URL at which the service checks its own API (default: http://127.0.0.1:$PORT).",
        str,
    ),
    Setting("SCHEDULE_RETENTION_S", 3600, "Seconds between retention runs.", _positive_int),
    Setting(
        "RETENTION_SERIES_MINUTE_HOURS",
        6,
        "Hours the per-series minute tier is kept (finer time series of a few series).",
        _positive_int,
    ),
    Setting(
        "RETENTION_MINUTE_HOURS",
        48,
        "Hours the per-metric minute tier is kept (a metric's 1-minute time series).",
        _positive_int,
    ),
    Setting(
        "RETENTION_HOURLY_DAYS",
        400,
        "Days the hourly rollups are kept (0: forever).",
        _non_negative_int,
    ),
    Setting(
        "RETENTION_DAILY_DAYS",
        0,
        "Days the daily rollups are kept (0: forever).",
        _non_negative_int,
    ),
    Setting(
        "COMPRESS_AFTER_DAYS",
        7,
        "Age after which raw chunks are compressed (Community edition): the migrations "
        "create the policy with 7 days, `python -m jobs compress` sets it to this.",
        _positive_int,
    ),
    Setting(
        "RETENTION_DAYS",
        90,
        "Days raw events are kept; ingest refuses events older than this.",
        _positive_int,
    ),
    # Ingest limits: each one refused with a 4xx that names it.
    Setting(
        "INGEST_MAX_BODY_BYTES",
        16 * 1024 * 1024,
        "Largest request body, checked again after gzip decompression (413).",
        _positive_int,
    ),
    Setting("INGEST_MAX_BATCH_EVENTS", 100_000, "Most events in one batch (413).", _positive_int),
    Setting("INGEST_MAX_NAME_LENGTH", 200, "Longest metric name (422).", _positive_int),
    Setting(
        "INGEST_MAX_TAGS", 32, "Most tags on one event, counting `source` (422).", _positive_int
    ),
    Setting("INGEST_MAX_TAG_KEY_LENGTH", 100, "Longest tag key (422).", _positive_int),
    Setting("INGEST_MAX_TAG_VALUE_LENGTH", 256, "Longest tag value (422).", _positive_int),
    Setting(
        "INGEST_MAX_FUTURE_S",
        600,
        "How far ahead of the server's clock a timestamp may be (422).",
        _positive_int,
    ),
    Setting(
        "INGEST_MAX_SERIES_PER_METRIC",
        10_000,
        "Most series (tag sets) per metric; events creating more are refused (422), existing "
        "series keep working.",
        _positive_int,
    ),
    Setting(
        "INGEST_QUEUE_MAX_EVENTS",
        200_000,
        "Most events waiting to be committed in one server process; beyond it requests get 429.",
        _positive_int,
    ),
    Setting(
        "INGEST_QUEUE_MAX_BYTES",
        32 * 1024 * 1024,
        "Most request body bytes being decoded or waiting to be committed in one server "
        "process; a request whose declared Content-Length does not fit gets 429 before its "
        "body is read.",
        _positive_int,
    ),
    Setting(
        "INGEST_GROUP_MAX_EVENTS",
        20_000,
        "Most events one group commit gathers from concurrent requests (a larger batch is "
        "committed alone).",
        _positive_int,
    ),
    Setting("INGEST_WRITERS", 2, "Group commits in flight at once per process.", _positive_int),
    Setting(
        "INGEST_COMMIT_TIMEOUT_S",
        10,
        "Longest a request waits for its commit; then 503 (retry with the same Idempotency-Key).",
        _positive_int,
    ),
    Setting(
        "INGEST_BODY_TIMEOUT_S",
        30,
        "Longest a request body may take to arrive once its headers are in; then 408 and the "
        "connection is closed (a slow sender would hold its share of INGEST_QUEUE_MAX_BYTES).",
        _positive_int,
    ),
    Setting(
        "IDEMPOTENCY_TTL_HOURS",
        24,
        "Hours an Idempotency-Key is remembered; a retry after that is stored again.",
        _positive_int,
    ),
)


@dataclass(frozen=True)
class IngestSettings:
    max_body_bytes: int = 16 * 1024 * 1024
    max_batch_events: int = 100_000
    max_name_length: int = 200
    max_tags: int = 32
    max_tag_key_length: int = 100
    max_tag_value_length: int = 256
    max_future_s: int = 600
    max_series_per_metric: int = 10_000
    queue_max_events: int = 200_000
    queue_max_bytes: int = 32 * 1024 * 1024
    group_max_events: int = 20_000
    writers: int = 2
    commit_timeout_s: int = 10
    body_timeout_s: int = 30
    idempotency_ttl_hours: int = 24
    retention_days: int = 90


@dataclass(frozen=True)
class Settings:
    database_url: Secret | None
    host: str
    port: int
    db_pool_min: int
    db_pool_max: int
    db_connect_timeout_s: int
    statement_timeout_ms: int
    batch_track_timeout_s: int
    query_max_raw_rows: int
    migrate_on_start: bool
    log_level: str
    log_format: str
    run_scheduler: bool
    compact_every_ms: int
    compact_series_every_ms: int
    schedule_track_s: int
    dashboard_cache_s: int
    statsd_addr: str
    statsd_flush_ms: int
    auth_disabled: bool
    auth_cache_s: int
    metrics_require_key: bool
    schedule_alerts_s: int
    alert_repeat_s: int
    notify_retry_base_s: int
    notify_max_attempts: int
    notify_timeout_s: int
    smtp_host: str
    smtp_port: int
    smtp_starttls: bool
    smtp_username: str
    smtp_password: Secret
    smtp_from: str
    schedule_health_s: int
    health_failures_to_alert: int
    self_api_url: str
    services_file: str
    schedule_retention_s: int
    retention_series_minute_hours: int
    retention_minute_hours: int
    retention_hourly_days: int
    retention_daily_days: int
    compress_after_days: int
    retention_days: int
    ingest: IngestSettings
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)

    def require_database_url(self) -> str:
        if self.database_url is None or not self.database_url:
            raise SettingError(
                "DATABASE_URL is not set: point it at a PostgreSQL database "
                "with TimescaleDB (or use `make run`, which starts one)"
            )
        return self.database_url.reveal()


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Read every setting from the environment, failing with the variable's name on bad input."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = env.get(setting.name)
        if raw is None or raw == "":
            values[setting.name] = setting.default
            continue
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            raise SettingError(f"{setting.name}={raw!r} is not valid: {exc}") from None
    if values["DB_POOL_MIN"] > values["DB_POOL_MAX"]:
        raise SettingError("DB_POOL_MIN must not exceed DB_POOL_MAX")
    if values["INGEST_WRITERS"] >= values["DB_POOL_MAX"]:
        raise SettingError(
            "INGEST_WRITERS must be below DB_POOL_MAX: each writer holds a connection, and "
            "queries need at least one more"
        )
    if values["LOG_LEVEL"].lower() not in {"debug", "info", "warning", "error"}:
        raise SettingError(
            f"LOG_LEVEL={values['LOG_LEVEL']!r} is not valid: expected debug, "
            "info, warning or error"
        )
    if values["LOG_FORMAT"] not in {"auto", "json", "text"}:
        raise SettingError(
            f"LOG_FORMAT={values['LOG_FORMAT']!r} is not valid: expected auto, json or text"
        )
    if values["SMTP_USERNAME"] and not values["SMTP_PASSWORD"]:
        raise SettingError(
            "SMTP_USERNAME is set but SMTP_PASSWORD is empty: e-mail channels would fail to log "
            "in; set the password, or clear SMTP_USERNAME for a server that needs no login"
        )
    url = values.pop("DATABASE_URL")
    ingest = IngestSettings(
        retention_days=values["RETENTION_DAYS"],
        idempotency_ttl_hours=values["IDEMPOTENCY_TTL_HOURS"],
        **{
            name.removeprefix("INGEST_").lower(): value
            for name, value in values.items()
            if name.startswith("INGEST_")
        },
    )
    core = {
        name.lower(): value
        for name, value in values.items()
        if not name.startswith(("INGEST_", "IDEMPOTENCY_"))
    }
    core["smtp_password"] = Secret(core["smtp_password"])
    return Settings(database_url=Secret(url) if url else None, ingest=ingest, **core, raw=values)
